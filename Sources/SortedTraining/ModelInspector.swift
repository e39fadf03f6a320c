// ModelInspector: a readable summary of a checkpoint, an HF directory or an HDF5 model:
// run state where there is one, the model config, every tensor with shape and size.
import Foundation
import SortedFormats
import SortedIO
import SortedKit

public struct InspectedTensor: Codable, Sendable {
    public let name: String
    public let shape: [Int]
    public let bytes: Int
}

public struct Inspection: Codable, Sendable {
    public var kind: String
    public var path: String
    public var config: LlamaConfig
    public var step: Int?
    public var exits: [Int]?
    public var worldSize: Int?
    public var dataCursor: Int?
    public var tensors: [InspectedTensor]

    enum CodingKeys: String, CodingKey {
        case kind, path, config, step, exits, worldSize = "world_size", dataCursor = "data_cursor", tensors
    }
}

public enum ModelInspector {
    public static func inspect(_ path: String) throws -> Inspection {
        let kind = ModelPath.classify(path)
        if kind == .missing { throw TrainingError.notFound(path: path) }
        if kind == .hfFolder {
            let model = try ModelFiles.readHF(URL(fileURLWithPath: path))
            return Inspection(kind: "hf", path: path, config: model.config, tensors: tensors(model.layout))
        }
        if !kind.isFolder {
            let model = try ModelFiles.readHDF5(URL(fileURLWithPath: path))
            return Inspection(kind: "hdf5", path: path, config: model.config, tensors: tensors(model.layout))
        }
        let folder = try ModelExporter.resolveCheckpoint(path)
        let state = try CheckpointFiles.readState(directory: folder)
        let config = try LlamaConfig.decode(json: Data(state.modelConfig.utf8), source: folder)
        return Inspection(kind: "checkpoint", path: folder, config: config, step: state.step, exits: state.exits,
                          worldSize: state.worldSize, dataCursor: state.sampleCursor,
                          tensors: tensors(ParameterLayout(config: config)))
    }

    static func tensors(_ layout: ParameterLayout) -> [InspectedTensor] {
        layout.tensors.map { InspectedTensor(name: $0.name, shape: $0.shape, bytes: $0.count * 4) }
    }

    public static func text(_ i: Inspection) -> String {
        let c = i.config
        var lines = ["\(i.kind) \(i.path)"]
        if let step = i.step {
            lines.append("step \(step), exits \(i.exits ?? []), saved by \(i.worldSize ?? 0) rank(s), data cursor \(i.dataCursor ?? 0)")
        }
        lines.append("model: \(c.numHiddenLayers) layers, hidden \(c.hiddenSize), intermediate \(c.intermediateSize), heads \(c.numAttentionHeads)/\(c.numKeyValueHeads) kv, head_dim \(c.headDim), vocab \(c.vocabSize), rope_theta \(c.ropeTheta), tied \(c.tieWordEmbeddings)")
        let total = i.tensors.reduce(0) { $0 + $1.bytes }
        lines.append("tensors: \(i.tensors.count), \(total / 4) parameters, \(String(format: "%.1f", Double(total) / 1_048_576)) MiB (float32)")
        let width = i.tensors.map(\.name.count).max() ?? 0
        for t in i.tensors {
            lines.append("  " + t.name.padding(toLength: width, withPad: " ", startingAt: 0) + "  \(t.shape)  \(t.bytes) B")
        }
        return lines.joined(separator: "\n")
    }
}
