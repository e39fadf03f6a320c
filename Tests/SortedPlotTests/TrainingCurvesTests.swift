// metrics.jsonl → per-exit loss curves: what is read, what is an error, how curves are styled.
import SortedTestSupport
import XCTest
@testable import SortedPlot

final class TrainingCurvesTests: XCTestCase {
    private func run(_ text: String, name: String = "demo") throws -> MetricsRun {
        try MetricsRun.parse(Data(text.utf8), file: "runs/demo/metrics.jsonl", name: name)
    }

    /// Lines as MetricsLog writes them (sorted keys, non-finite values as strings).
    private func line(_ step: Int, _ losses: [Int: Double], extra: String = "") -> String {
        let exits = losses.keys.sorted().map { "\"\($0)\":\(losses[$0]!.isNaN ? "\"NaN\"" : String(losses[$0]!))" }.joined(separator: ",")
        return "{\"compute_s\":0.2,\(extra)\"exit_losses\":{\(exits)},\"loss\":1.5,\"lr\":0.001,\"skipped\":false,\"step\":\(step),\"tokens\":384}"
    }

    func testReadsExitLossesPerStep() throws {
        let text = [line(1, [2: 5.5, 4: 5.4]), line(2, [2: 4.0, 4: 3.5]), line(3, [2: .nan, 4: 3.0]),
                    "{\"note\":\"a line without exit losses\",\"step\":3}", "",
                    line(4, [2: 2.5, 4: 2.0])].joined(separator: "\n") + "\n"
        let r = try run(text)
        XCTAssertEqual(r.curves.keys.sorted(), ["train"])
        XCTAssertEqual(r.curves["train"]!.keys.sorted(), [2, 4])
        XCTAssertEqual(r.curves["train"]![4]!.map(\.x), [1, 2, 3, 4])
        XCTAssertEqual(r.curves["train"]![4]!.map(\.y), [5.4, 3.5, 3.0, 2.0])
        XCTAssertTrue(r.curves["train"]![2]![2].y.isNaN, "\"NaN\" is a gap, not an error")
        XCTAssertTrue(r.warnings.isEmpty)
    }

    func testOtherPerExitObjectsAreTheirOwnKind() throws {
        let text = [line(10, [2: 2.0, 4: 1.5]),
                    "{\"step\":10,\"validation\":{\"exit_losses\":{\"2\":2.2,\"4\":1.7},\"loss\":1.9}}",
                    "{\"step\":20,\"eval\":{\"2\":{\"loss\":2.1,\"ppl\":8.2},\"4\":{\"loss\":1.6}}}",
                    "{\"step\":20,\"val_exit_losses\":{\"2\":2.0}}",
                    "{\"step\":30,\"lr_by_group\":{\"embed\":0.1}}",
                    "{\"step\":40,\"exit_weights\":{\"2\":0.25,\"4\":0.75}}"].joined(separator: "\n")
        let r = try run(text)
        XCTAssertEqual(r.curves.keys.sorted(), ["eval", "train", "val", "validation"])
        XCTAssertEqual(r.curves["validation"]![4]!.map(\.y), [1.7])
        XCTAssertEqual(r.curves["eval"]![2]!.map(\.y), [2.1])
        XCTAssertEqual(r.curves["val"]![2]!.map(\.x), [20])
    }

    func testAResumedRunsLaterLinesReplaceRepeatedSteps() throws {
        let text = [line(1, [2: 5.0]), line(2, [2: 4.0]), line(3, [2: 3.9]), line(2, [2: 4.1]), line(3, [2: 3.5]), line(4, [2: 3.0])]
            .joined(separator: "\n")
        let curve = try run(text).curves["train"]![2]!
        XCTAssertEqual(curve.map(\.x), [1, 2, 3, 4])
        XCTAssertEqual(curve.map(\.y), [5.0, 4.1, 3.5, 3.0])
    }

    func testMalformedLinesNameFileAndLine() throws {
        for bad in ["{\"step\": 2, \"exit_losses\": {\"2\": 1.0}", "[1, 2]", "not json", "\"text\""] {
            let text = [line(1, [2: 5.0]), bad, line(3, [2: 3.0])].joined(separator: "\n")
            XCTAssertThrowsError(try run(text)) { error in
                XCTAssertEqual("\(error)", "runs/demo/metrics.jsonl:2: not a JSON object")
            }
        }
        // A last line without its newline is being written right now: skipped with a warning.
        let r = try run(line(1, [2: 5.0]) + "\n" + line(2, [2: 4.0]) + "\n{\"step\":3,\"exit_lo")
        XCTAssertEqual(r.curves["train"]![2]!.count, 2)
        XCTAssertEqual(r.warnings, ["runs/demo/metrics.jsonl:3: skipped an unfinished last line"])
        XCTAssertThrowsError(try run("{\"step\":3,\"exit_lo\n")) { error in
            XCTAssertEqual("\(error)", "runs/demo/metrics.jsonl:1: not a JSON object", "a finished line must parse")
        }
    }

