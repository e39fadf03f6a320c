// Checkpoint files: one HDF5 shard per rank holding the layer groups it owns (weights and
// AdamW moments; under ZeRO-1 the tensors whose moments it holds), and an index `checkpoint.h5` with the run state and external links to
// every shard dataset, so h5ls/h5dump/h5py see one tree. Tensor paths follow HF names:
// model/layers/7/self_attn.q_proj.weight, model/embed_tokens.weight, model/norm.weight,
// lm_head.weight; moments mirror them under optimizer/exp_avg and optimizer/exp_avg_sq.
import Foundation
import SortedFormats
import SortedKit

public enum CheckpointNames {
    public static let index = ModelPath.checkpointIndexName
    /// 3: every shard carries the run id and step, the run state holds every dataset's
    /// digest and is digested itself, so shards and index prove they belong together.
    public static let formatVersion = 3

    public static func shard(rank: Int, of world: Int) -> String {
        String(format: "shard-%05d-of-%05d.h5", rank, world)
    }

    /// "model.layers.7.self_attn.q_proj.weight" → "model/layers/7/self_attn.q_proj.weight".
    public static func datasetPath(forTensor name: String) -> String {
        let parts = name.split(separator: ".", omittingEmptySubsequences: false).map(String.init)
        if parts.count > 3, parts[0] == "model", parts[1] == "layers", Int(parts[2]) != nil {
            return "model/layers/\(parts[2])/" + parts[3...].joined(separator: ".")
        }
        if parts.count > 1, parts[0] == "model" { return "model/" + parts[1...].joined(separator: ".") }
        return name
    }

    public static func momentPath(_ moment: Moment, forTensor name: String) -> String {
        "optimizer/\(moment.rawValue)/" + datasetPath(forTensor: name)
    }

    public enum Moment: String, CaseIterable { case expAvg = "exp_avg", expAvgSq = "exp_avg_sq" }
}

/// Which rank writes which tensors: the units [embedding, layer 0, …, layer L−1, final norm
/// + head] in order, cut into `world` contiguous runs of about equal bytes.
public struct ShardPlan: Sendable {
    public let owners: [String: Int]   // tensor name → rank
    public let world: Int

    /// Under ZeRO-1: each rank writes the tensors whose moments it holds.
    public init(layout: ParameterLayout, partition: ParameterPartition) {
        var owners: [String: Int] = [:]
        for tensor in layout.tensors { owners[tensor.name] = partition.owner(of: tensor) }
        self.owners = owners
        world = partition.ranks
    }

    public init(layout: ParameterLayout, world: Int) {
        var units: [[TensorSpec]] = [layout.tensors.filter { $0.role == .embedding }]
        for l in 0..<layout.layers.count { units.append(layout.tensors.filter { $0.layer == l }) }
        units.append(layout.tensors.filter { $0.layer == nil && $0.role != .embedding })
        let total = Double(layout.count)
        var owners: [String: Int] = [:]
        var cumulative = 0.0
        for unit in units {
            let size = Double(unit.reduce(0) { $0 + $1.count })
            // The unit goes to the rank whose share its midpoint falls in.
            let rank = min(world - 1, Int((cumulative + size / 2) / total * Double(world)))
            for tensor in unit { owners[tensor.name] = rank }
            cumulative += size
        }
        self.owners = owners
        self.world = world
    }

    public func tensors(of rank: Int, in layout: ParameterLayout) -> [TensorSpec] {
        layout.tensors.filter { owners[$0.name] == rank }
    }
}

