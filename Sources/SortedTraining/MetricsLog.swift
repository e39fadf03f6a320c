// MetricsLog: one JSON object per step, appended to a JSONL file (rank 0 only).
import Foundation
import SortedInference

public final class MetricsLog {
    public let path: String
    private let handle: FileHandle
    private let encoder: JSONEncoder

    /// Opens `path` for appending (a resumed run continues the same file), creating folders.
    public init(path: String) throws {
        self.path = path
        let url = URL(fileURLWithPath: path)
        do {
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
            if !FileManager.default.fileExists(atPath: path) {
                _ = FileManager.default.createFile(atPath: path, contents: nil)
            }
            handle = try FileHandle(forWritingTo: url)
            try handle.seekToEnd()
        } catch {
            throw FileFailure(path: path, "cannot open the metrics file for writing", reason: error.localizedDescription, remedy: "set log.dir to a writable folder")
        }
        encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        // A skipped non-finite step still gets its line.
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
    }

    deinit { try? handle.close() }

    /// One line: a StepMetrics, or any other record of the run (a validation line).
    public func append<Line: Encodable>(_ metrics: Line) throws {
        var line = try encoder.encode(metrics)
        line.append(0x0A)
        try handle.write(contentsOf: line)
    }
}

/// A metrics line with every exit's held-out figures (log.eval_every).
public struct ValidationMetrics: Encodable {
    public var step: Int
    public var validation: Figures

    public struct Figures: Encodable {
        /// depth → mean cross-entropy, as the training lines' exit_losses.
        public var exitLosses: [String: Double]
        public var accuracy: [String: Double]
        public var agreement: [String: Double]
        public var klFromDeepest: [String: Double]
        public var tokens: Int

        enum CodingKeys: String, CodingKey {
            case accuracy, agreement, tokens
            case exitLosses = "exit_losses"
            case klFromDeepest = "kl_from_deepest"
        }
    }

    public init(step: Int, reports: [ExitReport]) {
        func byDepth(_ value: (ExitReport) -> Double) -> [String: Double] {
            Dictionary(uniqueKeysWithValues: reports.map { (String($0.depth), value($0)) })
        }
        self.step = step
        validation = Figures(exitLosses: byDepth(\.loss), accuracy: byDepth(\.accuracy), agreement: byDepth(\.agreement),
                             klFromDeepest: byDepth(\.klFromDeepest), tokens: reports.first?.lossTokens ?? 0)
    }
}
