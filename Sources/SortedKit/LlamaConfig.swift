// LlamaConfig: the model's shape, read from Hugging Face `config.json` keys and validated.
import Foundation

/// A configuration value that is wrong, with the key that holds it.
public struct ConfigError: Error, CustomStringConvertible, Equatable {
    public let key: String
    public let message: String
    public init(key: String, _ message: String) {
        self.key = key
        self.message = message
    }
    public var description: String { "\(key): \(message)" }
}

/// LLaMA-family decoder shape. Shape letters used across SortedKit:
/// D hidden, F intermediate (SwiGLU), L layers, H heads, Hkv key/value heads,
/// Dh head dim, V vocabulary.
public struct LlamaConfig: Codable, Equatable, Sendable {
    public var hiddenSize: Int            // D
    public var intermediateSize: Int      // F
    public var numHiddenLayers: Int       // L
    public var numAttentionHeads: Int     // H
    public var numKeyValueHeads: Int      // Hkv
    public var headDim: Int               // Dh
    public var vocabSize: Int             // V
    public var rmsNormEps: Double
    public var ropeTheta: Double
    public var tieWordEmbeddings: Bool
    public var maxPositionEmbeddings: Int

    /// `rms_norm_eps` when a config leaves it out: transformers' LlamaConfig default.
    public static let defaultRMSNormEps = 1e-6

    public init(hiddenSize: Int, intermediateSize: Int, numHiddenLayers: Int,
                numAttentionHeads: Int, numKeyValueHeads: Int? = nil, headDim: Int? = nil,
                vocabSize: Int, rmsNormEps: Double = LlamaConfig.defaultRMSNormEps, ropeTheta: Double = 10000,
                tieWordEmbeddings: Bool = false, maxPositionEmbeddings: Int = 2048) {
        self.hiddenSize = hiddenSize
        self.intermediateSize = intermediateSize
        self.numHiddenLayers = numHiddenLayers
        self.numAttentionHeads = numAttentionHeads
        self.numKeyValueHeads = numKeyValueHeads ?? numAttentionHeads
        self.headDim = headDim ?? (numAttentionHeads > 0 ? hiddenSize / numAttentionHeads : 0)
        self.vocabSize = vocabSize
        self.rmsNormEps = rmsNormEps
        self.ropeTheta = ropeTheta
        self.tieWordEmbeddings = tieWordEmbeddings
        self.maxPositionEmbeddings = maxPositionEmbeddings
    }

    enum CodingKeys: String, CodingKey, CaseIterable {
        case hiddenSize = "hidden_size"
        case intermediateSize = "intermediate_size"
        case numHiddenLayers = "num_hidden_layers"
        case numAttentionHeads = "num_attention_heads"
        case numKeyValueHeads = "num_key_value_heads"
        case headDim = "head_dim"
        case vocabSize = "vocab_size"
        case rmsNormEps = "rms_norm_eps"
        case ropeTheta = "rope_theta"
        case tieWordEmbeddings = "tie_word_embeddings"
        case maxPositionEmbeddings = "max_position_embeddings"
        case ropeParameters = "rope_parameters"
        case ropeScaling = "rope_scaling"
        case architectures, modelType = "model_type", hiddenAct = "hidden_act"
        case attentionBias = "attention_bias", mlpBias = "mlp_bias"
    }

    private struct RopeParameters: Codable {
        var ropeTheta: Double?
        var ropeType: String?
        enum CodingKeys: String, CodingKey {
            case ropeTheta = "rope_theta"
            case ropeType = "rope_type"
        }
    }