/// The run state kept in checkpoint.h5 (also as separate attributes for h5dump readers).
public struct CheckpointState: Codable, Equatable, Sendable {
    public var formatVersion: Int
    public var step: Int
    public var optimizerSteps: Int
    public var sampleCursor: Int
    public var worldSize: Int
    public var exits: [Int]
    /// The full run config as JSON, and the model's HF config as JSON.
    public var config: String
    public var modelConfig: String
    public var trainSeed: UInt64
    public var sortedSeed: UInt64
    public var shards: [String]
    public var tensors: [String]
    /// Random at a fresh start, kept over resumes: a shard of another run is refused.
    public var runID: String
    /// Dataset path → XXH64 of its bytes (hex), for every weight and moment dataset.
    public var digests: [String: String]
    /// The weights the run started from (an HF folder or a GGUF file), when it did not start
    /// from random ones: an export's model card names its base model and license from there.
    public var initialWeights: String?

    enum CodingKeys: String, CodingKey {
        case formatVersion, step, optimizerSteps, sampleCursor, worldSize, exits, config, modelConfig, trainSeed,
             sortedSeed, shards, tensors, runID, digests, initialWeights
    }

    /// The run's position at the save (its three counters are stored flat, as before).
    public var training: TrainingState {
        TrainingState(step: step, sampleCursor: sampleCursor, optimizerSteps: optimizerSteps)
    }

    /// Format 2 (before shards were tied to their save) has no run id and no digests.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        formatVersion = try c.decode(Int.self, forKey: .formatVersion)
        step = try c.decode(Int.self, forKey: .step)
        optimizerSteps = try c.decode(Int.self, forKey: .optimizerSteps)
        sampleCursor = try c.decode(Int.self, forKey: .sampleCursor)
        worldSize = try c.decode(Int.self, forKey: .worldSize)
        exits = try c.decode([Int].self, forKey: .exits)
        config = try c.decode(String.self, forKey: .config)
        modelConfig = try c.decode(String.self, forKey: .modelConfig)
        trainSeed = try c.decode(UInt64.self, forKey: .trainSeed)
        sortedSeed = try c.decode(UInt64.self, forKey: .sortedSeed)
        shards = try c.decode([String].self, forKey: .shards)
        tensors = try c.decode([String].self, forKey: .tensors)
        runID = try c.decodeIfPresent(String.self, forKey: .runID) ?? ""
        digests = try c.decodeIfPresent([String: String].self, forKey: .digests) ?? [:]
        initialWeights = try c.decodeIfPresent(String.self, forKey: .initialWeights)
    }

    public init(training: TrainingState, worldSize: Int, exits: [Int], config: String,
                modelConfig: String, trainSeed: UInt64, sortedSeed: UInt64, shards: [String], tensors: [String],
                runID: String, digests: [String: String], initialWeights: String? = nil) {
        formatVersion = CheckpointNames.formatVersion
        step = training.step
        optimizerSteps = training.optimizerSteps
        sampleCursor = training.sampleCursor
        self.worldSize = worldSize
        self.exits = exits
        self.config = config
        self.modelConfig = modelConfig
        self.trainSeed = trainSeed
        self.sortedSeed = sortedSeed
        self.shards = shards
        self.tensors = tensors
        self.runID = runID
        self.digests = digests
        self.initialWeights = initialWeights
    }
}

/// The float buffers a checkpoint holds: the parameters in the model's layout, and the
/// moments of `momentRange` of them (all unless ZeRO-1 sharded them; element i is parameter
/// momentRange.lowerBound + i).
public struct CheckpointBuffers {
    public let parameters: FloatBuffer
    public let firstMoment: FloatBuffer
    public let secondMoment: FloatBuffer
    public let momentRange: Range<Int>
    public init(parameters: FloatBuffer, firstMoment: FloatBuffer, secondMoment: FloatBuffer, momentRange: Range<Int>? = nil) {
        self.parameters = parameters
        self.firstMoment = firstMoment
        self.secondMoment = secondMoment
        self.momentRange = momentRange ?? 0..<parameters.count
        precondition(firstMoment.count == self.momentRange.count && secondMoment.count == self.momentRange.count,
                     "the moment buffers hold their range")
    }

