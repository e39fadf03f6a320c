// GGUFModel: a llama-architecture GGUF file (llama.cpp's format) as a LlamaModel: the config
// from `llama.*` metadata, every tensor dequantised to Float and renamed to its HF place,
// and llama.cpp's row permutation of attn_q / attn_k undone so RoPE sees HF's rotate-half layout;
// and the way back: a LlamaModel as the GGUF file llama.cpp's converter would write.
import Foundation
import SortedFormats
import SortedKit

extension ModelFiles {
    /// The model shape a llama GGUF file's metadata give (no tensor is read).
    public static func ggufConfig(_ file: GGUFFile) throws -> LlamaConfig { try GGUFLlama.config(of: file) }

    /// Reads a GGUF file of architecture "llama" (F32, F16, BF16, Q8_0, Q4_0, Q4_1 tensors)
    /// as a float32 model. Embeddings are tied when the file has no `output.weight`.
    /// Every problem — another architecture, a missing key or tensor, a wrong shape, a tensor
    /// type that cannot be dequantised — is one FormatError naming the file.
    public static func readGGUF(_ url: URL) throws -> LlamaModel {
        let file = try GGUFFile(contentsOf: url)
        let config = try GGUFLlama.config(of: file)
        let model: LlamaModel
        do { model = try LlamaModel(config: config) } catch let error as ConfigError {
            let what = error.key.map { "metadata \(GGUFLlama.metadataKey(forHF: $0)) is" } ?? "the model sizes in its metadata are"
            throw FormatError(file: file.path, "\(what) not usable: \(error.message)")
        }

        let sources = try GGUFLlama.tensors(of: file, for: model.layout)
        for (spec, info) in sources {
            let values = try file.floats(info.name)
            let destination = model.parameters.pointer + spec.offset
            let columns = spec.shape.count == 2 ? spec.shape[1] : 1
            if info.name.hasSuffix(".attn_q.weight") {
                GGUFLlama.unpermuteRows(values, heads: config.numAttentionHeads, columns: columns, into: destination)
            } else if info.name.hasSuffix(".attn_k.weight") {
                GGUFLlama.unpermuteRows(values, heads: config.numKeyValueHeads, columns: columns, into: destination)
            } else {
                model.parameters.copy(from: values, offset: spec.offset)
            }
        }
        return model
    }
}

/// The tensor precision of a GGUF export.
public enum GGUFDType: String, CaseIterable, Sendable {
    /// Every tensor float32 (llama.cpp's ALL_F32).
    case f32
    /// Matrices float16, norms float32 (MOSTLY_F16).
    case f16
    /// Matrices Q8_0 (8-bit, one f16 scale per 32 values), norms float32 (MOSTLY_Q8_0).
    case q8_0
    /// Matrices Q4_0 (4-bit, one f16 scale per 32 values), norms float32 (MOSTLY_Q4_0).
    case q4_0
    /// Matrices Q4_1 (4-bit, an f16 scale and minimum per 32 values), norms float32 (MOSTLY_Q4_1).
    case q4_1

    /// llama.cpp's `general.file_type` (enum llama_ftype).
    public var fileType: UInt32 {
        switch self {
        case .f32: return 0
        case .f16: return 1
        case .q8_0: return 7
        case .q4_0: return 2
        case .q4_1: return 3
        }
    }

    var matrixType: GGUFFile.TensorType {
        switch self {
        case .f32: return .f32
        case .f16: return .f16
        case .q8_0: return .q8_0
        case .q4_0: return .q4_0
        case .q4_1: return .q4_1
        }
    }
}

