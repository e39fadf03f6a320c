// TrainingErrors: what can stop a run, an export or a model load, as cases with their
// context. The text says what is wrong in the run's own terms (config keys, folders); the
// command line adds its flags where they are the remedy (sortedtrain's ErrorMessages).
import Foundation
import SortedData

public enum TrainingError: Error, Equatable, CustomStringConvertible {
    /// A NaN or infinite loss or gradient norm at `step` (1-based): every rank sees it after
    /// the all-reduce.
    case nonFinite(step: Int, quantity: String, value: Double)
    /// Rank `rank` holds other values of `what` than rank 0 (found on every rank).
    case ranksDiffer(rank: Int, what: String)
    /// The data source's micro-batch shape is not the config's.
    case batchShapeMismatch(source: [Int], config: [Int])
    /// A checkpoint of another model shape: the first differing config key and both values.
    case checkpointModelDiffers(folder: String, key: String, saved: String, configured: String)
    /// A checkpoint trained with other exits (allowed only when asked for).
    case checkpointExitsDiffer(folder: String, saved: [Int], configured: [Int])
    /// checkpoint.dir already holds step folders, and the run was not told what to do with them.
    case checkpointsExist(root: String, newest: String)
    /// A checkpoints root whose every checkpoint is damaged; `skipped` gives each reason.
    case noIntactCheckpoint(root: String, skipped: String)
    /// The initial weights to train from do not exist.
    case initialWeightsMissing(path: String)
    /// --init-from names a checkpoint: that is resumed, not started from.
    case initialWeightsAreACheckpoint(path: String)
    /// Weights holding NaN or infinite values.
    case nonFiniteWeights(path: String, tensor: String, count: Int)
    case depthOutsideModel(depth: Int, layers: Int)
    case depthNotAnExit(depth: Int, exits: [Int])

    /// Raised alike on every rank (from values all ranks share), so the job can end cleanly
    /// with one report instead of an abort.
    public var isRaisedOnEveryRank: Bool {
        switch self {
        case .nonFinite, .ranksDiffer: return true
        default: return false
        }
    }

    public var description: String {
        switch self {
        case .nonFinite(let step, let quantity, let value):
            return "step \(step): the \(quantity) is \(value); stopping before the update. Lower optim.lr, or set train.on_nonfinite=\"skip\" to skip such steps"
        case .ranksDiffer(let rank, let what): return "rank \(rank) differs from rank 0 in \(what)"
        case .batchShapeMismatch(let source, let config):
            return "the data source's batch shape \(source.map(String.init).joined(separator: "×")) differs from train.micro_batch_size × train.sequence_length (\(config.map(String.init).joined(separator: "×")))"
        case .checkpointModelDiffers(let folder, let key, let saved, let configured):
            return "\(folder): the checkpoint's model has \(key) = \(saved), the config asks for \(configured); resume with the checkpoint's model config"
        case .checkpointExitsDiffer(let folder, let saved, let configured):
            return "\(folder): the checkpoint was trained with exits \(saved), the config has \(configured)"
        case .checkpointsExist(let root, let newest): return "\(root) already holds checkpoints (newest \(newest))"
        case .noIntactCheckpoint(let root, let skipped): return "\(root): no intact checkpoint (\(skipped))"
        case .initialWeightsMissing(let path): return "\(path): does not exist; give an HF model folder or a .gguf file"
        case .initialWeightsAreACheckpoint(let path):
            return "\(path) is a checkpoint: continue its run with --resume \(path) (same config), or export it (sortedtrain export --format hf) and start a new run from that folder"
        case .nonFiniteWeights(let path, let tensor, let count):
            return "\(path): \(tensor) holds \(count) NaN or infinite value\(count == 1 ? "" : "s"); these weights cannot be trained from"
        case .depthOutsideModel(let depth, let layers):
            return "depth \(depth) is outside 1...\(layers) (the checkpoint's model has \(layers) layers)"
        case .depthNotAnExit(let depth, let exits): return "depth \(depth) was not trained as an exit (exits: \(exits)); pick one of them"
        }
    }
}

/// A file or folder that could not be created, written or read; `remedy` names the setting
/// that chooses another place, when there is one.
public struct FileFailure: Error, Equatable, CustomStringConvertible {
    public let path: String
    /// What was attempted, e.g. "cannot create the checkpoint folder".
    public let failure: String
    /// The system's reason, when it gave one.
    public let reason: String?
    public let remedy: String?

    public init(path: String, _ failure: String, reason: String? = nil, remedy: String? = nil) {
        self.path = path
        self.failure = failure
        self.reason = reason
        self.remedy = remedy
    }

    public var description: String {
        "\(path): \(failure)" + (reason.map { " (\($0))" } ?? "") + (remedy.map { "; \($0)" } ?? "")
    }
}

/// A checkpoint save that failed on some rank. Every rank throws it (the outcome is agreed), so
/// the run stops or trains on together, as `checkpoint.on_error` says.
public struct CheckpointSaveFailure: Error, CustomStringConvertible {
    public let failure: FileFailure
    public let step: Int
    /// Whether this rank is the one that failed (and so reports it).
    public let reportsHere: Bool
    public var description: String { failure.description }
}

/// How a failure ends a job of one or more ranks: the error, and who reports it.
public struct JobFailure: Error, CustomStringConvertible {
    public enum Reach: Sendable {
        /// Every rank knows (it was agreed, or raised alike): the job ends cleanly.
        case everyRank
        /// This rank alone failed; its peers may be waiting in a collective: the job is aborted.
        case thisRank
    }
    public let error: Error
    public let reach: Reach
    /// Whether this process prints the error (one rank speaks for the job).
    public let reportsHere: Bool
    /// "rank R" when the message should say which rank it came from.
    public let rankLabel: String?

    public init(_ error: Error, reach: Reach, reportsHere: Bool, rankLabel: String? = nil) {
        self.error = error
        self.reach = reach
        self.reportsHere = reportsHere
        self.rankLabel = rankLabel
    }

    public var description: String { (rankLabel.map { "\($0): " } ?? "") + "\(error)" }
}

/// Which stage of the job failed on another rank (the message of the ranks that stay silent).
public struct PeerFailure: Error, CustomStringConvertible {
    public let stage: String
    public let rank: Int
    public var description: String { "\(stage) failed on rank \(rank)" }
}
