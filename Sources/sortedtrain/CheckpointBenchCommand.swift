// `sortedtrain bench checkpoint`: checkpoint write/read throughput against plain file I/O.
import ArgumentParser
import Foundation
import SortedTraining

struct CheckpointBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "checkpoint",
        abstract: "Checkpoint write and read throughput next to a plain sequential write/read of the same bytes, and resume time.")

    @Option(help: "Run config JSON (its model is what gets saved).")
    var config: String = "configs/bench-58m.json"

    @Option(help: "Folder to write into (on the disk to measure).")
    var dir: String = "runs/bench-checkpoint"

    @Option(parsing: .unconditional, help: "Repeats (the best of each is reported).")
    var repeats: Int = 3

    @Flag(help: "Print one JSON object.")
    var json = false

    func validate() throws {
        guard repeats >= 1 else { throw ValidationError("--repeats must be at least 1") }
    }

    func run() throws {
        let runConfig = try RunConfig.load(path: config)
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let r = try CheckpointBenchmark.run(config: runConfig, directory: dir, repeats: repeats) { line in
            if !json { printProgress(line) }
        }
        if json {
            try printJSON(r)
            return
        }
        let f = { (x: Double) in String(format: "%.0f", x) }
        print("checkpoint of \(f(Double(r.bytes) / 1_048_576)) MiB (weights + AdamW moments) in \(dir)")
        print("write: checkpoint \(f(r.checkpointWriteMiBPerSecond)) MiB/s, plain \(f(r.plainWriteMiBPerSecond)) MiB/s → \(String(format: "%.2f", r.writeRatio))")
        print("read:  checkpoint \(f(r.checkpointReadMiBPerSecond)) MiB/s, plain \(f(r.plainReadMiBPerSecond)) MiB/s → \(String(format: "%.2f", r.readRatio))")
        print("resume (state + weights + moments): \(String(format: "%.2f", r.resumeSeconds)) s")
    }
}
