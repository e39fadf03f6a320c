// LineChart: one panel of x/y series (lines, markers or both) drawn as SVG: nice ticks, axis
// labels, a title and a legend outside the plot area, so it never covers data.
// Non-finite points (and points <= 0 on a log axis) are gaps in their line.
import Foundation

/// An sRGB colour, written as #rrggbb.
public struct Color: Equatable, Sendable {
    public var hex: String
    public init(hex: String) { self.hex = hex }

    /// Okabe & Ito's colour-blind-safe palette without its yellow (unreadable on white).
    /// Seven colours: beyond that, tell series apart by dash or marker as well.
    public static let palette: [Color] = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#000000"]
        .map(Color.init(hex:))

    /// The palette's colour for the i-th series (wrapping around).
    public static func palette(_ i: Int) -> Color { palette[((i % palette.count) + palette.count) % palette.count] }

    /// Viridis at t in 0…1 (ordered, perceptually uniform, colour-blind safe), for many series
    /// that have an order, such as exit depths. Stops short of the light yellow end.
    public static func sequential(_ t: Double) -> Color {
        let stops: [(Double, Double, Double)] = [(68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37)]
        let s = Swift.min(Swift.max(t.isFinite ? t : 0, 0), 1) * 0.85 * Double(stops.count - 1)
        let i = Swift.min(Int(s), stops.count - 2), f = s - Double(i)
        let (a, b) = (stops[i], stops[i + 1])
        let c = [a.0 + (b.0 - a.0) * f, a.1 + (b.1 - a.1) * f, a.2 + (b.2 - a.2) * f]
        return Color(hex: "#" + c.map { String(format: "%02x", Int($0.rounded())) }.joined())
    }
}

public enum Dash: Sendable, CaseIterable { case solid, dashed, dotted, dashDot }
public enum Marker: Sendable, CaseIterable { case none, circle, square, diamond, triangle }

/// One named line: points in drawing order (a NaN or infinite coordinate breaks the line).
public struct Series {
    public var name: String
    public var points: [(x: Double, y: Double)]
    /// nil: the palette colour of this series' position in the chart.
    public var color: Color?
    public var dash: Dash
    public var marker: Marker
    /// 0 draws markers only.
    public var lineWidth: Double
    public var opacity: Double
    /// false for context lines (e.g. the raw curve behind a smoothed one).
    public var inLegend: Bool
    /// Optional text beside each point (e.g. "exit 4" on a quality-vs-speed chart).
    public var labels: [String]

    public init(_ name: String, _ points: [(x: Double, y: Double)], color: Color? = nil, dash: Dash = .solid,
                marker: Marker = .none, lineWidth: Double = 2, opacity: Double = 1, inLegend: Bool = true,
                labels: [String] = []) {
        self.name = name
        self.points = points
        self.color = color
        self.dash = dash
        self.marker = marker
        self.lineWidth = lineWidth
        self.opacity = opacity
        self.inLegend = inLegend
        self.labels = labels
    }

    /// The points zip(x, y) (the shorter array decides the count).
    public init(_ name: String, x: [Double], y: [Double], color: Color? = nil, dash: Dash = .solid,
                marker: Marker = .none, labels: [String] = []) {
        self.init(name, zip(x, y).map { (x: $0, y: $1) }, color: color, dash: dash, marker: marker, labels: labels)
    }
}

public struct Axis {
    public enum Scale: Sendable { case linear, log }
    public var label: String
    public var scale: Scale
    /// Fixed ends; nil: from the data (a linear axis then widens to its outer ticks).
    public var min: Double?
    public var max: Double?
    /// Fixed tick values (e.g. the exit depths 2, 4, 6, 8); nil: nice ticks.
    public var ticks: [Double]?

    public init(_ label: String = "", scale: Scale = .linear, min: Double? = nil, max: Double? = nil, ticks: [Double]? = nil) {
        self.label = label
        self.scale = scale
        self.min = min
        self.max = max
        self.ticks = ticks
    }
}

public enum LegendPlacement: Sendable {
    /// Right of the plot when it fits beside it, else below.
    case auto, right, bottom, hidden
}

public struct LineChart {
    public var title: String
    public var x: Axis
    public var y: Axis
    public var series: [Series]
    /// The panel's size in pixels; a legend below the plot adds to the height.
    public var width: Double
    public var height: Double
    public var legend: LegendPlacement

