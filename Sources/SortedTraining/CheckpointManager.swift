// CheckpointManager: saving and resuming across ranks (the folder model is CheckpointDirectory's). A save writes step-XXXXXXXX.tmp/
// (every rank its shard, then rank 0 the index), renames it after a barrier and replaces
// the `latest` pointer atomically, so an interrupted save never damages an earlier one.
import Foundation
import SortedDistributed
import SortedFormats
import SortedIO
import SortedKit

public final class CheckpointManager {
    /// The root the checkpoints go to, and how many are kept.
    public let directory: CheckpointDirectory
    /// Written into every shard and the run state; a resumed run takes the checkpoint's.
    public var runID: String
    /// The weights the run started from (kept over resumes), for the run state.
    public var initialWeights: String?
    private let communicator: Communicator
    private let fileManager = FileManager.default

    public init(root: String, keep: Int, communicator: Communicator, runID: String = CheckpointManager.newRunID()) {
        directory = CheckpointDirectory(root: root, keep: keep)
        self.communicator = communicator
        self.runID = runID
    }

    /// 64 random bits in hex (every rank must then use rank 0's).
    public static func newRunID() -> String { CheckpointFiles.hex(UInt64.random(in: .min ... .max)) }

    /// Bytes one checkpoint of `layout` takes: weights and both AdamW moments, and a margin
    /// for the index and HDF5's own structures.
    public static func bytesNeeded(_ layout: ParameterLayout) -> Int { 3 * 4 * layout.count + (4 << 20) }

    /// "12.3 MB" (1e6 bytes).
    static func describe(_ bytes: Int) -> String { String(format: "%.1f MB", Double(bytes) / 1e6) }

    /// Free bytes of the file system that holds `path` (nil when it cannot be asked).
    static func freeBytes(_ path: String) -> Int? {
        var info = statvfs()
        guard statvfs(path, &info) == 0 else { return nil }
        return Int(info.f_bavail) * Int(info.f_frsize)
    }

    /// Before step 1: the checkpoint folder can be created and written, and its file system has
    /// room for one checkpoint — so a run does not train for hours and fail at its first save.
    public func checkWritable(needing bytes: Int) throws {
        let root = directory.root
        do { try fileManager.createDirectory(atPath: root, withIntermediateDirectories: true) } catch {
            throw FileFailure(path: root, "cannot create the checkpoint folder", reason: error.localizedDescription,
                              remedy: "set checkpoint.dir to a writable folder")
        }
        let probe = directory.path(".write-test-\(UUID().uuidString)")
        guard fileManager.createFile(atPath: probe, contents: Data([0])) else {
            throw FileFailure(path: root, "is not writable", remedy: "set checkpoint.dir to a writable folder")
        }
        try? fileManager.removeItem(atPath: probe)
        if let free = Self.freeBytes(root), free < bytes {
            throw FileFailure(path: root, "has \(Self.describe(free)) free on its file system; one checkpoint needs \(Self.describe(bytes))",
                              remedy: "free space there or set checkpoint.dir to a larger file system")
        }
    }

    /// Saves the trainer's weights, moments and state (at `trainer.state.step`); returns the folder.
    @discardableResult
    public func save(_ trainer: Trainer) throws -> String {
        let name = CheckpointDirectory.folderName(step: trainer.state.step)
        let temporary = directory.path(name + ".tmp"), final = directory.path(name)
        let world = communicator.size, rank = communicator.rank
        let layout = trainer.model.layout
        // Every rank learns whether rank 0 made the folder, whether every shard was written, and
        // whether rank 0 committed the folder (a full disk on one host must not leave the others
        // waiting); a failed save leaves no partial folder and the previous checkpoint as `latest`.
        let failed = { (first: Int, error: Error?) -> Error in
            if rank == 0 { try? self.fileManager.removeItem(atPath: temporary) }
            let free = Self.freeBytes(self.directory.root).map { " (\(Self.describe($0)) free; a checkpoint needs \(Self.describe(Self.bytesNeeded(layout))))" } ?? ""
            let failure = FileFailure(path: self.directory.root, "could not save step \(trainer.state.step)\(world > 1 ? " on rank \(first)" : "")\(free)",
                                      reason: error.map { "\($0)" })
            return CheckpointSaveFailure(failure: failure, step: trainer.state.step, reportsHere: first == rank)
        }
        try communicator.agreed({
            guard rank == 0 else { return }
            try? fileManager.removeItem(atPath: temporary)
            try fileManager.createDirectory(atPath: temporary, withIntermediateDirectories: true)
        }, failure: failed)
        // Every shard carries rank 0's run id (each rank's manager drew its own).
        if world > 1 {
            var id = [UInt8](runID.utf8.prefix(64)) + [UInt8](repeating: 0, count: max(0, 64 - runID.utf8.count))
            try id.withUnsafeMutableBytes { try communicator.broadcast($0.baseAddress!, bytes: 64, root: 0) }
            runID = String(decoding: id.prefix { $0 != 0 }, as: UTF8.self)
        }
        // Under ZeRO-1 a rank holds only its owned tensors' moments: it writes those tensors.
        let plan = trainer.partition.map { ShardPlan(layout: layout, partition: $0) } ?? ShardPlan(layout: layout, world: world)
        let buffers = CheckpointBuffers(parameters: trainer.model.parameters, firstMoment: trainer.optimizer.firstMoment,
                                        secondMoment: trainer.optimizer.secondMoment, momentRange: trainer.optimizer.owned)
        let shardedDigests = try trainer.partition.map { _ in try gatherMomentDigests(layout: layout, buffers: buffers) }
        try communicator.agreed({
            try CheckpointFiles.writeShard(at: (temporary as NSString).appendingPathComponent(CheckpointNames.shard(rank: rank, of: world)),
                                           identity: ShardIdentity(runID: runID, step: trainer.state.step),
                                           tensors: plan.tensors(of: rank, in: layout), buffers: buffers)
        }, failure: failed)
        try communicator.agreed({
            guard rank == 0 else { return }
            try commit(temporary, as: name, state: CheckpointState(
                training: trainer.state,
                worldSize: world, exits: trainer.config.objective.exits, config: trainer.config.json,
                modelConfig: String(decoding: try Self.sortedKeysEncoder.encode(trainer.model.config), as: UTF8.self),
                trainSeed: trainer.config.train.seed, sortedSeed: trainer.config.objective.seed,
                shards: (0..<world).map { CheckpointNames.shard(rank: $0, of: world) },
                tensors: layout.tensors.map(\.name), runID: runID,
                // Every rank holds the same weights (and, unless sharded, moments): rank 0 digests them.
                digests: CheckpointFiles.digests(layout: layout, buffers: buffers).merging(shardedDigests ?? [:]) { own, _ in own },
                initialWeights: initialWeights), plan: plan, layout: layout)
        }, failure: failed)
        return final
    }

