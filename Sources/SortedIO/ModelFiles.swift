// ModelFiles: standalone models on disk — an HF directory (config.json + model.safetensors,
// or sharded safetensors with model.safetensors.index.json) and a single HDF5 file with
// the checkpoint's per-layer layout and no optimizer state.
import Foundation
import SortedFormats
import SortedKit

public enum ModelFiles {
    // MARK: - Hugging Face directory

    /// Writes `model` as an HF LLaMA directory that `transformers` loads as
    /// LlamaForCausalLM: model.safetensors (tied embeddings stored once) and config.json.
    /// `extraConfig` adds keys such as bos_token_id / eos_token_id.
    public static func writeHF(_ model: LlamaModel, to directory: URL, extraConfig: [String: Any] = [:]) throws {
        try createDirectory(directory)
        let tensors = model.layout.tensors.map { tensor in
            SafetensorsWriter.Tensor(name: tensor.name, shape: tensor.shape,
                                     values: UnsafeBufferPointer(start: model.parameters.pointer + tensor.offset, count: tensor.count))
        }
        try SafetensorsWriter.write(tensors, to: directory.appendingPathComponent("model.safetensors"))
        let c = model.config
        var config: [String: Any] = [
            "architectures": ["LlamaForCausalLM"], "model_type": "llama", "torch_dtype": "float32",
            "hidden_act": "silu", "attention_bias": false, "mlp_bias": false, "use_cache": true,
            "initializer_range": 0.02, "pretraining_tp": 1,
            "hidden_size": c.hiddenSize, "intermediate_size": c.intermediateSize,
            "num_hidden_layers": c.numHiddenLayers, "num_attention_heads": c.numAttentionHeads,
            "num_key_value_heads": c.numKeyValueHeads, "head_dim": c.headDim, "vocab_size": c.vocabSize,
            "rms_norm_eps": c.rmsNormEps, "rope_theta": c.ropeTheta, "rope_scaling": NSNull(),
            "tie_word_embeddings": c.tieWordEmbeddings, "max_position_embeddings": c.maxPositionEmbeddings,
        ]
        for (key, value) in extraConfig { config[key] = value }
        let json = try JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted, .sortedKeys])
        try write(json, to: directory.appendingPathComponent("config.json"))
    }

    /// Reads and validates an HF `config.json`.
    public static func readConfig(_ url: URL) throws -> LlamaConfig {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw ConfigError(file: url.path, key: nil, .invalid("cannot be read: \(error.localizedDescription)"))
        }
        return try LlamaConfig.decode(json: data, source: url.path)
    }

    /// Reads an HF LLaMA directory: config.json and model.safetensors, or the shards named
    /// by model.safetensors.index.json. F32, F16 and BF16 tensors are converted to float32.
    public static func readHF(_ directory: URL) throws -> LlamaModel {
        let config = try readConfig(directory.appendingPathComponent("config.json"))
        let model = try LlamaModel(config: config)
        let single = directory.appendingPathComponent("model.safetensors")
        let index = directory.appendingPathComponent("model.safetensors.index.json")
        var files: [String: SafetensorsFile] = [:]
        var location: [String: String] = [:]   // tensor → file name
        if FileManager.default.fileExists(atPath: single.path) {
            let file = try SafetensorsFile(contentsOf: single)
            files["model.safetensors"] = file
            for name in file.entries.keys { location[name] = "model.safetensors" }
        } else if FileManager.default.fileExists(atPath: index.path) {
            let data: Data
            do { data = try Data(contentsOf: index) } catch {
                throw FormatError(file: index.path, "cannot be read: \(error.localizedDescription)")
            }
            guard let weights = (try? JSONParser.parse(data))?["weight_map"]?.object,
                  case let map = weights.compactMapValues(\.string), map.count == weights.count else {
                throw FormatError(file: index.path, "has no \"weight_map\" object")
            }
            location = map
            for name in Set(map.values) {
                guard !name.contains("/"), name != "..", name != "." else {
                    throw FormatError(file: index.path, "names shard '\(name)'; shards must be files in the model folder")
                }
                files[name] = try SafetensorsFile(contentsOf: directory.appendingPathComponent(name))
            }
        } else {
            throw FormatError(file: directory.path, "has neither model.safetensors nor model.safetensors.index.json")
        }
        // Every stored tensor must have a place: extra layers, biases or adapters would be
        // dropped silently and the model computed would not be the one on disk.
        let expected = Set(model.layout.tensors.map(\.name))
        let stored = Set(location.keys).union(files.values.flatMap { $0.entries.keys })
        if let extra = stored.filter({ !expected.contains($0) && !$0.hasSuffix(".rotary_emb.inv_freq") }).min() {
            throw FormatError(file: directory.path, "has tensor '\(extra)', which config.json's model (\(config.numHiddenLayers) layers, no biases\(config.tieWordEmbeddings ? ", tied embeddings" : "")) has no place for")
        }
        for tensor in model.layout.tensors {
            guard let fileName = location[tensor.name], let file = files[fileName] else {
                throw FormatError(file: directory.path, "has no tensor '\(tensor.name)' (needed by config.json's model)")
            }
            let entry = try file.entry(tensor.name)
            guard entry.shape == tensor.shape else {
                throw FormatError(file: file.path, "tensor '\(tensor.name)' has shape \(entry.shape), config.json implies \(tensor.shape)")
            }
            model.parameters.copy(from: try file.floats(tensor.name), offset: tensor.offset)
        }
        return model
    }

    // MARK: - HDF5

    /// One HDF5 file: the model's tensors under checkpoint paths and its HF config as the
    /// attribute `config`.
    public static func writeHDF5(_ model: LlamaModel, to url: URL) throws {
        try createDirectory(url.deletingLastPathComponent())
        do {
            let file = try HDF5File(creating: url.path)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            try file.setAttribute("config", string: String(decoding: try encoder.encode(model.config), as: UTF8.self))
            try file.setAttribute("format", string: "sortedtrain-model")
            for tensor in model.layout.tensors {
                try file.write(CheckpointNames.datasetPath(forTensor: tensor.name),
                               floats: model.parameters.pointer + tensor.offset, shape: tensor.shape)
            }
            try file.flush()
        }
    }

    public static func readHDF5(_ url: URL) throws -> LlamaModel {
        let file = try HDF5File(opening: url.path)
        let config = try LlamaConfig.decode(json: Data(try file.attribute("config").utf8), source: url.path)
        let model = try LlamaModel(config: config)
        for tensor in model.layout.tensors {
            let path = CheckpointNames.datasetPath(forTensor: tensor.name)
            let shape = try file.shape(of: path)
            guard shape == tensor.shape else {
                throw FormatError(file: url.path, "dataset '\(path)' has shape \(shape), the config implies \(tensor.shape)")
            }
            try file.read(path, into: model.parameters.pointer + tensor.offset, count: tensor.count)
        }
        return model
    }

    // MARK: - Helpers

    static func createDirectory(_ url: URL) throws {
        do { try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true) } catch {
            throw FormatError(file: url.path, "cannot be created: \(error.localizedDescription)")
        }
    }

    static func write(_ data: Data, to url: URL) throws {
        do { try data.write(to: url, options: .atomic) } catch {
            throw FormatError(file: url.path, "cannot be written: \(error.localizedDescription)")
        }
    }
}