    /// Whether the moments of `tensor` are here.
    public func holdsMoments(of tensor: TensorSpec) -> Bool {
        momentRange.lowerBound <= tensor.offset && tensor.range.upperBound <= momentRange.upperBound
    }

    /// Where `tensor`'s entries of `moment` start.
    public func moment(_ moment: CheckpointNames.Moment, of tensor: TensorSpec) -> UnsafeMutablePointer<Float> {
        precondition(holdsMoments(of: tensor), "the moments of \(tensor.name) are held here")
        return (moment == .expAvg ? firstMoment : secondMoment).pointer + (tensor.offset - momentRange.lowerBound)
    }
}

/// What ties a shard to its save: written as root attributes of every shard.
public struct ShardIdentity: Equatable, Sendable {
    public var runID: String
    public var step: Int
    public init(runID: String, step: Int) {
        self.runID = runID
        self.step = step
    }
}

public enum CheckpointFiles {
    /// The hex digests of every dataset a checkpoint of `layout` holds (weights and both
    /// moments), computed from the buffers: what the index records and loading checks.
    /// Under ZeRO-1 the buffers lack other ranks' moments: `momentDigests` brings those.
    public static func digests(layout: ParameterLayout, buffers: CheckpointBuffers) -> [String: String] {
        var out: [String: String] = [:]
        for tensor in layout.tensors {
            out[CheckpointNames.datasetPath(forTensor: tensor.name)] =
                hex(XXH64.digest(UnsafeRawPointer(buffers.parameters.pointer + tensor.offset), count: tensor.count * 4))
            guard buffers.holdsMoments(of: tensor) else { continue }
            for (moment, digest) in momentDigests(of: tensor, in: buffers) {
                out[CheckpointNames.momentPath(moment, forTensor: tensor.name)] = hex(digest)
            }
        }
        return out
    }

    /// XXH64 of the two moments of a tensor the buffers hold, in `Moment.allCases` order.
    public static func momentDigests(of tensor: TensorSpec, in buffers: CheckpointBuffers) -> [(CheckpointNames.Moment, UInt64)] {
        CheckpointNames.Moment.allCases.map { moment in
            (moment, XXH64.digest(UnsafeRawPointer(buffers.moment(moment, of: tensor)), count: tensor.count * 4))
        }
    }

    public static func hex(_ value: UInt64) -> String {
        let digits = String(value, radix: 16)
        return String(repeating: "0", count: 16 - digits.count) + digits
    }

    /// Writes one rank's shard: its tensors and their two moments, and its identity.
    /// Flushed and fsync'd.
    public static func writeShard(at path: String, identity: ShardIdentity, tensors: [TensorSpec], buffers: CheckpointBuffers) throws {
        do {
            let file = try HDF5File(creating: path)
            try file.setAttribute("run_id", string: identity.runID)
            try file.setAttribute("step", string: String(identity.step))
            for tensor in tensors {
                try file.write(CheckpointNames.datasetPath(forTensor: tensor.name),
                               floats: buffers.parameters.pointer + tensor.offset, shape: tensor.shape)
                for moment in CheckpointNames.Moment.allCases {
                    try file.write(CheckpointNames.momentPath(moment, forTensor: tensor.name),
                                   floats: buffers.moment(moment, of: tensor), shape: tensor.shape)
                }
            }
            try file.flush()
        }
        try syncToDisk(path)
    }

