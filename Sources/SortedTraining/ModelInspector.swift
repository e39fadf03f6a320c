// ModelInspector: a readable summary of a checkpoint, an HF directory, an HDF5 model or a
// GGUF file: run state where there is one, the model config, the exits it keeps, its dtype,
// tokenizer and chat template, every tensor with shape and size.
import Foundation
import SortedData
import SortedFormats
import SortedInference
import SortedIO
import SortedKit

public struct InspectedTensor: Codable, Sendable {
    public let name: String
    public let shape: [Int]
    public let bytes: Int
    /// Stored type, where it is not float32 everywhere (GGUF).
    public var type: String?
}

public struct Inspection: Codable, Sendable {
    public var kind: String
    public var path: String
    public var config: LlamaConfig
    public var step: Int?
    public var exits: [Int]?
    public var worldSize: Int?
    public var dataCursor: Int?
    /// How the weights are stored: float32, or a GGUF's file type (F16, Q8_0, …).
    public var dtype: String?
    /// What the tokenizer is ("tokenizer.json, 49152 tokens", "gpt2 BPE in the GGUF, …"), if any.
    public var tokenizer: String?
    /// The model's own chat template, when it ships one.
    public var chatTemplate: String?
    /// The calibrated exit probes kept with the model (`sortedtrain calibrate`), without their weights.
    public var exitProbes: ExitProbes.Report?
    /// What was checked beyond the headers (a checkpoint's weights are read and checked
    /// against their digests, as export and eval read them).
    public var verified: String?
    public var tensors: [InspectedTensor]

    enum CodingKeys: String, CodingKey {
        case kind, path, config, step, exits, worldSize = "world_size", dataCursor = "data_cursor", dtype, tokenizer,
             chatTemplate = "chat_template", exitProbes = "exit_probes", verified, tensors
    }
}

public enum ModelInspector {
    public static func inspect(_ path: String) throws -> Inspection {
        var inspection = try inspectModel(path)
        // A calibrated model's probes: beside the model, else (GGUF) in its metadata.
        let url = URL(fileURLWithPath: inspection.path)
        let isFolder = inspection.kind == "checkpoint" || inspection.kind == "hf"
        var probes = try ExitProbes.load(ExitProbes.location(forModel: url, isFolder: isFolder), for: inspection.config)
        if probes == nil, inspection.kind == "gguf", let text = try GGUFFile(contentsOf: url).metadata[ExitProbes.ggufKey]?.string {
            probes = try ExitProbes.decode(text, source: "\(path): \(ExitProbes.ggufKey)", for: inspection.config)
        }
        inspection.exitProbes = probes?.report
        return inspection
    }

    static func inspectModel(_ path: String) throws -> Inspection {
        let kind = ModelPath.classify(path)
        if kind == .missing { throw ModelLookupError.notFound(path: path) }
        if kind == .hfFolder { return try inspectHF(URL(fileURLWithPath: path)) }
        if kind == .gguf { return try inspectGGUF(URL(fileURLWithPath: path)) }
        if !kind.isFolder {
            let model = try ModelFiles.readHDF5(URL(fileURLWithPath: path))
            return Inspection(kind: "hdf5", path: path, config: model.config, tensors: tensors(model.layout))
        }
        let folder = try CheckpointDirectory.checkpointFolder(for: path)
        // Every dataset is read as a resume reads it: a swapped shard or a flipped byte is
        // refused here too, not reported as fine.
        let (model, state) = try CheckpointFiles.verifiedModel(directory: folder)
        var inspection = Inspection(kind: "checkpoint", path: folder, config: model.config, step: state.step, exits: state.exits,
                                    worldSize: state.worldSize, dataCursor: state.sampleCursor, tensors: tensors(model.layout))
        inspection.verified = "run state, shards, weights and optimizer moments read and checked against their digests"
        return inspection
    }