    func testMissingFile() {
        XCTAssertThrowsError(try MetricsRun.read("/nonexistent/run/metrics.jsonl")) { error in
            XCTAssertEqual("\(error)", "/nonexistent/run/metrics.jsonl: no such file")
        }
    }

    func testReadsARunFolderAndNamesRunsByFolder() throws {
        let dir = try makeTemporaryDirectory("sortedplot").appendingPathComponent("soft-run.v2")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        try (line(1, [2: 5.0]) + "\n").write(to: dir.appendingPathComponent("metrics.jsonl"), atomically: true, encoding: .utf8)
        XCTAssertEqual(try MetricsRun.read(dir.path).name, "soft-run.v2")
        XCTAssertEqual(TrainingCurves.runName("runs/demo/metrics.jsonl"), "demo")
        XCTAssertEqual(TrainingCurves.runName("logs/sft-lr2e-5.jsonl"), "sft-lr2e-5")
    }

    func testMovingAverage() {
        let ramp = (0..<6).map { (x: Double($0), y: Double($0) * 2) }
        XCTAssertEqual(TrainingCurves.movingAverage(ramp, window: 5).map(\.y), ramp.map(\.y),
                       "centred and shrinking symmetrically at the ends, a straight line stays put")
        let zigzag: [(x: Double, y: Double)] = [(0, 1), (1, 5), (2, 1), (3, 5), (4, 1)]
        XCTAssertEqual(TrainingCurves.movingAverage(zigzag, window: 3).map(\.y), [1, 7.0 / 3, 11.0 / 3, 7.0 / 3, 1])
        let gap: [(x: Double, y: Double)] = [(0, 1), (1, 3), (2, .nan), (3, 5), (4, 7)]
        let smoothed = TrainingCurves.movingAverage(gap, window: 3).map(\.y)
        XCTAssertTrue(smoothed[2].isNaN, "a gap stays a gap")
        XCTAssertEqual(smoothed[1], 2, "and is left out of its neighbours' means")
        XCTAssertEqual(smoothed[3], 6)
        XCTAssertEqual(TrainingCurves.autoWindow(points: 600), 30)
        XCTAssertEqual(TrainingCurves.autoWindow(points: 20), 1)
    }

    func testChartOfTwoRuns() throws {
        let sft = try run((1...100).map { line($0, [8: 5.0 / Double($0)]) }.joined(separator: "\n"), name: "sft")
        let soft = try run((1...100).map { line($0, [2: 6.0 / Double($0), 4: 5.5 / Double($0), 8: 5.0 / Double($0)]) }
            .joined(separator: "\n") + "\n{\"step\":100,\"validation\":{\"2\":1.2,\"8\":0.9}}", name: "soft")
        let chart = TrainingCurves.chart([sft, soft], smooth: 5)
        let legend = chart.series.filter(\.inLegend)
        XCTAssertEqual(legend.map(\.name), ["sft · exit 8", "soft · exit 2", "soft · exit 4", "soft · exit 8",
                                            "soft · exit 2 (validation)", "soft · exit 8 (validation)"])
        XCTAssertEqual(chart.series.count - legend.count, 4, "a faint raw curve behind each smoothed training curve")
        XCTAssertEqual(legend[0].color, legend[3].color, "colour follows the exit")
        XCTAssertNotEqual(legend[0].dash, legend[3].dash, "runs differ by dash")
        XCTAssertEqual(legend[4].dash, .dashed)
        XCTAssertEqual(legend[4].marker, .circle)
        XCTAssertEqual(legend[4].color, legend[1].color)
        XCTAssertEqual(chart.title, "Loss per exit")
        XCTAssertEqual(chart.y.label, "loss (moving average of 5 steps)")

        let only = TrainingCurves.chart([soft], smooth: 1, logY: true, exits: [2])
        XCTAssertEqual(only.series.map(\.name), ["exit 2", "exit 2 (validation)"])
        XCTAssertEqual(only.title, "Loss per exit: soft")
        XCTAssertEqual(only.y.scale, .log)
        XCTAssertEqual(only.y.label, "loss")

        // Runs with one exit each are told apart by colour.
        let single = TrainingCurves.chart([sft, MetricsRun(name: "sft2", curves: sft.curves, warnings: [])], smooth: 1)
        XCTAssertNotEqual(single.series[0].color, single.series[1].color)
        XCTAssertFalse(SVGReader.parse(chart.svg()).isEmpty, "well-formed")
    }

    func testManyExitsUseAnOrderedPalette() throws {
        let depths = Array(stride(from: 10, through: 30, by: 2))
        let r = try run((1...3).map { s in line(s, Dictionary(uniqueKeysWithValues: depths.map { ($0, 3.0 - Double($0) / 20) })) }
            .joined(separator: "\n"))
        let colors = TrainingCurves.chart([r], smooth: 1).series.compactMap(\.color)
        XCTAssertEqual(colors.count, depths.count)
        XCTAssertEqual(Set(colors.map(\.hex)).count, depths.count, "eleven exits, eleven colours")
        XCTAssertEqual(colors.first, Color.sequential(0))
    }
}
