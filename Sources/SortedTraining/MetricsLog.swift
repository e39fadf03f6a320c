// MetricsLog: one JSON object per step, appended to a JSONL file (rank 0 only).
import Foundation

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
            throw TrainingError("\(path): cannot open the metrics file for writing (\(error.localizedDescription)); set log.dir to a writable folder")
        }
        encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        // A skipped non-finite step still gets its line.
        encoder.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "Infinity", negativeInfinity: "-Infinity", nan: "NaN")
    }

    deinit { try? handle.close() }

    public func append(_ metrics: StepMetrics) throws {
        var line = try encoder.encode(metrics)
        line.append(0x0A)
        try handle.write(contentsOf: line)
    }
}
