// LlamaConfig: the model's shape, read from Hugging Face `config.json` keys and validated.
import Foundation

/// A configuration value that is wrong: the file and, when known, the line and column where
/// the value starts, the key that holds it, and what is wrong with it.
public struct ConfigError: Error, CustomStringConvertible, Equatable {
    public enum Problem: Equatable, Sendable {
        /// A key its section does not have.
        case unknownKey(section: String, known: [String])
        case unknownSection(known: [String])
        /// A required key is absent; `hint` says what it should hold.
        case missing(hint: String?)
        /// A value of the wrong JSON type: `expected` says which ("an integer"), `found` is
        /// the value as written.
        case wrongType(expected: String, found: String)
        case notOneOf(value: String, choices: [String])
        case belowMinimum(minimum: Int, found: Int)
        /// An empty string where a path or a name belongs.
        case empty
        /// An override ("section.key=value") that is not one; `expected` says what it must be.
        case malformedOverride(String, expected: String)
        /// Any other wrong value, or a wrong relation between values, said in words.
        case invalid(String)

        /// A value as an error line quotes it: whole when short, else its start and its size
        /// (a 10 MB bad value must not become a 10 MB error line).
        static func quoted(_ value: String) -> String {
            value.count <= 80 ? value : "\(value.prefix(60))… (\(value.utf8.count) bytes)"
        }

        public var text: String {
            switch self {
            case .unknownKey(let section, let known):
                return "unknown key; known keys of '\(section)': \(known.joined(separator: ", "))"
            case .unknownSection(let known): return "unknown section; known sections: \(known.joined(separator: ", "))"
            case .missing(let hint): return hint.map { "is required: \($0)" } ?? "is required"
            case .wrongType(let expected, let found): return "expected \(expected), got \(Self.quoted(found))"
            case .notOneOf(let value, let choices): return "'\(Self.quoted(value))' is not one of: \(choices.joined(separator: ", "))"
            case .belowMinimum(let minimum, let found): return "must be at least \(minimum), got \(found)"
            case .empty: return "is empty; give a value or leave the key out"
            case .malformedOverride(_, let expected): return expected
            case .invalid(let text): return text
            }
        }
    }

    /// The file the value came from (nil: not known here; a caller adds it).
    public var file: String?
    /// Where the value starts in `file`, when it was read from there (not from --set).
    public var line: Int?
    public var column: Int?
    /// "section.key" (nil: the file as a whole is wrong).
    public var key: String?
    public var problem: Problem

    public init(file: String? = nil, line: Int? = nil, column: Int? = nil, key: String?, _ problem: Problem) {
        self.file = file
        self.line = line
        self.column = column
        self.key = key
        self.problem = problem
    }

    /// A wrong value of `key` described in words.
    public init(key: String, _ message: String) {
        self.init(key: key, .invalid(message))
    }

    public var message: String { problem.text }

    /// The same error one level up: `prefix` is the key of the section that held it.
    public func within(_ prefix: String) -> ConfigError {
        var copy = self
        copy.key = key.map { "\(prefix).\($0)" } ?? prefix
        return copy
    }

    /// "file:line:column: key: what is wrong", leaving out what is not known.
    public var description: String {
        if case .malformedOverride(let override, _) = problem { return "override '\(override)': \(message)" }
        var location = file ?? ""
        if file != nil, let line, let column { location += ":\(line):\(column)" }
        return [location.isEmpty ? nil : location, key, message].compactMap { $0 }.joined(separator: ": ")
    }
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
            throw ConfigError(key: nil, .invalid("\(sizes) give more parameters than can be addressed"))
        }
        try MemoryBudget.check(bytes: 4 * count, for: "\(count) parameters (\(sizes))", key: nil)
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

extension LlamaConfig {
    /// The HF keys whose values differ from `other`'s, in declaration order, with both
    /// values as messages print them (derived from the stored properties and their coding keys).
    public func differences(from other: LlamaConfig) -> [(key: String, this: String, other: String)] {
        zip(Mirror(reflecting: self).children, Mirror(reflecting: other).children).compactMap { mine, theirs in
            // hiddenSize → hidden_size, checked against the coding keys.
            let label = mine.label ?? "model"
            let snake = label.reduce(into: "") { $0 += $1.isUppercase ? "_" + $1.lowercased() : String($1) }
            let key = CodingKeys(rawValue: snake)?.rawValue ?? label
            let (a, b) = ("\(mine.value)", "\(theirs.value)")
            return a == b ? nil : (key, a, b)
        }
    }
}