extension ModelFiles {
    /// A GGUF writer holding `model` as llama.cpp's converter writes a llama model: `llama.*`
    /// metadata, llama.cpp tensor names, attn_q / attn_k rows permuted to ggml's RoPE layout,
    /// no output.weight when embeddings are tied. Norms (1-D) stay F32 in every dtype; a matrix
    /// whose rows are not a multiple of 32 long is written F16 under q8_0 (as the converter
    /// falls back), and each such fallback is one line of `notes`.
    public static func ggufWriter(_ model: LlamaModel, name: String, dtype: GGUFDType) -> (writer: GGUFWriter, notes: [String]) {
        let c = model.config
        var w = GGUFWriter()
        w.set("general.architecture", .string("llama"))
        w.set("general.name", .string(name))
        w.set("general.file_type", .uint32(dtype.fileType))
        w.set("llama.block_count", .uint32(UInt32(c.numHiddenLayers)))
        w.set("llama.context_length", .uint32(UInt32(c.maxPositionEmbeddings)))
        w.set("llama.embedding_length", .uint32(UInt32(c.hiddenSize)))
        w.set("llama.feed_forward_length", .uint32(UInt32(c.intermediateSize)))
        w.set("llama.attention.head_count", .uint32(UInt32(c.numAttentionHeads)))
        w.set("llama.attention.head_count_kv", .uint32(UInt32(c.numKeyValueHeads)))
        w.set("llama.rope.freq_base", .float32(Float(c.ropeTheta)))
        w.set("llama.attention.layer_norm_rms_epsilon", .float32(Float(c.rmsNormEps)))
        w.set("llama.rope.dimension_count", .uint32(UInt32(c.headDim)))
        if c.headDim * c.numAttentionHeads != c.hiddenSize {
            w.set("llama.attention.key_length", .uint32(UInt32(c.headDim)))
            w.set("llama.attention.value_length", .uint32(UInt32(c.headDim)))
        }
        w.set("llama.vocab_size", .uint32(UInt32(c.vocabSize)))

        var notes: [String] = []
        for spec in model.layout.tensors {
            let ggufName = GGUFLlama.ggufName(forHF: spec.name)
            let source = UnsafeBufferPointer(start: model.parameters.pointer + spec.offset, count: spec.count)
            var type = spec.shape.count == 1 ? .f32 : dtype.matrixType
            if [.q8_0, .q4_0, .q4_1].contains(type) && spec.shape.last! % 32 != 0 {
                notes.append("\(ggufName) rows are \(spec.shape.last!) long, not a multiple of 32: written F16 instead of \(type)")
                type = .f16
            }
            let columns = spec.shape.count == 2 ? spec.shape[1] : 1
            if ggufName.hasSuffix(".attn_q.weight") || ggufName.hasSuffix(".attn_k.weight") {
                let heads = ggufName.hasSuffix(".attn_q.weight") ? c.numAttentionHeads : c.numKeyValueHeads
                let permuted = GGUFLlama.permuteRows(source, heads: heads, columns: columns)
                w.addTensor(ggufName, shape: spec.shape, values: permuted, type: type)
            } else {
                w.addTensor(ggufName, shape: spec.shape, values: source, type: type)
            }
        }
        return (w, notes)
    }
}