    /// An HF export: its exits (config.json's "sortedtrain" key), dtype, tokenizer files and template.
    static func inspectHF(_ folder: URL) throws -> Inspection {
        let model = try ModelFiles.readHF(folder)
        let config = (try? Data(contentsOf: folder.appendingPathComponent("config.json"))).flatMap { try? JSONParser.parse($0) }
        var inspection = Inspection(kind: "hf", path: folder.path, config: model.config, tensors: tensors(model.layout))
        inspection.exits = config?["sortedtrain"]?["exits"]?.array?.compactMap(\.int)
        inspection.dtype = config?["torch_dtype"]?.string
        let tokenizerFile = folder.appendingPathComponent("tokenizer.json")
        if let tokenizer = try? TokenizerLoader.load(tokenizerFile.path) {
            inspection.tokenizer = "tokenizer.json, \(tokenizer.vocabularySize) tokens"
        }
        inspection.chatTemplate = ChatTemplateFile.text(inFolder: folder).map(describeTemplate)
        return inspection
    }

    /// A GGUF file: its depth and shape from the llama metadata, tensor types, tokenizer, template.
    static func inspectGGUF(_ url: URL) throws -> Inspection {
        let file = try GGUFFile(contentsOf: url)
        var inspection = Inspection(kind: "gguf", path: url.path, config: try ModelFiles.ggufConfig(file),
                                    tensors: file.tensors.map { InspectedTensor(name: $0.name, shape: $0.shape, bytes: $0.byteCount, type: "\($0.type)") })
        inspection.exits = file.metadata["sortedtrain.exits"]?.ints
        let types = Set(file.tensors.map { "\($0.type)" }).sorted()
        inspection.dtype = types.joined(separator: ", ")
        if let model = file.metadata["tokenizer.ggml.model"]?.string, let count = file.metadata["tokenizer.ggml.tokens"]?.array?.count {
            inspection.tokenizer = "\(model) tokenizer in the file, \(count) tokens"
        }
        inspection.chatTemplate = file.metadata["tokenizer.chat_template"]?.string.map(describeTemplate)
        return inspection
    }

    /// "412 characters" for a Jinja chat template sortedtrain renders (template "model"), and why not otherwise.
    static func describeTemplate(_ text: String) -> String {
        do {
            _ = try ChatTemplate(text)
            return "\(text.count) characters"
        } catch {
            return "\(text.count) characters, not renderable by sortedtrain (\(error))"
        }
    }

    static func tensors(_ layout: ParameterLayout) -> [InspectedTensor] {
        layout.tensors.map { InspectedTensor(name: $0.name, shape: $0.shape, bytes: $0.count * 4) }
    }

    public static func text(_ i: Inspection) -> String {
        let c = i.config
        var lines = ["\(i.kind) \(i.path)"]
        if let step = i.step {
            lines.append("step \(step), exits \(i.exits ?? []), saved by \(i.worldSize ?? 0) rank(s), data cursor \(i.dataCursor ?? 0)")
        } else if let exits = i.exits {
            lines.append("depth \(i.config.numHiddenLayers), exits \(exits)")
        }
        if let dtype = i.dtype { lines.append("dtype: \(dtype)") }
        if let verified = i.verified { lines.append("verified: \(verified)") }
        lines.append("tokenizer: \(i.tokenizer ?? "none in the model")")
        if let template = i.chatTemplate { lines.append("chat template: \(template)") }
        if let p = i.exitProbes {
            let levels = p.levels.map { String(format: "%.3f at %.1f layers", $0.agreement, $0.layersPerToken) }.joined(separator: ", ")
            lines.append("exit probes: exits \(p.exits), fitted on \(p.calibration.fitTokens) tokens of \(p.calibration.data); agreement levels \(levels)")
        }
        lines.append("model: \(c.numHiddenLayers) layers, hidden \(c.hiddenSize), intermediate \(c.intermediateSize), heads \(c.numAttentionHeads)/\(c.numKeyValueHeads) kv, head_dim \(c.headDim), vocab \(c.vocabSize), rope_theta \(c.ropeTheta), tied \(c.tieWordEmbeddings)")
        let total = i.tensors.reduce(0) { $0 + $1.bytes }
        let parameters = ParameterLayout(config: c).count
        lines.append("tensors: \(i.tensors.count), \(parameters) parameters, \(String(format: "%.1f", Double(total) / 1_048_576)) MiB\(i.kind == "gguf" ? "" : " (float32)")")
        let width = i.tensors.map(\.name.count).max() ?? 0
        for t in i.tensors {
            lines.append("  " + t.name.padding(toLength: width, withPad: " ", startingAt: 0) + "  \(t.shape)  \(t.bytes) B" + (t.type.map { "  \($0)" } ?? ""))
        }
        return lines.joined(separator: "\n")
    }
}