    public init(title: String = "", x: Axis = Axis(), y: Axis = Axis(), series: [Series] = [],
                width: Double = 720, height: Double = 440, legend: LegendPlacement = .auto) {
        self.title = title
        self.x = x
        self.y = y
        self.series = series
        self.width = width
        self.height = height
        self.legend = legend
    }

    /// A standalone SVG document of this chart.
    public func svg() -> String { SVGDocument(panels: [self], columns: 1).svg() }

    public func write(to path: String) throws { try SVGDocument(panels: [self], columns: 1).write(to: path) }
}

// MARK: - Layout and drawing

/// Sizes in pixels. Text widths are estimated (0.6 em a character, a little wide for
/// Helvetica/Arial/DejaVu Sans) since an SVG writer cannot measure fonts.
enum Style {
    static let tickFont = 12.0, labelFont = 14.0, titleFont = 16.0, legendFont = 12.0
    static let legendRow = 20.0, legendSample = 28.0, tickLength = 5.0, pad = 12.0
    /// Data are drawn this far inside the plot frame, so markers on the range ends stay whole.
    static let inset = 8.0
    static func textWidth(_ s: String, _ font: Double) -> Double { Double(s.count) * font * 0.6 }
}

/// An axis with its range and ticks decided.
struct ResolvedAxis {
    var lo: Double, hi: Double, log: Bool
    var ticks: [Double], labels: [String], minor: [Double]

    /// Where v lies on the axis, 0 at lo and 1 at hi; nil when it cannot be drawn.
    func fraction(_ v: Double) -> Double? {
        guard v.isFinite, !log || v > 0 else { return nil }
        if hi <= lo { return 0.5 }
        return log ? (Foundation.log10(v) - Foundation.log10(lo)) / (Foundation.log10(hi) - Foundation.log10(lo)) : (v - lo) / (hi - lo)
    }

    init(_ axis: Axis, values: [Double]) {
        log = axis.scale == .log
        let isLog = log
        let drawable = { (v: Double) in v.isFinite && (!isLog || v > 0) }
        var data = values.filter(drawable)
        if let t = axis.ticks { data += t.filter(drawable) }
        var lo = axis.min.flatMap { drawable($0) ? $0 : nil } ?? data.min() ?? (log ? 1 : 0)
        var hi = axis.max.flatMap { drawable($0) ? $0 : nil } ?? data.max() ?? (log ? 10 : 1)
        if lo > hi { (lo, hi) = (hi, lo) }
        // Extreme values (1e308, 5e-324) are clamped so that no width or logarithm overflows.
        let limits = log ? 1e-300...1e300 : -1e300...1e300
        (lo, hi) = (lo.clamped(to: limits), hi.clamped(to: limits))
        if lo == hi {   // a constant series: give it room around its value
            if log { (lo, hi) = (lo / 2, hi * 2) } else { let d = abs(lo) > 1e-200 ? abs(lo) * 0.1 : 1; (lo, hi) = (lo - d, hi + d) }
        }
        if log, axis.ticks == nil {   // auto log ends at round values (105…400 → 100…400), so the ends are labelled
            if axis.min == nil { lo = Self.roundValue(lo, up: false) }
            if axis.max == nil { hi = Self.roundValue(hi, up: true) }
        }
        let inside = { (v: Double) in v >= lo - 1e-9 * abs(hi - lo) && v <= hi + 1e-9 * abs(hi - lo) }
        if let custom = axis.ticks {
            ticks = custom.filter { drawable($0) && inside($0) }.sorted()
            let decimals = ticks.map(Self.decimalsNeeded).max() ?? 0
            labels = Ticks.labels(ticks, exponent: -decimals)
            minor = []
        } else if log {
            let t = Ticks.logTicks(lo, hi)
            ticks = t.major
            labels = zip(t.major, t.exponents).map { Ticks.format($0, exponent: $1, largest: $0) }
            minor = t.minor
        } else {
            let (t, e) = Ticks.linearSteps(lo, hi)
            if axis.min == nil, let first = t.first { lo = Swift.min(lo, first) }
            if axis.max == nil, let last = t.last { hi = Swift.max(hi, last) }
            let span = hi - lo
            ticks = t.filter { $0 >= lo - 1e-9 * span && $0 <= hi + 1e-9 * span }
            labels = Ticks.labels(ticks, exponent: e)
            minor = []
        }
        self.lo = lo
        self.hi = hi
    }

