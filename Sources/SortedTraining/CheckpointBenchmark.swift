// CheckpointBenchmark: checkpoint write and read throughput next to a plain sequential
// write and read of the same bytes in the same folder, and the time to resume.
import Foundation
import SortedDistributed
import SortedIO
import SortedKit

public struct CheckpointBenchmarkResult: Codable, Sendable {
    public var bytes: Int
    public var checkpointWriteMiBPerSecond: Double
    public var checkpointReadMiBPerSecond: Double
    public var plainWriteMiBPerSecond: Double
    public var plainReadMiBPerSecond: Double
    public var writeRatio: Double
    public var readRatio: Double
    public var resumeSeconds: Double
    public var repeats: Int

    enum CodingKeys: String, CodingKey {
        case bytes, checkpointWriteMiBPerSecond = "checkpoint_write_mb_s",
             checkpointReadMiBPerSecond = "checkpoint_read_mb_s", plainWriteMiBPerSecond = "plain_write_mb_s",
             plainReadMiBPerSecond = "plain_read_mb_s", writeRatio = "write_ratio", readRatio = "read_ratio",
             resumeSeconds = "resume_s", repeats
    }
}

public enum CheckpointBenchmark {
    public static func run(config: RunConfig, directory: String, repeats: Int,
                           progress: (String) -> Void = { _ in }) throws -> CheckpointBenchmarkResult {
        let model = try LlamaModel(config: config.model)
        model.initializeRandomly(seed: config.train.seed)
        let data = SyntheticBatchSource(microBatchSize: config.train.microBatchSize,
                                        sequenceLength: config.train.sequenceLength, vocabSize: config.model.vocabSize)
        let single = SingleProcessCommunicator()
        let trainer = try Trainer(config: config, model: model, communicator: single, data: data)
        // Moments with real values, as after training.
        trainer.optimizer.firstMoment.copy(from: model.parameters)
        trainer.optimizer.secondMoment.copy(from: model.parameters)
        let bytes = model.layout.count * 4 * 3
        let manager = CheckpointManager(root: directory + "/checkpoints", keep: 1, communicator: single)
        let plainPath = directory + "/plain.bin"
        defer {
            try? FileManager.default.removeItem(atPath: directory + "/checkpoints")
            try? FileManager.default.removeItem(atPath: plainPath)
        }

        var write: [Double] = [], read: [Double] = [], plainWrite: [Double] = [], plainRead: [Double] = []
        var resume: [Double] = []
        for r in 1...repeats {
            trainer.restore(TrainingState(step: r))   // a new step folder per repeat, as in a run
            var start = ContinuousClock.now
            let folder = try manager.save(trainer)
            write.append((ContinuousClock.now - start).seconds)

            let target = try Trainer(config: config, model: try LlamaModel(config: config.model), communicator: single, data: data)
            start = ContinuousClock.now
            let state = try CheckpointFiles.readState(directory: folder)
            try CheckpointFiles.readTensors(directory: folder, state: state, layout: model.layout, parameters: target.model.parameters,
                                            moments: (target.optimizer.firstMoment, target.optimizer.secondMoment))
            read.append((ContinuousClock.now - start).seconds)
            start = ContinuousClock.now
            _ = try CheckpointManager.load(folder, into: target, allowExitChange: false)
            resume.append((ContinuousClock.now - start).seconds)

            start = ContinuousClock.now
            try plainWriteFile(plainPath, buffers: [model.parameters, trainer.optimizer.firstMoment, trainer.optimizer.secondMoment])
            plainWrite.append((ContinuousClock.now - start).seconds)
            start = ContinuousClock.now
            try plainReadFile(plainPath, into: [target.model.parameters, target.optimizer.firstMoment, target.optimizer.secondMoment])
            plainRead.append((ContinuousClock.now - start).seconds)
            progress(String(format: "repeat %d/%d: checkpoint write %.2f s, read %.2f s; plain write %.2f s, read %.2f s",
                            r, repeats, write.last!, read.last!, plainWrite.last!, plainRead.last!))
        }
        let mb = Double(bytes) / 1_048_576
        let best = { (times: [Double]) in mb / times.min()! }
        return CheckpointBenchmarkResult(
            bytes: bytes, checkpointWriteMiBPerSecond: best(write), checkpointReadMiBPerSecond: best(read),
            plainWriteMiBPerSecond: best(plainWrite), plainReadMiBPerSecond: best(plainRead),
            writeRatio: plainWrite.min()! / write.min()!, readRatio: plainRead.min()! / read.min()!,
            resumeSeconds: resume.min()!, repeats: repeats)
    }

    /// The same bytes as one file in 8 MiB writes, then fsync: what the disk allows.
    static func plainWriteFile(_ path: String, buffers: [FloatBuffer]) throws {
        _ = FileManager.default.createFile(atPath: path, contents: nil)
        guard let handle = FileHandle(forWritingAtPath: path) else { throw FileFailure(path: path, "cannot be written") }
        for buffer in buffers {
            var offset = 0
            let total = buffer.count * 4
            while offset < total {
                let n = min(8 << 20, total - offset)
                try handle.write(contentsOf: Data(bytesNoCopy: UnsafeMutableRawPointer(buffer.pointer) + offset, count: n,
                                                  deallocator: .none))
                offset += n
            }
        }
        try handle.synchronize()
        try handle.close()
    }

    static func plainReadFile(_ path: String, into buffers: [FloatBuffer]) throws {
        guard let handle = FileHandle(forReadingAtPath: path) else { throw FileFailure(path: path, "cannot be read") }
        defer { try? handle.close() }
        for buffer in buffers {
            var offset = 0
            let total = buffer.count * 4
            while offset < total {
                let chunk = try handle.read(upToCount: min(8 << 20, total - offset)) ?? Data()
                guard !chunk.isEmpty else { throw FileFailure(path: path, "is shorter than written") }
                chunk.withUnsafeBytes { (UnsafeMutableRawPointer(buffer.pointer) + offset).copyMemory(from: $0.baseAddress!, byteCount: chunk.count) }
                offset += chunk.count
            }
        }
    }
}
