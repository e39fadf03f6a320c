// CheckpointManager: saving and resuming across ranks. A save writes step-XXXXXXXX.tmp/
// (every rank its shard, then rank 0 the index), renames it after a barrier and replaces
// the `latest` pointer atomically, so an interrupted save never damages an earlier one.
import Foundation
import SortedDistributed
import SortedIO
import SortedKit

public final class CheckpointManager {
    public let root: String
    public let keep: Int
    /// Written into every shard and the run state; a resumed run takes the checkpoint's.
    public var runID: String
    private let communicator: Communicator
    private let fileManager = FileManager.default

    public init(root: String, keep: Int, communicator: Communicator, runID: String = CheckpointManager.newRunID()) {
        self.root = root
        self.keep = keep
        self.communicator = communicator
        self.runID = runID
    }

    /// 64 random bits in hex (every rank must then use rank 0's).
    public static func newRunID() -> String { CheckpointFiles.hex(UInt64.random(in: .min ... .max)) }

    public static func directoryName(step: Int) -> String { String(format: "step-%08d", step) }

    private func path(_ name: String) -> String { (root as NSString).appendingPathComponent(name) }

    /// Saves the trainer's state after `trainer.startStep + steps run`; returns the folder.
    @discardableResult
    public func save(_ trainer: Trainer, step: Int) throws -> String {
        let name = Self.directoryName(step: step)
        let temporary = path(name + ".tmp"), final = path(name)
        let world = communicator.size, rank = communicator.rank
        let layout = trainer.model.layout
        if rank == 0 {
            try? fileManager.removeItem(atPath: temporary)
            do { try fileManager.createDirectory(atPath: temporary, withIntermediateDirectories: true) } catch {
                throw TrainingError("\(temporary): cannot create the checkpoint folder (\(error.localizedDescription)); set checkpoint.dir to a writable folder")
            }
        }
        try communicator.barrier()
        // Every shard carries rank 0's run id (each rank's manager drew its own).
        if world > 1 {
            var id = [UInt8](runID.utf8.prefix(64)) + [UInt8](repeating: 0, count: max(0, 64 - runID.utf8.count))
            try id.withUnsafeMutableBytes { try communicator.broadcast($0.baseAddress!, bytes: 64, root: 0) }
            runID = String(decoding: id.prefix { $0 != 0 }, as: UTF8.self)
        }
        let plan = ShardPlan(layout: layout, world: world)
        let buffers = CheckpointBuffers(parameters: trainer.model.parameters, firstMoment: trainer.optimizer.firstMoment,
                                        secondMoment: trainer.optimizer.secondMoment)
        try CheckpointFiles.writeShard(at: (temporary as NSString).appendingPathComponent(CheckpointNames.shard(rank: rank, of: world)),
                                       identity: ShardIdentity(runID: runID, step: step),
                                       tensors: plan.tensors(of: rank, in: layout), buffers: buffers)
        try communicator.barrier()
        if rank == 0 {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            let state = CheckpointState(
                step: step, optimizerSteps: trainer.optimizer.stepCount, sampleCursor: trainer.sampleCursor,
                worldSize: world, exits: trainer.config.objective.exits, config: trainer.config.json,
                modelConfig: String(decoding: try encoder.encode(trainer.model.config), as: UTF8.self),
                trainSeed: trainer.config.train.seed, sortedSeed: trainer.config.objective.seed,
                shards: (0..<world).map { CheckpointNames.shard(rank: $0, of: world) },
                tensors: layout.tensors.map(\.name), runID: runID,
                // Every rank holds the same weights and moments, so rank 0 can digest them all.
                digests: CheckpointFiles.digests(layout: layout, buffers: buffers))
            try CheckpointFiles.writeIndex(at: (temporary as NSString).appendingPathComponent(CheckpointNames.index),
                                           state: state, plan: plan, layout: layout)
            // A checkpoint of this step already there (a resumed run saving the same step
            // again) is moved aside, not deleted, until the new one is in place.
            let replaced = path(name + ".old")
            try? fileManager.removeItem(atPath: replaced)
            if fileManager.fileExists(atPath: final) { try fileManager.moveItem(atPath: final, toPath: replaced) }
            try fileManager.moveItem(atPath: temporary, toPath: final)
            try writeLatest(name)
            try? fileManager.removeItem(atPath: replaced)
            try prune(keeping: name)
        }
        try communicator.barrier()
        return final
    }

    /// `latest` holds the folder name; replaced by rename so readers see old or new, whole.
    private func writeLatest(_ name: String) throws {
        let temporary = path("latest.tmp")
        try Data((name + "\n").utf8).write(to: URL(fileURLWithPath: temporary))
        try CheckpointFiles.syncToDisk(temporary)
        if rename(temporary, path("latest")) != 0 {
            throw TrainingError("\(path("latest")): cannot replace the latest-checkpoint pointer")
        }
    }

    /// Every step folder in this root (intact or not; no .tmp or .old), oldest first.
    public func checkpointFolders() -> [String] {
        let names = (try? fileManager.contentsOfDirectory(atPath: root)) ?? []
        return names.filter { $0.hasPrefix("step-") && !$0.hasSuffix(".tmp") && !$0.hasSuffix(".old") }.sorted()
    }