    /// Reads HF keys. Missing optional keys take HF's LLaMA defaults; a key of the wrong
    /// type is reported by name. Call `validate()` for the relations between keys.
    public init(from decoder: Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        func required<T: Decodable>(_ key: CodingKeys, _ type: T.Type) throws -> T {
            do { return try c.decode(T.self, forKey: key) } catch DecodingError.keyNotFound {
                throw ConfigError(key: key.rawValue, "missing; a LLaMA config.json must set it")
            } catch {
                throw ConfigError(key: key.rawValue, "expected \(T.self == Int.self ? "an integer" : "a number")")
            }
        }
        func optional<T: Decodable>(_ key: CodingKeys, _ type: T.Type) throws -> T? {
            do { return try c.decodeIfPresent(T.self, forKey: key) } catch {
                throw ConfigError(key: key.rawValue, "has the wrong type (expected \(T.self))")
            }
        }
        // What the engine computes: a LLaMA with SiLU gates and no biases. Anything else would
        // load and run as a different model, so it is refused by key.
        if let type = try optional(.modelType, String.self), type != "llama" {
            throw ConfigError(key: "model_type", "is '\(type)'; sortedtrain computes LLaMA models only (model_type \"llama\")")
        }
        if let activation = try optional(.hiddenAct, String.self), activation != "silu" {
            throw ConfigError(key: "hidden_act", "is '\(activation)'; sortedtrain's LLaMA uses SiLU (\"silu\") only")
        }
        for key in [CodingKeys.attentionBias, .mlpBias] {
            if try optional(key, Bool.self) == true { throw ConfigError(key: key.rawValue, "is true; sortedtrain's LLaMA has no biases") }
        }
        hiddenSize = try required(.hiddenSize, Int.self)
        intermediateSize = try required(.intermediateSize, Int.self)
        numHiddenLayers = try required(.numHiddenLayers, Int.self)
        numAttentionHeads = try required(.numAttentionHeads, Int.self)
        vocabSize = try required(.vocabSize, Int.self)
        numKeyValueHeads = try optional(.numKeyValueHeads, Int.self) ?? numAttentionHeads
        if let explicit = try optional(.headDim, Int.self) {
            headDim = explicit
        } else {
            if numAttentionHeads > 0 && hiddenSize % numAttentionHeads != 0 {
                throw ConfigError(key: "hidden_size", "\(hiddenSize) is not divisible by num_attention_heads \(numAttentionHeads); fix one or set head_dim")
            }
            headDim = numAttentionHeads > 0 ? hiddenSize / numAttentionHeads : 0
        }
        rmsNormEps = try optional(.rmsNormEps, Double.self) ?? Self.defaultRMSNormEps
        tieWordEmbeddings = try optional(.tieWordEmbeddings, Bool.self) ?? false
        maxPositionEmbeddings = try optional(.maxPositionEmbeddings, Int.self) ?? 2048
        // transformers ≥ 4.56 moved rope_theta into rope_parameters; accept both.
        let nested = try optional(.ropeParameters, RopeParameters.self)
        ropeTheta = try optional(.ropeTheta, Double.self) ?? nested?.ropeTheta ?? 10000
        if let type = nested?.ropeType, type != "default" {
            throw ConfigError(key: "rope_parameters.rope_type",
                              "'\(type)' is not supported; only the default RoPE is implemented")
        }
        if c.contains(.ropeScaling), (try? c.decodeNil(forKey: .ropeScaling)) == false {
            throw ConfigError(key: "rope_scaling", "RoPE scaling is not supported; remove it or set it to null")
        }
    }

    public func encode(to encoder: Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(hiddenSize, forKey: .hiddenSize)
        try c.encode(intermediateSize, forKey: .intermediateSize)
        try c.encode(numHiddenLayers, forKey: .numHiddenLayers)
        try c.encode(numAttentionHeads, forKey: .numAttentionHeads)
        try c.encode(numKeyValueHeads, forKey: .numKeyValueHeads)
        try c.encode(headDim, forKey: .headDim)
        try c.encode(vocabSize, forKey: .vocabSize)
        try c.encode(rmsNormEps, forKey: .rmsNormEps)
        try c.encode(ropeTheta, forKey: .ropeTheta)
        try c.encode(tieWordEmbeddings, forKey: .tieWordEmbeddings)
        try c.encode(maxPositionEmbeddings, forKey: .maxPositionEmbeddings)
    }

