// Charts read back as XML: escaping, points inside the plot frame, gaps, the legend, layout.
import XCTest
@testable import SortedPlot

final class LineChartTests: XCTestCase {
    /// The plot frame: the rect of the data's clip path.
    private func frame(_ elements: [SVGElement]) -> (x: ClosedRange<Double>, y: ClosedRange<Double>) {
        let i = elements.firstIndex { $0.name == "clipPath" }!
        let r = elements[i + 1]
        return (r.number("x")...(r.number("x") + r.number("width")), r.number("y")...(r.number("y") + r.number("height")))
    }

    /// The sub-paths of the data lines (not the legend's samples).
    private func lines(_ elements: [SVGElement]) -> [[[(Double, Double)]]] {
        elements.inside("data").named("path").map { subpaths($0.attributes["d"]!) }
    }

    func testEscapesTextAndStaysWellFormed() {
        XCTAssertEqual(escapeXML("a & b < c > \"d\" 'e'"), "a &amp; b &lt; c &gt; &quot;d&quot; &apos;e&apos;")
        XCTAssertEqual(escapeXML("x\u{1}\u{7}y\nz"), "xy z", "control characters are not allowed in XML 1.0")
        let title = "R&D <\"SoFT\"> 'run'", name = "lr=2e-5 & <exit 4>"
        let chart = LineChart(title: title, x: Axis("step & \"k\""), y: Axis("loss <nats>"),
                              series: [Series(name, x: [1, 2, 3], y: [3, 2, 1])])
        let elements = SVGReader.parse(chart.svg())
        XCTAssertEqual(elements.first?.name, "svg")
        for expected in [title, name, "step & \"k\"", "loss <nats>"] {
            XCTAssert(elements.texts.contains(expected), "\(expected) in \(elements.texts)")
        }
        XCTAssertEqual(elements.named("title").first?.text, title)
    }

    func testPointsAreMappedInsideThePlotFrameInOrder() {
        let points: [(x: Double, y: Double)] = [(0, 5.5), (100, 3.1), (250, 2.0), (600, 1.37)]
        for scale in [Axis.Scale.linear, .log] {
            let chart = LineChart(x: Axis("step"), y: Axis("loss", scale: scale), series: [Series("exit 2", points)])
            let elements = SVGReader.parse(chart.svg())
            let box = frame(elements), path = lines(elements)
            XCTAssertEqual(path.count, 1)
            XCTAssertEqual(path[0].count, 1, "one unbroken line")
            let drawn = path[0][0]
            XCTAssertEqual(drawn.count, points.count)
            for (x, y) in drawn {
                XCTAssert(box.x.contains(x) && box.y.contains(y), "(\(x), \(y)) outside \(box)")
            }
            XCTAssertEqual(drawn.map(\.0), drawn.map(\.0).sorted(), "x grows to the right")
            XCTAssertEqual(drawn.map(\.1), drawn.map(\.1).sorted(), "falling loss goes down the page (SVG y grows)")
            // The first and last points span the frame (less the inset), so the axis fits the data.
            XCTAssertEqual(drawn.first!.1 - box.y.lowerBound, 8, accuracy: 40, "\(scale)")
        }
    }

    func testLinearAxisMapsValuesProportionally() {
        let chart = LineChart(x: Axis(min: 0, max: 10), y: Axis(min: 0, max: 10),
                              series: [Series("s", x: [0, 5, 10], y: [0, 5, 10])])
        let drawn = lines(SVGReader.parse(chart.svg()))[0][0]
        XCTAssertEqual(drawn[1].0, (drawn[0].0 + drawn[2].0) / 2, accuracy: 0.02)
        XCTAssertEqual(drawn[1].1, (drawn[0].1 + drawn[2].1) / 2, accuracy: 0.02)
        let labels = SVGReader.parse(chart.svg()).texts
        for tick in ["0", "2", "4", "6", "8", "10"] { XCTAssert(labels.contains(tick), "tick \(tick) in \(labels)") }
    }

    func testNonFinitePointsBreakTheLine() {
        let chart = LineChart(series: [
            Series("gaps", x: [0, 1, 2, 3, 4, 5, 6], y: [1, 2, .nan, 4, 5, .infinity, 3]),
            Series("log gap", x: [0, 1, 2, 3], y: [1, 2, 0, 4]),
        ])
        let elements = SVGReader.parse(chart.svg())
        let path = lines(elements)
        XCTAssertEqual(path[0].map(\.count), [2, 2], "NaN and inf split the line; the last point stands alone")
        XCTAssertEqual(elements.inside("data").named("circle").count, 1, "a lone point is drawn as a dot")
        XCTAssertEqual(path[1].map(\.count), [4], "0 is drawable on a linear axis")

        let logChart = LineChart(y: Axis(scale: .log), series: [Series("log gap", x: [0, 1, 2, 3], y: [1, 2, 0, 4])])
        let logPath = lines(SVGReader.parse(logChart.svg()))
        XCTAssertEqual(logPath[0].map(\.count), [2], "0 is a gap on a log axis; 4 is a lone dot")
    }

