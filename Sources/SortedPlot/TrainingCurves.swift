// TrainingCurves: the metrics.jsonl files that `sortedtrain train` writes, as a chart of loss
// per step with one curve per (run, exit). It reads the lines by key ("step", "exit_losses":
// {"2": 1.3, …}) rather than through SortedTraining's StepMetrics, so SortedPlot keeps no
// dependencies (SortedTraining sits above it) and the reading is unit-tested here.
import Foundation

/// A file that cannot be plotted, as one line: `file:line: message`.
public struct PlotError: Error, CustomStringConvertible {
    public let file: String
    public let line: Int?
    public let message: String

    public init(file: String, line: Int? = nil, _ message: String) {
        self.file = file
        self.line = line
        self.message = message
    }

    public var description: String { line.map { "\(file):\($0): \(message)" } ?? "\(file): \(message)" }
}

/// One run's per-exit loss curves.
public struct MetricsRun {
    public var name: String
    /// kind → exit depth → (step, loss) sorted by step. Kind "train" is `exit_losses`; any other
    /// key holding a per-exit object (e.g. a later "validation": {"2": 1.4, …}, or
    /// {"exit_losses": {…}} inside it) is a kind of its own, named by that key.
    public var curves: [String: [Int: [(x: Double, y: Double)]]]
    /// Lines skipped with a reason (an unfinished last line of a run still writing).
    public var warnings: [String]

    /// Reads `path` (a metrics.jsonl file, or a run folder holding one).
    public static func read(_ path: String, name: String? = nil) throws -> MetricsRun {
        var file = path, isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue {
            file = (path as NSString).appendingPathComponent("metrics.jsonl")
        }
        guard FileManager.default.fileExists(atPath: file) else { throw PlotError(file: file, "no such file") }
        guard let data = FileManager.default.contents(atPath: file) else { throw PlotError(file: file, "cannot be read") }
        return try parse(data, file: file, name: name ?? TrainingCurves.runName(file))
    }

    public static func parse(_ data: Data, file: String, name: String) throws -> MetricsRun {
        // A resumed run appends to the same file and may repeat steps: the later line wins.
        var values: [String: [Int: [Double: Double]]] = [:]
        var warnings: [String] = []
        let lines = data.split(separator: 0x0A, omittingEmptySubsequences: false)
        for (index, raw) in lines.enumerated() {
            if raw.allSatisfy({ $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }) { continue }
            guard let object = (try? JSONSerialization.jsonObject(with: Data(raw))) as? [String: Any] else {
                // No newline after it: the trainer may be writing it right now.
                if index == lines.count - 1 {
                    warnings.append("\(file):\(index + 1): skipped an unfinished last line")
                    continue
                }
                throw PlotError(file: file, line: index + 1, "not a JSON object")
            }
            guard let step = number(object["step"]), step.isFinite else { continue }
            for (key, value) in object {
                // The trainer's other per-exit figures are not losses.
                let named = key == "exit_losses" || key.hasSuffix("_exit_losses")
                guard !notLosses.contains(key), let losses = perExit(value) else { continue }
                let kind = key == "exit_losses" ? "train" : named ? String(key.dropLast(12)) : key
                for (depth, loss) in losses { values[kind, default: [:]][depth, default: [:]][step] = loss }
            }
        }
        let curves = values.mapValues { byDepth in
            byDepth.mapValues { bySteps in bySteps.sorted { $0.key < $1.key }.map { (x: $0.key, y: $0.value) } }
        }
        return MetricsRun(name: name, curves: curves, warnings: warnings)
    }

    /// Per-exit figures of the training lines that are not losses: each exit's weight in the
    /// loss, and its KL from the teacher under self-distillation.
    static let notLosses: Set<String> = ["exit_weights", "exit_kl"]

    /// {"2": 1.3, "4": 1.1} (or {"2": {"loss": 1.3}, …}, or {"exit_losses": {…}}) as depth → loss.
    static func perExit(_ value: Any) -> [Int: Double]? {
        guard let object = value as? [String: Any], !object.isEmpty else { return nil }
        if let inner = object["exit_losses"] { return perExit(inner) }
        var out: [Int: Double] = [:]
        for (key, v) in object {
            guard let depth = Int(key), let loss = number(v) ?? number((v as? [String: Any])?["loss"]) else { return nil }
            out[depth] = loss
        }
        return out
    }

    /// A JSON number, or the strings MetricsLog writes for non-finite values ("NaN", "Infinity").
    static func number(_ value: Any?) -> Double? {
        if let n = value as? NSNumber { return n.doubleValue }
        if let s = value as? String, ["nan", "infinity", "-infinity"].contains(s.lowercased()) { return Double(s) }
        return nil
    }
}

