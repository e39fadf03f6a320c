// Checkpoint files: one HDF5 shard per rank holding the layer groups it owns (weights and
// AdamW moments), and an index `checkpoint.h5` with the run state and external links to
// every shard dataset, so h5ls/h5dump/h5py see one tree. Tensor paths follow HF names:
// model/layers/7/self_attn.q_proj.weight, model/embed_tokens.weight, model/norm.weight,
// lm_head.weight; moments mirror them under optimizer/exp_avg and optimizer/exp_avg_sq.
import Foundation
import SortedKit

public enum CheckpointNames {
    public static let index = "checkpoint.h5"
    public static let formatVersion = 2

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

    public init(step: Int, optimizerSteps: Int, sampleCursor: Int, worldSize: Int, exits: [Int], config: String,
                modelConfig: String, trainSeed: UInt64, sortedSeed: UInt64, shards: [String], tensors: [String]) {
        formatVersion = CheckpointNames.formatVersion
        self.step = step
        self.optimizerSteps = optimizerSteps
        self.sampleCursor = sampleCursor
        self.worldSize = worldSize
        self.exits = exits
        self.config = config
        self.modelConfig = modelConfig
        self.trainSeed = trainSeed
        self.sortedSeed = sortedSeed
        self.shards = shards
        self.tensors = tensors
    }
}

/// The float buffers a checkpoint holds, in the model's layout.
public struct CheckpointBuffers {
    public let parameters: FloatBuffer
    public let firstMoment: FloatBuffer
    public let secondMoment: FloatBuffer
    public init(parameters: FloatBuffer, firstMoment: FloatBuffer, secondMoment: FloatBuffer) {
        self.parameters = parameters
        self.firstMoment = firstMoment
        self.secondMoment = secondMoment
    }
}

public enum CheckpointFiles {
    /// Writes one rank's shard: its tensors and their two moments. Flushed and fsync'd.
    public static func writeShard(at path: String, tensors: [TensorSpec], buffers: CheckpointBuffers) throws {
        do {
            let file = try HDF5File(creating: path)
            for tensor in tensors {
                try file.write(CheckpointNames.datasetPath(forTensor: tensor.name),
                               floats: buffers.parameters.pointer + tensor.offset, shape: tensor.shape)
                try file.write(CheckpointNames.momentPath(.expAvg, forTensor: tensor.name),
                               floats: buffers.firstMoment.pointer + tensor.offset, shape: tensor.shape)
                try file.write(CheckpointNames.momentPath(.expAvgSq, forTensor: tensor.name),
                               floats: buffers.secondMoment.pointer + tensor.offset, shape: tensor.shape)
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
            try file.setAttribute("state", string: String(decoding: try encoder.encode(state), as: UTF8.self))
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

    /// Reads and checks the state of the checkpoint in `directory`: the index opens, its
    /// format is known and every shard file is there.
    public static func readState(directory: String) throws -> CheckpointState {
        let indexPath = (directory as NSString).appendingPathComponent(CheckpointNames.index)
        let file = try HDF5File(opening: indexPath)
        let state: CheckpointState
        do {
            state = try JSONDecoder().decode(CheckpointState.self, from: Data(try file.attribute("state").utf8))
        } catch let error as FormatError { throw error } catch {
            throw FormatError(file: indexPath, "has an unreadable run state (\(error)); the checkpoint is corrupt")
        }
        guard state.formatVersion == CheckpointNames.formatVersion else {
            throw FormatError(file: indexPath, "has checkpoint format \(state.formatVersion); this sortedtrain reads format \(CheckpointNames.formatVersion)")
        }
        for shard in state.shards {
            let shardPath = (directory as NSString).appendingPathComponent(shard)
            guard FileManager.default.fileExists(atPath: shardPath) else {
                throw FormatError(file: shardPath, "is missing: the checkpoint is incomplete; resume from another checkpoint")
            }
        }
        return state
    }

    /// Reads every tensor's weights into `parameters` and, when given, its AdamW moments,
    /// through the index's links; every dataset's XXH64 digest is checked.
    public static func readTensors(directory: String, layout: ParameterLayout, parameters: FloatBuffer,
                                   moments: (first: FloatBuffer, second: FloatBuffer)?) throws {
        let indexPath = (directory as NSString).appendingPathComponent(CheckpointNames.index)
        let file = try HDF5File(opening: indexPath)
        for tensor in layout.tensors {
            let path = CheckpointNames.datasetPath(forTensor: tensor.name)
            try checkShape(file, path, tensor)
            try file.read(path, into: parameters.pointer + tensor.offset, count: tensor.count)
            guard let moments else { continue }
            for (moment, buffer) in [(CheckpointNames.Moment.expAvg, moments.first), (.expAvgSq, moments.second)] {
                let momentPath = CheckpointNames.momentPath(moment, forTensor: tensor.name)
                try checkShape(file, momentPath, tensor)
                try file.read(momentPath, into: buffer.pointer + tensor.offset, count: tensor.count)
            }
        }
    }

    /// The model a checkpoint holds (weights only).
    public static func readModel(directory: String) throws -> (LlamaModel, CheckpointState) {
        let state = try readState(directory: directory)
        let config = try LlamaConfig.decode(json: Data(state.modelConfig.utf8), source: directory)
        let model = try LlamaModel(config: config)
        try readTensors(directory: directory, layout: model.layout, parameters: model.parameters, moments: nil)
        return (model, state)
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