    /// Writes checkpoint.h5: the state and external links to every dataset of every shard.
    public static func writeIndex(at path: String, state: CheckpointState, plan: ShardPlan, layout: ParameterLayout) throws {
        do {
            let file = try HDF5File(creating: path)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            let stateJSON = try encoder.encode(state)
            try file.setAttribute("state", string: String(decoding: stateJSON, as: UTF8.self))
            try file.setAttribute("state_xxh64", string: stateJSON.withUnsafeBytes { hex(XXH64.digest($0.baseAddress!, count: $0.count)) })
            try file.setAttribute("format_version", string: String(state.formatVersion))
            try file.setAttribute("step", string: String(state.step))
            try file.setAttribute("world_size", string: String(state.worldSize))
            try file.setAttribute("exits", string: "\(state.exits)")
            try file.setAttribute("data_cursor", string: String(state.sampleCursor))
            try file.setAttribute("config", string: state.config)
            for tensor in layout.tensors {
                let shard = CheckpointNames.shard(rank: plan.owners[tensor.name]!, of: plan.world)
                for path in [CheckpointNames.datasetPath(forTensor: tensor.name)]
                    + CheckpointNames.Moment.allCases.map({ CheckpointNames.momentPath($0, forTensor: tensor.name) }) {
                    try file.linkExternal(path, file: shard, object: path)
                }
            }
            try file.flush()
        }
        try syncToDisk(path)
    }

    /// Reads and checks the state of the checkpoint in `directory`: the index opens, the run
    /// state matches its digest, its format is known, and every shard is there and belongs
    /// to this save (same run id and step). The datasets are checked as they are read.
    public static func readState(directory: String) throws -> CheckpointState {
        let indexPath = (directory as NSString).appendingPathComponent(CheckpointNames.index)
        let file = try HDF5File(opening: indexPath)
        let json = Data(try file.attribute("state").utf8)
        let stored = try? file.attribute("state_xxh64")
        if let stored, json.withUnsafeBytes({ hex(XXH64.digest($0.baseAddress!, count: $0.count)) }) != stored {
            throw FormatError(file: indexPath, "has a damaged run state (its digest does not match); resume from another checkpoint")
        }
        let state: CheckpointState
        do { state = try JSONValueDecoder.decode(CheckpointState.self, from: json) } catch {
            throw FormatError(file: indexPath, "has an unreadable run state; the checkpoint is corrupt: resume from another checkpoint")
        }
        // Format 2 is still read, with what it has: each dataset's own digest.
        guard state.formatVersion == CheckpointNames.formatVersion || state.formatVersion == 2 else {
            throw FormatError(file: indexPath, "has checkpoint format \(state.formatVersion); this sortedtrain reads formats 2 and \(CheckpointNames.formatVersion)")
        }
        let tied = state.formatVersion >= 3
        if tied && stored == nil {
            throw FormatError(file: indexPath, "has no run-state digest; the checkpoint is damaged: resume from another checkpoint")
        }
        for shard in state.shards {
            let shardPath = (directory as NSString).appendingPathComponent(shard)
            guard FileManager.default.fileExists(atPath: shardPath) else {
                throw FormatError(file: shardPath, "is missing: the checkpoint is incomplete; resume from another checkpoint")
            }
            guard tied else { continue }
            let shardFile = try HDF5File(opening: shardPath)
            let identity = ShardIdentity(runID: (try? shardFile.attribute("run_id")) ?? "none",
                                         step: Int((try? shardFile.attribute("step")) ?? "") ?? -1)
            guard identity == ShardIdentity(runID: state.runID, step: state.step) else {
                throw FormatError(file: shardPath, "belongs to another save (run \(identity.runID), step \(identity.step)) than its index (run \(state.runID), step \(state.step)); the checkpoint mixes two saves: resume from another checkpoint")
            }
        }
        return state
    }