public enum TrainingCurves {
    /// Loss per step, one curve per (run, kind, exit). Colour follows the exit (or the run when
    /// every run has a single exit); runs differ by dash (solid, dotted, dash-dot); non-training
    /// kinds (validation) are dashed with markers. `smooth` is a centred moving-average window in
    /// points (nil: about 5% of the steps); when it is above 1 the raw curve is drawn faintly behind.
    public static func chart(_ runs: [MetricsRun], smooth: Int? = nil, logY: Bool = false, title: String? = nil,
                             exits: Set<Int>? = nil) -> LineChart {
        let keep = { (depth: Int) in exits?.contains(depth) ?? true }
        let kinds = Set(runs.flatMap(\.curves.keys)).sorted { ($0 == "train" ? "" : $0) < ($1 == "train" ? "" : $1) }
        let depths = Set(runs.flatMap { $0.curves.values.flatMap(\.keys) }).filter(keep).sorted()
        let longest = runs.compactMap { $0.curves["train"]?.values.map(\.count).max() }.max() ?? 0
        let window = Swift.max(1, smooth ?? autoWindow(points: longest))
        let byExit = depths.count > 1
        let runDashes: [Dash] = [.solid, .dotted, .dashDot]

        var faint: [Series] = [], main: [Series] = []
        for (r, run) in runs.enumerated() {
            for kind in kinds {
                guard let curves = run.curves[kind] else { continue }
                for depth in curves.keys.filter(keep).sorted() {
                    let i = depths.firstIndex(of: depth) ?? 0
                    let color = !byExit ? Color.palette(r)
                        : depths.count <= Color.palette.count ? Color.palette(i) : Color.sequential(Double(i) / Double(depths.count - 1))
                    let points = curves[depth] ?? []
                    var name = "exit \(depth)"
                    if runs.count > 1 { name = "\(run.name) · " + name }
                    if kind == "train" {
                        let dash = byExit ? runDashes[r % runDashes.count] : .solid
                        if window > 1 {
                            faint.append(Series("", thinned(points), color: color, lineWidth: 1, opacity: 0.15, inLegend: false))
                        }
                        main.append(Series(name, thinned(movingAverage(points, window: window)), color: color, dash: dash))
                    } else {
                        main.append(Series("\(name) (\(kind))", thinned(points), color: color, dash: .dashed,
                                           marker: points.count <= 60 ? .circle : .none, lineWidth: 1.5))
                    }
                }
            }
        }
        let training = kinds == ["train"]
        var heading = training ? "Training loss per exit" : "Loss per exit"
        if runs.count == 1, let run = runs.first { heading += ": \(run.name)" }
        let yLabel = window > 1 ? "loss (moving average of \(window) steps)" : "loss"
        return LineChart(title: title ?? heading, x: Axis("step"), y: Axis(yLabel, scale: logY ? .log : .linear),
                         series: faint + main)
    }

    /// One chart per run (titled by its name), all on the loss range of the whole set, so
    /// panels compare at a glance without every curve sharing one legend.
    public static func panels(_ runs: [MetricsRun], smooth: Int? = nil, logY: Bool = false,
                              exits: Set<Int>? = nil) -> [LineChart] {
        var charts = runs.map { chart([$0], smooth: smooth, logY: logY, title: $0.name, exits: exits) }
        let ys = charts.flatMap { $0.series.filter(\.inLegend).flatMap { $0.points.map(\.y) } }
            .filter { $0.isFinite && (!logY || $0 > 0) }
        if let low = ys.min(), let high = ys.max() {
            for i in charts.indices {
                charts[i].y.min = low
                charts[i].y.max = high
            }
        }
        return charts
    }

    /// About 5% of the steps, so a 600-step run is averaged over 30: per-step losses of small
    /// batches vary by more than the gaps between exits. Under 40 steps nothing is smoothed.
    public static func autoWindow(points: Int) -> Int { points < 40 ? 1 : points / 20 }

    /// A centred moving average over `window` points, shrinking symmetrically at the ends (so
    /// a falling curve is not pulled up there); non-finite values stay gaps and are left out
    /// of their neighbours' averages.
    public static func movingAverage(_ points: [(x: Double, y: Double)], window: Int) -> [(x: Double, y: Double)] {
        guard window > 1, points.count > 1 else { return points }
        var sum = [0.0], count = [0]   // prefix sums over the finite values
        for p in points {
            sum.append(sum.last! + (p.y.isFinite ? p.y : 0))
            count.append(count.last! + (p.y.isFinite ? 1 : 0))
        }
        return points.indices.map { i in
            guard points[i].y.isFinite else { return points[i] }
            let r = Swift.min(window / 2, i, points.count - 1 - i), a = i - r, b = i + r + 1
            return (x: points[i].x, y: (sum[b] - sum[a]) / Double(count[b] - count[a]))
        }
    }

    /// At most `limit` points (every k-th, and the last), so a long run's SVG stays small.
    static func thinned(_ points: [(x: Double, y: Double)], limit: Int = 2000) -> [(x: Double, y: Double)] {
        guard points.count > limit else { return points }
        let stride = (points.count + limit - 1) / limit
        return points.indices.filter { $0 % stride == 0 || $0 == points.count - 1 }.map { points[$0] }
    }

    /// runs/demo/metrics.jsonl and the folder runs/demo → "demo"; other files by name without extension.
    public static func runName(_ path: String) -> String {
        let url = URL(fileURLWithPath: path).standardizedFileURL
        var isDirectory: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), isDirectory.boolValue { return url.lastPathComponent }
        if url.lastPathComponent == "metrics.jsonl" { return url.deletingLastPathComponent().lastPathComponent }
        return url.deletingPathExtension().lastPathComponent
    }
}