    /// The nearest of 1, 1.5, 2, 3, 4, 5, 6, 8 × 10^k below (or above) v > 0.
    static func roundValue(_ v: Double, up: Bool) -> Double {
        let e = Int(Foundation.log10(v).rounded(.down))
        let candidates = (e - 1...e + 1).flatMap { d in [1, 1.5, 2, 3, 4, 5, 6, 8].map { $0 * pow(10, Double(d)) } }
        let tolerance = v * 1e-9
        return up ? candidates.first { $0 >= v - tolerance } ?? v : candidates.last { $0 <= v + tolerance } ?? v
    }

    /// The fewest decimals (up to 6) that print v exactly enough.
    static func decimalsNeeded(_ v: Double) -> Int {
        for d in 0..<6 {
            let s = pow(10, Double(d))
            if abs((v * s).rounded() / s - v) <= 1e-9 * Swift.max(1, abs(v)) { return d }
        }
        return 6
    }
}

struct Rect { var x: Double, y: Double, w: Double, h: Double }

extension Double {
    func clamped(to range: ClosedRange<Double>) -> Double { Swift.min(Swift.max(self, range.lowerBound), range.upperBound) }
}

extension LineChart {
    /// The chart's SVG elements in its own coordinates; `id` makes its clip path unique in a document.
    func render(id: String) -> (body: String, width: Double, height: Double) {
        let xs = ResolvedAxis(x, values: series.flatMap { $0.points.map(\.x) })
        let ys = ResolvedAxis(y, values: series.flatMap { $0.points.map(\.y) })

        // Margins from the text that sits in them.
        let top = title.isEmpty ? Style.pad + 4 : Style.pad + Style.titleFont + 14
        let yTickWidth = ys.labels.map { Style.textWidth($0, Style.tickFont) }.max() ?? 0
        let left = Style.pad + (y.label.isEmpty ? 0 : Style.labelFont + 10) + yTickWidth + 4 + Style.tickLength
        let bottom = Style.tickLength + 4 + Style.tickFont + (x.label.isEmpty ? 0 : 10 + Style.labelFont) + Style.pad
        let lastX = xs.labels.last.map { Style.textWidth($0, Style.tickFont) / 2 } ?? 0

        let entries = series.enumerated().filter { $0.element.inLegend && !$0.element.name.isEmpty }
        let entryWidth = (entries.map { Style.textWidth($0.element.name, Style.legendFont) }.max() ?? 0) + Style.legendSample + 8 + 16
        let plotHeight = height - top - bottom
        var placement = entries.isEmpty ? .hidden : legend
        if placement == .auto {
            let fitsBeside = Double(entries.count) * Style.legendRow <= plotHeight && entryWidth <= 0.35 * width
            placement = fitsBeside ? .right : .bottom
        }
        let right = placement == .right ? entryWidth + Style.pad : Swift.max(Style.pad + 4, lastX + 4)
        let plot = Rect(x: left, y: top, w: Swift.max(40, width - left - right), h: Swift.max(40, plotHeight))
        var totalHeight = height
        var legendColumns = 1, legendRows = entries.count
        if placement == .right {
            totalHeight = Swift.max(height, top + Double(entries.count) * Style.legendRow + Style.pad)
        } else if placement == .bottom {
            legendColumns = Swift.max(1, Swift.min(entries.count, Int((width - 2 * Style.pad) / entryWidth)))
            legendRows = (entries.count + legendColumns - 1) / legendColumns
            totalHeight = height + Double(legendRows) * Style.legendRow + 4
        }

        // Points far outside a fixed range are pinned well beyond the frame (the clip hides them).
        func px(_ v: Double) -> Double? { xs.fraction(v).map { plot.x + Style.inset + $0.clamped(to: -100...100) * (plot.w - 2 * Style.inset) } }
        func py(_ v: Double) -> Double? { ys.fraction(v).map { plot.y + plot.h - Style.inset - $0.clamped(to: -100...100) * (plot.h - 2 * Style.inset) } }

        var s = "<rect width=\"\(n(width))\" height=\"\(n(totalHeight))\" fill=\"#ffffff\"/>\n"
        if !title.isEmpty {
            let w = Style.textWidth(title, Style.titleFont)
            let cx = Swift.min(Swift.max(plot.x + plot.w / 2, w / 2 + Style.pad), width - w / 2 - Style.pad)
            s += text(title, x: cx, y: Style.pad + Style.titleFont, size: Style.titleFont, anchor: "middle", extra: " font-weight=\"bold\"")
        }
        // Grid, axis lines, ticks and their labels.
        let bottomY = plot.y + plot.h
        for v in xs.ticks { if let x = px(v) { s += line(x, plot.y, x, bottomY, "#e6e6e6") } }
        for v in ys.ticks { if let y = py(v) { s += line(plot.x, y, plot.x + plot.w, y, "#e6e6e6") } }
        s += line(plot.x, plot.y, plot.x, bottomY, "#333333") + line(plot.x, bottomY, plot.x + plot.w, bottomY, "#333333")
        for (v, label) in zip(xs.ticks, xs.labels) {
            guard let x = px(v) else { continue }
            s += line(x, bottomY, x, bottomY + Style.tickLength, "#333333")
            s += text(label, x: x, y: bottomY + Style.tickLength + 3 + Style.tickFont, size: Style.tickFont, anchor: "middle")
        }
        for v in xs.minor { if let x = px(v) { s += line(x, bottomY, x, bottomY + 3, "#777777") } }
        for (v, label) in zip(ys.ticks, ys.labels) {
            guard let y = py(v) else { continue }
            s += line(plot.x - Style.tickLength, y, plot.x, y, "#333333")
            s += text(label, x: plot.x - Style.tickLength - 4, y: y + Style.tickFont * 0.35, size: Style.tickFont, anchor: "end")
        }
        for v in ys.minor { if let y = py(v) { s += line(plot.x - 3, y, plot.x, y, "#777777") } }
        if !x.label.isEmpty {
            s += text(x.label, x: plot.x + plot.w / 2, y: bottomY + Style.tickLength + 3 + Style.tickFont + 10 + Style.labelFont,
                      size: Style.labelFont, anchor: "middle")
        }
        if !y.label.isEmpty {
            s += "<text transform=\"translate(\(n(Style.pad + Style.labelFont)),\(n(plot.y + plot.h / 2))) rotate(-90)\" "
                + "font-size=\"\(n(Style.labelFont))\" text-anchor=\"middle\" fill=\"#222222\">\(escapeXML(y.label))</text>\n"
        }

        // The data, clipped to the plot frame.
        s += "<clipPath id=\"\(id)-clip\"><rect x=\"\(n(plot.x))\" y=\"\(n(plot.y))\" width=\"\(n(plot.w))\" height=\"\(n(plot.h))\"/></clipPath>\n"
        s += "<g class=\"data\" clip-path=\"url(#\(id)-clip)\">\n"
        if series.allSatisfy({ $0.points.isEmpty }) {
            s += text("no data", x: plot.x + plot.w / 2, y: plot.y + plot.h / 2, size: Style.labelFont, anchor: "middle", fill: "#888888")
        }
        for (i, item) in series.enumerated() {
            let color = (item.color ?? Color.palette(i)).hex
            let mapped: [(Double, Double)?] = item.points.map { p in px(p.x).flatMap { x in py(p.y).map { (x, $0) } } }
            // Runs of consecutive drawable points become one sub-path each; a lone point is a dot.
            var d = "", dots: [(Double, Double)] = [], run: [(Double, Double)] = []
            func flush() {
                if run.count == 1 { dots.append(run[0]) }
                if run.count > 1 { d += "M" + run.map { "\(n($0.0)) \(n($0.1))" }.joined(separator: " L") }
                run = []
            }
            for p in mapped { if let p { run.append(p) } else { flush() } }
            flush()
            let opacity = item.opacity < 1 ? " opacity=\"\(n(item.opacity))\"" : ""
            if item.lineWidth > 0, !d.isEmpty {
                s += "<path d=\"\(d)\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"\(n(item.lineWidth))\" "
                    + "stroke-linejoin=\"round\"\(dashAttributes(item.dash, item.lineWidth))\(opacity)/>\n"
            }
            if item.marker == .none, item.lineWidth > 0 {
                for (x, y) in dots { s += "<circle cx=\"\(n(x))\" cy=\"\(n(y))\" r=\"\(n(Swift.max(2.5, item.lineWidth * 1.25)))\" fill=\"\(color)\"\(opacity)/>\n" }
            } else {
                for p in mapped { if case let (x, y)? = p { s += marker(item.marker == .none ? .circle : item.marker, x, y, color, opacity) } }
            }
        }
        s += "</g>\n"
        // Point labels, unclipped: beside their point, on its left near the right edge.
        for item in series {
            for (p, label) in zip(item.points, item.labels) where !label.isEmpty {
                guard let x = px(p.x), let y = py(p.y), (plot.x...(plot.x + plot.w)).contains(x), (plot.y...bottomY).contains(y) else { continue }
                let onLeft = x + 7 + Style.textWidth(label, Style.tickFont) > plot.x + plot.w
                s += text(label, x: onLeft ? x - 7 : x + 7, y: y - 7, size: Style.tickFont, anchor: onLeft ? "end" : "start", fill: "#333333")
            }
        }

        // The legend, outside the plot area.
        if placement == .right || placement == .bottom {
            s += "<g class=\"legend\">\n"
            let x0 = placement == .right ? plot.x + plot.w + Style.pad + 4
                : Swift.max(Style.pad, plot.x + (plot.w - Double(legendColumns) * entryWidth) / 2)
            let y0 = placement == .right ? plot.y + Style.legendRow / 2 : height + Style.legendRow / 2 - 6
            for (k, entry) in entries.enumerated() {
                let (column, row) = placement == .right ? (0, k) : (k / legendRows, k % legendRows)   // column by column
                let x = x0 + Double(column) * entryWidth, y = y0 + Double(row) * Style.legendRow
                let item = entry.element, color = (item.color ?? Color.palette(entry.offset)).hex
                if item.lineWidth > 0 {
                    let w = Swift.min(Swift.max(item.lineWidth, 1.5), 3)
                    s += "<path d=\"M\(n(x)) \(n(y)) L\(n(x + Style.legendSample)) \(n(y))\" stroke=\"\(color)\" stroke-width=\"\(n(w))\"\(dashAttributes(item.dash, w))/>\n"
                }
                if item.marker != .none || item.lineWidth == 0 {
                    s += marker(item.marker == .none ? .circle : item.marker, x + Style.legendSample / 2, y, color, "")
                }
                s += text(item.name, x: x + Style.legendSample + 8, y: y + Style.legendFont * 0.35, size: Style.legendFont, anchor: "start")
            }
            s += "</g>\n"
        }
        return (s, width, totalHeight)
    }
}