/// The llama-architecture conventions of GGUF: metadata keys, tensor names, q/k permutation.
enum GGUFLlama {
    /// The file's tensor for each of the layout's, checked for presence, shape and type before
    /// any is read; a tensor the layout has no place for is refused.
    static func tensors(of file: GGUFFile, for layout: ParameterLayout) throws -> [(spec: TensorSpec, info: GGUFFile.TensorInfo)] {
        var sources: [(spec: TensorSpec, info: GGUFFile.TensorInfo)] = []
        for spec in layout.tensors {
            let name = GGUFLlama.ggufName(forHF: spec.name)
            guard let info = try? file.tensor(name) else {
                throw FormatError(file: file.path, "has no tensor '\(name)' (HF \(spec.name)), which a llama model with these metadata needs")
            }
            guard info.shape == spec.shape else {
                throw FormatError(file: file.path, "tensor '\(name)' has shape \(info.shape), the metadata imply \(spec.shape)")
            }
            guard info.type.isDequantizable else {
                throw FormatError(file: file.path, "tensor '\(name)' is \(info.type); sortedtrain dequantises F32, F16, BF16, Q8_0, Q4_0 and Q4_1 (convert the model with llama.cpp's llama-quantize to one of these)")
            }
            sources.append((spec, info))
        }
        let used = Set(sources.map(\.info.name))
        if let extra = file.tensors.first(where: { !used.contains($0.name) }) {
            // Biases, RoPE frequency factors or experts would change the model's output; refusing is
            // better than importing a different model silently.
            throw FormatError(file: file.path, "has tensor \(GGUFFile.shown(extra.name)), which sortedtrain's LLaMA (no biases, default RoPE, no experts) has no place for")
        }
        return sources
    }
    /// LlamaConfig from `llama.*` metadata. Keys that llama.cpp itself defaults
    /// (head_count_kv, rope.freq_base, context_length) take its defaults; the rest are required.
    static func config(of file: GGUFFile) throws -> LlamaConfig {
        let meta = file.metadata
        guard let architecture = meta["general.architecture"]?.string else {
            throw FormatError(file: file.path, "has no general.architecture metadata; it is not a model file llama.cpp would load")
        }
        guard architecture == "llama" else {
            throw FormatError(file: file.path, "has architecture \(GGUFFile.shown(architecture)); sortedtrain imports only 'llama' GGUF files")
        }
        func integer(_ key: String) throws -> Int? {
            guard let value = meta[key] else { return nil }
            guard let v = value.int else { throw FormatError(file: file.path, "metadata \(key) is \(value), expected an integer") }
            return v
        }
        func number(_ key: String) throws -> Double? {
            guard let value = meta[key] else { return nil }
            guard let v = value.double else { throw FormatError(file: file.path, "metadata \(key) is \(value), expected a number") }
            return v
        }
        func required<T>(_ key: String, _ read: (String) throws -> T?) throws -> T {
            guard let v = try read(key) else { throw FormatError(file: file.path, "has no metadata \(key), which a llama model needs") }
            return v
        }

        let heads = try required("llama.attention.head_count", integer)
        let hidden = try required("llama.embedding_length", integer)
        let headDim: Int
        if let keyLength = try integer("llama.attention.key_length") {
            headDim = keyLength
        } else {
            guard heads > 0, hidden % heads == 0 else {
                throw FormatError(file: file.path, "llama.embedding_length \(hidden) is not divisible by llama.attention.head_count \(heads) and there is no llama.attention.key_length")
            }
            headDim = hidden / heads
        }
        if let valueLength = try integer("llama.attention.value_length"), valueLength != headDim {
            throw FormatError(file: file.path, "llama.attention.value_length \(valueLength) differs from the key length \(headDim); sortedtrain needs them equal")
        }
        if let ropeDims = try integer("llama.rope.dimension_count"), ropeDims != headDim {
            throw FormatError(file: file.path, "llama.rope.dimension_count \(ropeDims) differs from the head dimension \(headDim); partial rotary embeddings are not supported")
        }
        if let scaling = meta["llama.rope.scaling.type"]?.string, scaling != "none" {
            throw FormatError(file: file.path, "uses RoPE scaling '\(scaling)' (llama.rope.scaling.type); only the default RoPE is supported")
        }
        if let experts = try integer("llama.expert_count"), experts > 0 {
            throw FormatError(file: file.path, "is a mixture of \(experts) experts (llama.expert_count); sortedtrain supports dense LLaMA models only")
        }

        let vocab: Int
        if let tokens = meta["tokenizer.ggml.tokens"]?.array {
            vocab = tokens.count
        } else if let v = try integer("llama.vocab_size") {
            vocab = v
        } else if let embedding = file.tensors.first(where: { $0.name == "token_embd.weight" }), embedding.shape.count == 2 {
            vocab = embedding.shape[0]
        } else {
            throw FormatError(file: file.path, "has neither tokenizer.ggml.tokens, llama.vocab_size nor a token_embd.weight tensor; the vocabulary size is unknown")
        }

        return LlamaConfig(
            hiddenSize: hidden,
            intermediateSize: try required("llama.feed_forward_length", integer),
            numHiddenLayers: try required("llama.block_count", integer),
            numAttentionHeads: heads,
            numKeyValueHeads: try integer("llama.attention.head_count_kv") ?? heads,
            headDim: headDim,
            vocabSize: vocab,
            rmsNormEps: try required("llama.attention.layer_norm_rms_epsilon", number),
            ropeTheta: try number("llama.rope.freq_base") ?? 10000,
            tieWordEmbeddings: !file.tensors.contains { $0.name == "output.weight" },
            maxPositionEmbeddings: try integer("llama.context_length") ?? 2048)
    }