    /// Entries named like step folders that are not folders: saving over them would replace
    /// what train did not write.
    public func foreignEntries() -> [String] {
        checkpointFolders().filter { name in
            var isFolder: ObjCBool = false
            return !fileManager.fileExists(atPath: path(name), isDirectory: &isFolder) || !isFolder.boolValue
        }
    }

    /// The step folders whose index, run state and shards check out, oldest first.
    public func completeCheckpoints() -> [String] {
        checkpointFolders().filter { (try? CheckpointFiles.readState(directory: path($0))) != nil }
    }

    /// Deletes intact checkpoints beyond the newest `keep` (never `current`). A damaged one
    /// is left for the user to look at: it was skipped loudly at resume.
    private func prune(keeping current: String) throws {
        for old in completeCheckpoints().dropLast(keep) where old != current {
            try? fileManager.removeItem(atPath: path(old))
        }
    }

    /// What `--resume auto` found: the folder to load and every newer candidate it passed
    /// over, with the reason. No folder and nothing skipped: the root holds no checkpoint.
    public struct Resolution {
        public var folder: String?
        public var skipped: [(folder: String, reason: String)] = []

        /// "step-00000004: reason; step-00000002: reason" for messages.
        public var skippedSummary: String {
            skipped.map { "\(($0.folder as NSString).lastPathComponent): \($0.reason)" }.joined(separator: "; ")
        }
    }

    /// The folder `--resume` means: "auto" is `latest` when it checks out, else the newest
    /// checkpoint that does (a root whose checkpoints are all damaged gives no folder and
    /// the reasons). Anything else is a checkpoint folder, checked.
    public func resolve(_ resume: String) throws -> Resolution {
        guard resume == "auto" else {
            _ = try CheckpointFiles.readState(directory: resume)
            return Resolution(folder: resume)
        }
        var candidates = checkpointFolders().reversed().map { path($0) }
        if let pointer = try? String(contentsOfFile: path("latest"), encoding: .utf8) {
            let named = path(pointer.trimmingCharacters(in: .whitespacesAndNewlines))
            if candidates.contains(named) {
                candidates.removeAll { $0 == named }
                candidates.insert(named, at: 0)
            }
        }
        var resolution = Resolution()
        for candidate in candidates {
            do {
                _ = try CheckpointFiles.readState(directory: candidate)
                resolution.folder = candidate
                return resolution
            } catch {
                resolution.skipped.append((candidate, "\(error)"))
            }
        }
        return resolution
    }

    /// Loads weights, moments and position into `trainer`. Refuses a checkpoint of another
    /// model shape, or other exits unless `allowExitChange`.
    public static func load(_ directory: String, into trainer: Trainer, allowExitChange: Bool) throws -> CheckpointState {
        let state = try CheckpointFiles.readState(directory: directory)
        let saved = try LlamaConfig.decode(json: Data(state.modelConfig.utf8), source: directory)
        if saved != trainer.model.config {
            let current = trainer.model.config
            let keys: [(String, String, String)] = [
                ("hidden_size", "\(saved.hiddenSize)", "\(current.hiddenSize)"),
                ("intermediate_size", "\(saved.intermediateSize)", "\(current.intermediateSize)"),
                ("num_hidden_layers", "\(saved.numHiddenLayers)", "\(current.numHiddenLayers)"),
                ("num_attention_heads", "\(saved.numAttentionHeads)", "\(current.numAttentionHeads)"),
                ("num_key_value_heads", "\(saved.numKeyValueHeads)", "\(current.numKeyValueHeads)"),
                ("head_dim", "\(saved.headDim)", "\(current.headDim)"),
                ("vocab_size", "\(saved.vocabSize)", "\(current.vocabSize)"),
                ("rms_norm_eps", "\(saved.rmsNormEps)", "\(current.rmsNormEps)"),
                ("rope_theta", "\(saved.ropeTheta)", "\(current.ropeTheta)"),
                ("tie_word_embeddings", "\(saved.tieWordEmbeddings)", "\(current.tieWordEmbeddings)"),
                ("max_position_embeddings", "\(saved.maxPositionEmbeddings)", "\(current.maxPositionEmbeddings)"),
            ]
            let diff = keys.first { $0.1 != $0.2 } ?? ("model", "another shape", "this one")
            throw TrainingError("\(directory): the checkpoint's model has \(diff.0) = \(diff.1), the config asks for \(diff.2); resume with the checkpoint's model config")
        }
        if state.exits != trainer.config.objective.exits && !allowExitChange {
            throw TrainingError("\(directory): the checkpoint was trained with exits \(state.exits), the config has \(trainer.config.objective.exits); pass --allow-exit-change to continue with the new exits")
        }
        try CheckpointFiles.readTensors(directory: directory, state: state, layout: trainer.model.layout, parameters: trainer.model.parameters,
                                        moments: (trainer.optimizer.firstMoment, trainer.optimizer.secondMoment))
        trainer.optimizer.stepCount = state.optimizerSteps
        trainer.startStep = state.step
        trainer.sampleCursor = state.sampleCursor
        return state
    }
}