    /// Reads every tensor's weights into `parameters` and, when given, the AdamW moments of
    /// the tensors in `momentRange` (nil: all; under ZeRO-1 the owned ones, element i being
    /// parameter momentRange.lowerBound + i), through the index's links; every dataset must
    /// match both its own XXH64 digest and the one the run state recorded for it.
    public static func readTensors(directory: String, state: CheckpointState, layout: ParameterLayout, parameters: FloatBuffer,
                                   moments: (first: FloatBuffer, second: FloatBuffer)?, momentRange: Range<Int>? = nil) throws {
        let indexPath = (directory as NSString).appendingPathComponent(CheckpointNames.index)
        let file = try HDF5File(opening: indexPath)
        func read(_ path: String, _ tensor: TensorSpec, into start: UnsafeMutablePointer<Float>) throws {
            try readDataset(path, of: tensor, from: file, state: state, into: start)
        }
        let held = moments.map { CheckpointBuffers(parameters: parameters, firstMoment: $0.first, secondMoment: $0.second,
                                                   momentRange: momentRange) }
        for tensor in layout.tensors {
            try read(CheckpointNames.datasetPath(forTensor: tensor.name), tensor, into: parameters.pointer + tensor.offset)
            guard let held, held.holdsMoments(of: tensor) else { continue }
            for moment in CheckpointNames.Moment.allCases {
                try read(CheckpointNames.momentPath(moment, forTensor: tensor.name), tensor, into: held.moment(moment, of: tensor))
            }
        }
    }

    /// The model a checkpoint holds (weights only).
    public static func readModel(directory: String) throws -> (LlamaModel, CheckpointState) {
        let state = try readState(directory: directory)
        let config = try LlamaConfig.decode(json: Data(state.modelConfig.utf8), source: directory)
        let model = try LlamaModel(config: config)
        try readTensors(directory: directory, state: state, layout: model.layout, parameters: model.parameters, moments: nil)
        return (model, state)
    }

    /// The model a checkpoint holds, with every dataset it recorded checked as a resume checks
    /// them: the weights and also the AdamW moments (read into scratch and dropped), each
    /// against its digest. What `inspect` reports as intact, train resumes from.
    public static func verifiedModel(directory: String) throws -> (LlamaModel, CheckpointState) {
        let (model, state) = try readModel(directory: directory)
        let file = try HDF5File(opening: (directory as NSString).appendingPathComponent(CheckpointNames.index))
        let scratch = FloatBuffer(count: model.layout.tensors.map(\.count).max() ?? 1, zeroed: false)
        for tensor in model.layout.tensors {
            for moment in CheckpointNames.Moment.allCases {
                let path = CheckpointNames.momentPath(moment, forTensor: tensor.name)
                if state.digests[path] != nil { try readDataset(path, of: tensor, from: file, state: state, into: scratch.pointer) }
            }
        }
        return (model, state)
    }

    /// Reads one dataset of `tensor` through the index; it must match both its own XXH64
    /// digest and the one the run state recorded for it.
    private static func readDataset(_ path: String, of tensor: TensorSpec, from file: HDF5File, state: CheckpointState,
                                    into start: UnsafeMutablePointer<Float>) throws {
        let expected = state.digests[path].flatMap { UInt64($0, radix: 16) }
        if state.formatVersion >= 3 && expected == nil {
            throw FormatError(file: file.path, "its run state records no digest for dataset '\(path)'; the checkpoint is corrupt: resume from another checkpoint")
        }
        do {
            try checkShape(file, path, tensor)
            let digest = try file.read(path, into: start, count: tensor.count)
            guard expected == nil || digest == expected else {
                throw FormatError(file: file.path, "dataset '\(path)' is not the one this save recorded (a shard from another save?)")
            }
        } catch let error as FormatError {
            throw FormatError(file: error.file, error.message + "; resume from another checkpoint")
        }
    }

    private static func checkShape(_ file: HDF5File, _ path: String, _ tensor: TensorSpec) throws {
        let shape = try file.shape(of: path)
        guard shape == tensor.shape else {
            throw FormatError(file: file.path, "dataset '\(path)' has shape \(shape), the model expects \(tensor.shape)")
        }
    }

    /// fsync, so a rename that follows publishes complete bytes.
    public static func syncToDisk(_ path: String) throws {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw FormatError(file: path, "cannot be opened to sync") }
        defer { close(fd) }
        if fsync(fd) != 0 { throw FormatError(file: path, "fsync failed") }
    }
}