    /// The GGUF metadata key behind an HF config key, for messages.
    static func metadataKey(forHF key: String) -> String {
        let keys = [
            "hidden_size": "llama.embedding_length", "intermediate_size": "llama.feed_forward_length",
            "num_hidden_layers": "llama.block_count", "num_attention_heads": "llama.attention.head_count",
            "num_key_value_heads": "llama.attention.head_count_kv", "head_dim": "llama.attention.key_length",
            "vocab_size": "tokenizer.ggml.tokens (vocabulary size)",
            "rms_norm_eps": "llama.attention.layer_norm_rms_epsilon", "rope_theta": "llama.rope.freq_base",
            "max_position_embeddings": "llama.context_length",
        ]
        return keys[key] ?? key
    }

    /// GGUF tensor name of an HF LLaMA tensor name (llama.cpp's tensor map for LLM_ARCH_LLAMA).
    static func ggufName(forHF name: String) -> String {
        switch name {
        case "model.embed_tokens.weight": return "token_embd.weight"
        case "model.norm.weight": return "output_norm.weight"
        case "lm_head.weight": return "output.weight"
        default: break
        }
        let parts = name.split(separator: ".", maxSplits: 3).map(String.init)   // model, layers, N, rest
        guard parts.count == 4, parts[0] == "model", parts[1] == "layers" else { return name }
        let suffixes = [
            "input_layernorm.weight": "attn_norm.weight",
            "self_attn.q_proj.weight": "attn_q.weight",
            "self_attn.k_proj.weight": "attn_k.weight",
            "self_attn.v_proj.weight": "attn_v.weight",
            "self_attn.o_proj.weight": "attn_output.weight",
            "post_attention_layernorm.weight": "ffn_norm.weight",
            "mlp.gate_proj.weight": "ffn_gate.weight",
            "mlp.up_proj.weight": "ffn_up.weight",
            "mlp.down_proj.weight": "ffn_down.weight",
        ]
        guard let suffix = suffixes[parts[3]] else { return name }
        return "blk.\(parts[2]).\(suffix)"
    }

    /// llama.cpp's `LlamaModel.permute` of q/k rows (the inverse of `unpermuteRows`):
    /// GGUF row h·Dh + 2d + j  =  HF row h·Dh + j·Dh/2 + d.
    static func permuteRows(_ values: UnsafeBufferPointer<Float>, heads: Int, columns: Int) -> [Float] {
        let rows = values.count / columns
        precondition(heads > 0 && rows % (2 * heads) == 0 && rows * columns == values.count,
                     "permuteRows: \(rows) rows do not split into \(heads) heads of even size")
        let headDim = rows / heads, half = headDim / 2
        var out = [Float](repeating: 0, count: values.count)
        out.withUnsafeMutableBufferPointer { destination in
            for h in 0..<heads {
                for j in 0..<2 {
                    for d in 0..<half {
                        let from = h * headDim + j * half + d, to = h * headDim + 2 * d + j
                        (destination.baseAddress! + to * columns).update(from: values.baseAddress! + from * columns, count: columns)
                    }
                }
            }
        }
        return out
    }

    /// Undoes llama.cpp's `LlamaModel.permute` of q/k rows (convert_hf_to_gguf.py):
    /// `w.reshape(heads, 2, Dh/2, C).swapaxes(1, 2).reshape(w.shape)`. Within each head, HF
    /// keeps the two rotary halves as row blocks [x_0..x_{Dh/2}) [y_0..y_{Dh/2}) (rotate-half);
    /// GGUF interleaves them as pairs x_0 y_0 x_1 y_1 … (ggml's adjacent-pair RoPE). So
    /// HF row h·Dh + j·Dh/2 + d  =  GGUF row h·Dh + 2d + j   (j ∈ {0, 1}, d < Dh/2).
    /// `values` is [heads·Dh, columns] row-major; `destination` receives the same shape.
    static func unpermuteRows(_ values: [Float], heads: Int, columns: Int, into destination: UnsafeMutablePointer<Float>) {
        let rows = values.count / columns
        precondition(heads > 0 && rows % (2 * heads) == 0 && rows * columns == values.count,
                     "unpermuteRows: \(rows) rows do not split into \(heads) heads of even size")
        let headDim = rows / heads, half = headDim / 2
        values.withUnsafeBufferPointer { source in
            for h in 0..<heads {
                for j in 0..<2 {
                    for d in 0..<half {
                        let to = h * headDim + j * half + d, from = h * headDim + 2 * d + j
                        (destination + to * columns).update(from: source.baseAddress! + from * columns, count: columns)
                    }
                }
            }
        }
    }
}
