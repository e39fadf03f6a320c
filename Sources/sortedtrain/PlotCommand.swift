// `sortedtrain plot`: per-exit loss curves of one or more runs' metrics.jsonl, or the
// per-exit quality of `eval --json` reports, as one SVG file.
import ArgumentParser
import Foundation
import SortedFormats
import SortedIO
import SortedInference
import SortedPlot

struct PlotCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "plot",
        abstract: "Chart the per-exit training loss of runs (metrics.jsonl), or eval reports, as an SVG file.",
        discussion: """
        One curve per run and exit: colour follows the exit depth, runs differ by dash, or \
        each run has a panel of its own (--panels, on one loss scale). A run is named after \
        the folder holding its metrics.jsonl, or by --name. Curves are a centred moving \
        average (--smooth) with the raw values drawn faintly behind; other per-exit objects \
        in the lines (e.g. validation losses) are drawn dashed with markers. Lines without \
        per-exit losses are ignored.

        Given `sortedtrain eval --json` reports instead, it draws their loss per exit, one \
        line per report, next to exact match against generation speed (as eval --svg does).

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

    @Option(help: "Names of the runs or reports, comma-separated, one per file (default: the folder or report's model).")
    var name: String?

    @Flag(help: "One panel per run, on one loss scale, instead of all curves in one chart.")
    var panels = false

    private var names: [String]? { name.map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) } }

    func validate() throws {
        if files.isEmpty { throw ValidationError("name at least one metrics.jsonl file") }
        if let names, names.count != files.count || names.contains(where: \.isEmpty) {
            throw ValidationError("--name needs one non-empty name per file (\(files.count)), comma-separated; got '\(name ?? "")'")
        }
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
        let reports = try files.map(Self.evaluationReport)
        if reports.contains(where: { $0 != nil }) {
            guard let reports = reports as? [EvaluationReport] else {
                let file = zip(files, reports).first { $0.1 == nil }!.0
                throw PlotError(file: file, "is not an eval report, as the other files are; plot reports and metrics.jsonl files separately")
            }
            try writeEvaluationChart(reports)
            return
        }
        // Runs in different folders with the same name (a/demo, b/demo) are named by their path.
        let folderNames = files.map(TrainingCurves.runName)
        let runs = try files.enumerated().map { i, file in
            try MetricsRun.read(file, name: names?[i] ?? (folderNames.filter { $0 == folderNames[i] }.count > 1 ? file : folderNames[i]))
        }
        for warning in runs.flatMap(\.warnings) { printProgress("Warning: \(warning)") }
        for (run, file) in zip(runs, files) where run.curves.isEmpty {
            throw PlotError(file: file, "no line has per-exit losses (\"exit_losses\"); is this a sortedtrain metrics file?")
        }
        let charts = panels
            ? TrainingCurves.panels(runs, smooth: smooth, logY: logY, exits: exitSet)
            : [TrainingCurves.chart(runs, smooth: smooth, logY: logY, title: title, exits: exitSet)]
        let curves = charts.reduce(0) { $0 + $1.series.filter(\.inLegend).count }
        if curves == 0 {
            let depths = Set(runs.flatMap { $0.curves.values.flatMap(\.keys) }).sorted().map(String.init)
            printProgress("Error: --exits \(exits ?? ""): the runs have exits \(depths.joined(separator: ", ")) only")
            throw ExitCode.failure
        }
        do {
            let folder = URL(fileURLWithPath: output).deletingLastPathComponent()
            try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            try SVGDocument(panels: charts, columns: charts.count > 1 ? 2 : 1, title: panels ? title ?? "" : "").write(to: output)
        } catch {
            throw PlotError(file: output, "cannot be written (\(error.localizedDescription))")
        }
        print("\(output): \(curves) curve\(curves == 1 ? "" : "s") from \(runs.count) run\(runs.count == 1 ? "" : "s")")
    }

    /// The file as an `eval --json` report, or nil when it is something else (metrics.jsonl).
    static func evaluationReport(_ file: String) throws -> EvaluationReport? {
        guard file.hasSuffix(".json"), let data = FileManager.default.contents(atPath: file),
              let value = try? JSONParser.parse(data), value.object?["exits"] != nil else { return nil }
        do {
            return try JSONValueDecoder.decode(EvaluationReport.self, from: value)
        } catch {
            throw PlotError(file: file, "looks like an eval report but is not one (\(error))")
        }
    }

    private func writeEvaluationChart(_ reports: [EvaluationReport]) throws {
        let runs = reports.enumerated().flatMap { i, report in
            [(name: names?[i] ?? report.model, reports: report.exits)]
                + (report.compared.map { [(name: $0.model, reports: $0.exits)] } ?? [])
        }.map { run in (name: run.name, reports: run.reports.filter { exitSet?.contains($0.depth) ?? true }) }
        do {
            try EvaluationChart.svg(runs, logLoss: logY).write(toFile: output, atomically: true, encoding: .utf8)
        } catch {
            throw PlotError(file: output, "cannot be written (\(error.localizedDescription))")
        }
        print("\(output): loss per exit of \(runs.count) model\(runs.count == 1 ? "" : "s")")
    }
}