// MARK: - SVG pieces

/// A coordinate with at most two decimals ("12.5", not "12.500000").
func n(_ v: Double) -> String {
    guard v.isFinite else { return "0" }
    let r = (v * 100).rounded() / 100
    return r == r.rounded() && abs(r) < 1e15 ? String(Int(r)) : String(r)
}

func line(_ x1: Double, _ y1: Double, _ x2: Double, _ y2: Double, _ color: String) -> String {
    "<line x1=\"\(n(x1))\" y1=\"\(n(y1))\" x2=\"\(n(x2))\" y2=\"\(n(y2))\" stroke=\"\(color)\" stroke-width=\"1\"/>\n"
}

func text(_ s: String, x: Double, y: Double, size: Double, anchor: String, fill: String = "#222222", extra: String = "") -> String {
    "<text x=\"\(n(x))\" y=\"\(n(y))\" font-size=\"\(n(size))\" text-anchor=\"\(anchor)\" fill=\"\(fill)\"\(extra)>\(escapeXML(s))</text>\n"
}

/// Dash lengths grow with the line width so patterns read the same on thick and thin lines.
func dashAttributes(_ dash: Dash, _ width: Double) -> String {
    switch dash {
    case .solid: return ""
    case .dashed: return " stroke-dasharray=\"\(n(4 * width)) \(n(2.5 * width))\""
    case .dotted: return " stroke-dasharray=\"0.1 \(n(2.2 * width))\" stroke-linecap=\"round\""
    case .dashDot: return " stroke-dasharray=\"\(n(4 * width)) \(n(2 * width)) 0.1 \(n(2 * width))\" stroke-linecap=\"round\""
    }
}

func marker(_ shape: Marker, _ x: Double, _ y: Double, _ color: String, _ extra: String) -> String {
    let r = 4.0, paint = "fill=\"\(color)\" stroke=\"#ffffff\" stroke-width=\"1\"\(extra)"
    switch shape {
    case .none: return ""
    case .circle: return "<circle cx=\"\(n(x))\" cy=\"\(n(y))\" r=\"\(n(r))\" \(paint)/>\n"
    case .square: return "<rect x=\"\(n(x - r))\" y=\"\(n(y - r))\" width=\"\(n(2 * r))\" height=\"\(n(2 * r))\" \(paint)/>\n"
    case .diamond:
        let q = r * 1.3
        return "<path d=\"M\(n(x)) \(n(y - q)) L\(n(x + q)) \(n(y)) L\(n(x)) \(n(y + q)) L\(n(x - q)) \(n(y))Z\" \(paint)/>\n"
    case .triangle:
        let q = r * 1.25
        return "<path d=\"M\(n(x)) \(n(y - q)) L\(n(x + q)) \(n(y + q * 0.8)) L\(n(x - q)) \(n(y + q * 0.8))Z\" \(paint)/>\n"
    }
}