    /// Checks every key and the relations between them; the first problem is thrown
    /// naming its key.
    public func validate() throws {
        func positive(_ value: Int, _ key: CodingKeys) throws {
            if value <= 0 { throw ConfigError(key: key.rawValue, "must be a positive integer, got \(value)") }
        }
        try positive(hiddenSize, .hiddenSize)
        try positive(intermediateSize, .intermediateSize)
        try positive(numHiddenLayers, .numHiddenLayers)
        try positive(numAttentionHeads, .numAttentionHeads)
        try positive(numKeyValueHeads, .numKeyValueHeads)
        try positive(headDim, .headDim)
        try positive(vocabSize, .vocabSize)
        try positive(maxPositionEmbeddings, .maxPositionEmbeddings)
        if numAttentionHeads % numKeyValueHeads != 0 {
            throw ConfigError(key: "num_key_value_heads",
                              "\(numKeyValueHeads) does not divide num_attention_heads \(numAttentionHeads)")
        }
        if headDim % 2 != 0 {
            throw ConfigError(key: "head_dim", "must be even for rotary embeddings, got \(headDim)")
        }
        if !(rmsNormEps > 0 && rmsNormEps.isFinite) {
            throw ConfigError(key: "rms_norm_eps", "must be a positive number, got \(rmsNormEps)")
        }
        if !(ropeTheta > 0 && ropeTheta.isFinite) {
            throw ConfigError(key: "rope_theta", "must be a positive number, got \(ropeTheta)")
        }
        if vocabSize > Int(Int32.max) {
            throw ConfigError(key: "vocab_size", "\(vocabSize) does not fit token ids of 32 bits")
        }
        if maxPositionEmbeddings > Int(Int32.max) {
            throw ConfigError(key: "max_position_embeddings", "\(maxPositionEmbeddings) is beyond 2^31 positions; the file is wrong")
        }
        // Sizes come from files: refuse before anything is allocated, with the figure.
        let sizes = "hidden_size \(hiddenSize), intermediate_size \(intermediateSize), num_hidden_layers \(numHiddenLayers), vocab_size \(vocabSize)"
        guard let count = parameterCount, count <= Int.max / 16 else {
            throw ConfigError(key: "model size", "\(sizes) give more parameters than can be addressed")
        }
        try MemoryBudget.check(bytes: 4 * count, for: "\(count) parameters (\(sizes))", key: "model size")
    }

    /// Parameters of the model (embedding, layers, final norm, untied head); nil when the
    /// count overflows Int, as absurd sizes from a corrupt file can make it.
    public var parameterCount: Int? {
        let D = hiddenSize, F = intermediateSize
        func product(_ factors: Int...) -> Int? { MemoryBudget.product(factors) }
        func sum(_ terms: Int?...) -> Int? {
            var result = 0
            for term in terms {
                guard let t = term else { return nil }
                let (s, overflow) = result.addingReportingOverflow(t)
                if overflow { return nil }
                result = s
            }
            return result
        }
        let qkv = sum(product(numAttentionHeads, headDim), product(2, numKeyValueHeads, headDim))
        let perLayer = sum(product(2, D), qkv.flatMap { product($0, D) }, product(D, numAttentionHeads, headDim), product(3, F, D))
        let embedding = product(vocabSize, D)
        return sum(embedding, perLayer.flatMap { product($0, numHiddenLayers) }, D, tieWordEmbeddings ? 0 : embedding)
    }

    /// Decodes and validates HF `config.json` bytes; errors name `source`.
    public static func decode(json data: Data, source: String = "config") throws -> LlamaConfig {
        let config: LlamaConfig
        do { config = try JSONDecoder().decode(LlamaConfig.self, from: data) } catch let error as ConfigError {
            throw ConfigError(key: "\(source): \(error.key)", error.message)
        } catch {
            throw ConfigError(key: source, "is not valid JSON: \(error.localizedDescription)")
        }
        do { try config.validate() } catch let error as ConfigError {
            throw ConfigError(key: "\(source): \(error.key)", error.message)
        }
        return config
    }

    /// Number of layers that fit a prefix of depth k: the same model with k layers.
    public func truncated(toDepth k: Int) -> LlamaConfig {
        var copy = self
        copy.numHiddenLayers = k
        return copy
    }

    public var queryWidth: Int { numAttentionHeads * headDim }            // H·Dh
    public var keyValueWidth: Int { numKeyValueHeads * headDim }          // Hkv·Dh
    public var qkvWidth: Int { queryWidth + 2 * keyValueWidth }           // row of fused q|k|v
}
