// `sortedtrain plot`: per-exit loss curves of one or more runs' metrics.jsonl as one SVG file.
import ArgumentParser
import Foundation
import SortedIO
import SortedPlot

struct PlotCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plot",
        abstract: "Chart the per-exit training loss of one or more runs (metrics.jsonl) as an SVG file.",
        discussion: """
        One curve per run and exit: colour follows the exit depth, runs differ by dash. A run \
        is named after the folder holding its metrics.jsonl. Curves are a centred moving \
        average (--smooth) with the raw values drawn faintly behind; other per-exit objects \
        in the lines (e.g. validation losses) are drawn dashed with markers. Lines without \
        per-exit losses are ignored.

        View the SVG in a browser, or convert it: rsvg-convert -o loss.png loss.svg
        """)

    @Argument(help: "metrics.jsonl files, or run folders that hold one.")
    var files: [String]

    @Option(name: .shortAndLong, help: "The SVG file to write.")
    var output: String

    @Option(parsing: .unconditional, help: "Moving-average window in steps; 1 plots the raw losses (default: about 5% of the steps).")
    var smooth: Int?

    @Option(help: "Chart title (default: \"Training loss per exit\" and the run's name).")
    var title: String?

    @Flag(help: "Logarithmic loss axis.")
    var logY = false

    @Option(help: "Only these exit depths, comma-separated (e.g. 2,8).")
    var exits: String?

    func validate() throws {
        if files.isEmpty { throw ValidationError("name at least one metrics.jsonl file") }
        if let smooth, smooth < 1 { throw ValidationError("--smooth must be at least 1 (1 = no smoothing)") }
        if exits != nil, exitSet == nil { throw ValidationError("--exits must be comma-separated depths, e.g. 2,8") }
        try OutputTarget.checkReport(URL(fileURLWithPath: output), kind: .svg, flag: "-o")
    }

    private var exitSet: Set<Int>? {
        guard let exits else { return nil }
        let depths = exits.split(separator: ",").map { Int($0.trimmingCharacters(in: .whitespaces)) }
        return depths.isEmpty || depths.contains(nil) ? nil : Set(depths.compactMap { $0 })
    }

    func run() throws {
        // Runs in different folders with the same name (a/demo, b/demo) are named by their path.
        let names = files.map(TrainingCurves.runName)
        let runs = try files.enumerated().map { i, file in
            try MetricsRun.read(file, name: names.filter { $0 == names[i] }.count > 1 ? file : names[i])
        }
        for warning in runs.flatMap(\.warnings) { printProgress("Warning: \(warning)") }
        for (run, file) in zip(runs, files) where run.curves.isEmpty {
            throw PlotError(file: file, "no line has per-exit losses (\"exit_losses\"); is this a sortedtrain metrics file?")
        }
        let chart = TrainingCurves.chart(runs, smooth: smooth, logY: logY, title: title, exits: exitSet)
        let curves = chart.series.filter(\.inLegend).count
        if curves == 0 {
            let depths = Set(runs.flatMap { $0.curves.values.flatMap(\.keys) }).sorted().map(String.init)
            printProgress("Error: --exits \(exits ?? ""): the runs have exits \(depths.joined(separator: ", ")) only")
            throw ExitCode.failure
        }
        do {
            let folder = URL(fileURLWithPath: output).deletingLastPathComponent()
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            try chart.write(to: output)
        } catch {
            throw PlotError(file: output, "cannot be written (\(error.localizedDescription))")
        }
        print("\(output): \(curves) curve\(curves == 1 ? "" : "s") from \(runs.count) run\(runs.count == 1 ? "" : "s")")
    }
}