    func testEmptySinglePointAndConstantSeries() {
        for series in [[], [Series("empty", [])], [Series("one", [(x: 3, y: 7)])], [Series("nan", [(x: .nan, y: .nan)])]] {
            let elements = SVGReader.parse(LineChart(title: "t", series: series).svg())
            XCTAssertFalse(elements.named("text").isEmpty)
            XCTAssertFalse(elements.svgNumbers.contains { !$0.isFinite }, "no NaN coordinates")
        }
        let single = SVGReader.parse(LineChart(series: [Series("one", [(x: 3, y: 7)])]).svg())
        XCTAssertEqual(single.inside("data").named("circle").count, 1)
        XCTAssertTrue(single.texts.contains("7.0") || single.texts.contains("7"), "the value is within the ticks: \(single.texts)")

        let constant = SVGReader.parse(LineChart(series: [Series("flat", x: [1, 2, 3], y: [2, 2, 2])]).svg())
        let box = frame(constant), drawn = lines(constant)[0][0]
        XCTAssertEqual(drawn.count, 3)
        for (_, y) in drawn { XCTAssertEqual(y, (box.y.lowerBound + box.y.upperBound) / 2, accuracy: 1, "centred") }
        XCTAssertGreaterThanOrEqual(constant.texts.filter { Double($0) != nil }.count, 4, "ticks on both axes")
    }

    func testLegendListsEverySeriesOutsideThePlot() {
        let names = (1...12).map { "run \($0 % 3) · exit \($0 * 2)" }
        let series = names.enumerated().map { Series($1, x: [0, 1], y: [Double($0), Double($0) + 1], dash: Dash.allCases[$0 % 4]) }
            + [Series("hidden context", [(x: 0, y: 0), (x: 1, y: 1)], inLegend: false)]
        for placement in [LegendPlacement.auto, .right, .bottom] {
            let elements = SVGReader.parse(LineChart(series: series, legend: placement).svg())
            let legend = elements.inside("legend").named("text")
            XCTAssertEqual(legend.map(\.text), names, "\(placement)")
            let box = frame(elements)
            for t in legend {
                // A legend entry starts right of the frame or below it: it never covers the data.
                XCTAssert(t.number("x") > box.x.upperBound || t.number("y") > box.y.upperBound, "\(placement): \(t)")
            }
            let svg = elements[0]
            for t in legend { XCTAssertLessThanOrEqual(t.number("y"), svg.number("height"), "legend inside the image") }
        }
        let hidden = SVGReader.parse(LineChart(series: series, legend: .hidden).svg())
        XCTAssertTrue(hidden.inside("legend").isEmpty)
    }

    func testTwoPanelsSideBySide() {
        let quality = LineChart(title: "Validation loss per exit", x: Axis("exit depth", ticks: [2, 4, 6, 8]), y: Axis("loss"),
                                series: [Series("SFT", x: [2, 4, 6, 8], y: [3.1, 2.5, 2.0, 1.4], marker: .square),
                                         Series("SoFT", x: [2, 4, 6, 8], y: [1.9, 1.6, 1.5, 1.45], marker: .circle)],
                                width: 500, height: 360)
        let speed = LineChart(title: "Decode speed", x: Axis("exit depth", ticks: [2, 4, 6, 8]), y: Axis("tokens/s", scale: .log),
                              series: [Series("SoFT", x: [2, 4, 6, 8], y: [400, 210, 140, 105], marker: .circle)],
                              width: 500, height: 360)
        let elements = SVGReader.parse(SVGDocument(panels: [quality, speed], columns: 2, title: "demo").svg())
        XCTAssertEqual(elements[0].number("width"), 1000)
        XCTAssertEqual(elements[0].number("height"), 400, "the document title adds 40 px above the row")
        XCTAssertEqual(Set(elements.named("clipPath").compactMap { $0.attributes["id"] }).count, 2, "unique clip ids")
        XCTAssertEqual(elements.named("g").compactMap { $0.attributes["transform"] }, ["translate(0,40)", "translate(500,40)"])
        for label in ["2", "4", "6", "8", "200", "400", "Decode speed", "SFT", "demo"] { XCTAssert(elements.texts.contains(label), label) }
        XCTAssertEqual(elements.inside("data").named("rect").count, 4, "square markers")
    }

    func testColoursComeFromTheColourBlindSafePalette() {
        let series = (0..<3).map { Series("s\($0)", x: [0, 1], y: [0, Double($0)]) }
        let strokes = SVGReader.parse(LineChart(series: series).svg()).inside("data").named("path").compactMap { $0.attributes["stroke"] }
        XCTAssertEqual(strokes, Color.palette.prefix(3).map(\.hex))
        XCTAssertEqual(Color.sequential(0).hex, "#440154")
        XCTAssertNotEqual(Color.sequential(1).hex, "#fde725", "the light end is cut off")
    }
}

extension Array where Element == SVGElement {
    /// Every numeric coordinate attribute in the document.
    var svgNumbers: [Double] {
        flatMap { e in ["x", "y", "x1", "x2", "y1", "y2", "cx", "cy", "width", "height"].compactMap { e.attributes[$0].flatMap(Double.init) } }
    }
}