    private static let sortedKeysEncoder: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return encoder
    }()

    /// Rank 0: the index into the written folder, then the folder in place of any checkpoint of
    /// the same step and `latest` pointed at it. A checkpoint of this step already there (a
    /// resumed run saving the same step again) is moved aside, not deleted, until the new one is
    /// in place, and put back if it cannot be. A damaged one (resume skipped it) is kept for the
    /// user under another name, never deleted.
    private func commit(_ temporary: String, as name: String, state: CheckpointState, plan: ShardPlan, layout: ParameterLayout) throws {
        let final = directory.path(name)
        try CheckpointFiles.writeIndex(at: (temporary as NSString).appendingPathComponent(CheckpointNames.index),
                                       state: state, plan: plan, layout: layout)
        let replaced = directory.path(name + ".old")
        try? fileManager.removeItem(atPath: replaced)
        var movedAside = false
        if fileManager.fileExists(atPath: final) {
            if (try? CheckpointFiles.readState(directory: final)) == nil {
                let kept = (1...).lazy.map { self.directory.path(name + ".damaged" + ($0 == 1 ? "" : "-\($0)")) }
                    .first { !fileManager.fileExists(atPath: $0) }!
                try fileManager.moveItem(atPath: final, toPath: kept)
                FileHandle.standardError.write(Data("warning: the damaged checkpoint \(final) is kept as \(kept); this step is saved anew\n".utf8))
            } else {
                try fileManager.moveItem(atPath: final, toPath: replaced)
                movedAside = true
            }
        }
        do {
            try fileManager.moveItem(atPath: temporary, toPath: final)
        } catch {
            if movedAside { try? fileManager.moveItem(atPath: replaced, toPath: final) }
            throw error
        }
        try directory.writeLatest(name)
        try? fileManager.removeItem(atPath: replaced)
        directory.prune(keeping: name)
    }


    /// Under ZeRO-1: every tensor's moment digests, each computed by the rank holding them.
    /// A digest travels as two 32-bit halves in a sum of doubles (exact: one rank adds it).
    private func gatherMomentDigests(layout: ParameterLayout, buffers: CheckpointBuffers) throws -> [String: String] {
        let moments = CheckpointNames.Moment.allCases
        var halves = [Double](repeating: 0, count: layout.tensors.count * moments.count * 2)
        for (t, tensor) in layout.tensors.enumerated() where buffers.holdsMoments(of: tensor) {
            for (m, (_, digest)) in CheckpointFiles.momentDigests(of: tensor, in: buffers).enumerated() {
                let slot = (t * moments.count + m) * 2
                halves[slot] = Double(digest >> 32)
                halves[slot + 1] = Double(digest & 0xffff_ffff)
            }
        }
        try communicator.allReduceSum(&halves)
        var out: [String: String] = [:]
        for (t, tensor) in layout.tensors.enumerated() {
            for (m, moment) in moments.enumerated() {
                let slot = (t * moments.count + m) * 2
                out[CheckpointNames.momentPath(moment, forTensor: tensor.name)] =
                    CheckpointFiles.hex(UInt64(halves[slot]) << 32 | UInt64(halves[slot + 1]))
            }
        }
        return out
    }

    /// Loads weights, moments (under ZeRO-1 those of the owned tensors) and position into
    /// `trainer`, from a save at any world size and ZeRO stage. Refuses a checkpoint of another
    /// model shape, or other exits unless `allowExitChange`.
    public static func load(_ directory: String, into trainer: Trainer, allowExitChange: Bool) throws -> CheckpointState {
        let state = try CheckpointFiles.readState(directory: directory)
        let saved = try LlamaConfig.decode(json: Data(state.modelConfig.utf8), source: directory)
        if saved != trainer.model.config {
            let diff = saved.differences(from: trainer.model.config).first ?? (key: "model", this: "another shape", other: "this one")
            throw TrainingError.checkpointModelDiffers(folder: directory, key: diff.key, saved: diff.this, configured: diff.other)
        }
        if state.exits != trainer.config.objective.exits && !allowExitChange {
            throw TrainingError.checkpointExitsDiffer(folder: directory, saved: state.exits, configured: trainer.config.objective.exits)
        }
        try CheckpointFiles.readTensors(directory: directory, state: state, layout: trainer.model.layout, parameters: trainer.model.parameters,
                                        moments: (trainer.optimizer.firstMoment, trainer.optimizer.secondMoment),
                                        momentRange: trainer.optimizer.owned)
        trainer.restore(state.training)
        return state
    }
}
