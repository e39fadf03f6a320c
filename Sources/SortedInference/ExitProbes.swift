// ExitProbes: early-exit decisions that need no pass over the vocabulary head (CALM's learned
// exit classifier). At each trained exit below the last layer a logistic probe reads the
// exit's hidden state h — its direction h / rms(h), and its cosine with the state at the
// previous exit (how much the last layers still moved it) — and gives the probability that
// this exit's top-1 token equals the last layer's. A probe costs 2·D multiply-adds where the
// head costs V·D. `ExitCalibration` fits the probes and stores, for a grid of risk levels, the
// per-exit thresholds and the agreement with full-depth greedy decoding they reached.
import Foundation
import SortedFormats
import SortedKit

public struct ExitProbe: Codable, Sendable, Equatable {
    public var depth: Int
    /// [D], on h / rms(h).
    public var weights: [Float]
    /// On cos(h, the hidden state at the previous exit, or the token's embedding at the first).
    public var saturation: Float
    public var bias: Float
    /// Fraction of the calibration tokens on which this exit's top-1 equals the last layer's.
    public var agreement: Double

    public init(depth: Int, weights: [Float], saturation: Float, bias: Float, agreement: Double) {
        self.depth = depth
        self.weights = weights
        self.saturation = saturation
        self.bias = bias
        self.agreement = agreement
    }
}

extension ExitProbe {
    /// σ(w·direction + saturation·cosine + bias), given w·direction.
    func probability(weightedDirection: Double, cosine: Float) -> Double {
        LogisticRegression.sigmoid(weightedDirection + Double(saturation) * Double(cosine) + Double(bias))
    }

    /// The same from a feature row of `ExitProbes.features` (direction, then the cosine).
    func probability(features x: UnsafePointer<Float>) -> Double {
        var z = 0.0
        for i in weights.indices { z += Double(weights[i]) * Double(x[i]) }
        return probability(weightedDirection: z, cosine: x[weights.count])
    }
}

/// One calibrated operating point: the thresholds a token risk gives, and what they did when
/// generating on prompts the probes were not fitted on.
public struct CalibrationLevel: Codable, Sendable, Equatable {
    /// The largest disagreement with the last layer allowed among the threshold split's
    /// tokens that a probe lets exit.
    public var tokenRisk: Double
    /// One per probe; above 1 means that exit never answers.
    public var thresholds: [Double]
    /// Token agreement with full-depth greedy answers, generating on a quarter of the fit
    /// prompts (`CalibrationSummary.thresholdPrompts`).
    public var agreement: Double
    public var layersPerToken: Double
    /// The same on the held-out prompts, which neither the probes nor the thresholds saw.
    public var heldOutAgreement: Double
    public var heldOutLayersPerToken: Double

    enum CodingKeys: String, CodingKey {
        case thresholds, agreement
        case tokenRisk = "token_risk"
        case layersPerToken = "layers_per_token"
        case heldOutAgreement = "held_out_agreement"
        case heldOutLayersPerToken = "held_out_layers_per_token"
    }
}

/// Where the probes came from.
public struct CalibrationSummary: Codable, Sendable, Equatable {
    public var data: String
    /// Prompts that fitted the probes and their thresholds (cross-fitted), those of them each
    /// level was also measured on by generating, and those held out.
    public var fitPrompts: Int
    public var thresholdPrompts: Int
    public var heldOutPrompts: Int
    /// Answer tokens the probes were fitted on (per exit), over every fit prompt.
    public var fitTokens: Int
    public var maxNewTokens: Int
    public var seconds: Double
    /// Fraction of the held-out prompts' full-depth answer tokens that are in the shortlist.
    public var shortlistCoverage: Double = 0
    /// The folds the probes' thresholds were cross-fitted in; nil in files from before
    /// cross-fitting, whose thresholds came from the measured quarter alone.
    public var folds: Int?

    enum CodingKeys: String, CodingKey {
        case data, seconds, folds
        case shortlistCoverage = "shortlist_coverage"
        case fitPrompts = "fit_prompts"
        case thresholdPrompts = "threshold_prompts"
        case heldOutPrompts = "held_out_prompts"
        case fitTokens = "fit_tokens"
        case maxNewTokens = "max_new_tokens"
    }
}

public struct ExitProbes: Codable, Sendable, Equatable {
    /// The file beside a model that holds its probes: MODEL_FOLDER/exit-probes.json, or
    /// FILE.exit-probes.json beside a model file.
    public static let fileName = "exit-probes.json"
    public static let currentFormat = 1

    public var format: Int
    public var layers: Int
    public var hiddenSize: Int
    public var probes: [ExitProbe]
    /// Ascending token risk (so, roughly, descending agreement).
    public var levels: [CalibrationLevel]
    public var calibration: CalibrationSummary
    /// The draft vocabulary for self-speculation: the most frequent answer tokens (FR-Spec),
    /// most frequent first, with the end tokens.
    public var shortlist: [Int32]

    public init(layers: Int, hiddenSize: Int, probes: [ExitProbe], levels: [CalibrationLevel], calibration: CalibrationSummary,
                shortlist: [Int32] = []) {
        self.format = Self.currentFormat
        self.layers = layers
        self.hiddenSize = hiddenSize
        self.probes = probes
        self.levels = levels
        self.calibration = calibration
        self.shortlist = shortlist
    }

    enum CodingKeys: String, CodingKey {
        case format, layers, probes, levels, calibration, shortlist
        case hiddenSize = "hidden_size"
    }

    /// The probed exits, ascending.
    public var exits: [Int] { probes.map(\.depth) }

    /// The level that meets `agreement` on both the measured fit prompts and the held-out ones
    /// with the fewest layers per token, or nil when none does. (The fit prompts alone
    /// overstate it: the thresholds were chosen on them.)
    public func level(forAgreement agreement: Double) -> CalibrationLevel? {
        levels.filter { min($0.agreement, $0.heldOutAgreement) >= agreement }.min { $0.layersPerToken < $1.layersPerToken }
    }

    /// Why these probes cannot serve `config`'s model, or nil.
    public func mismatch(_ config: LlamaConfig) -> String? {
        if format != Self.currentFormat { return "format \(format), this sortedtrain reads \(Self.currentFormat)" }
        if layers != config.numHiddenLayers || hiddenSize != config.hiddenSize {
            return "made for \(layers) layers of width \(hiddenSize), the model has \(config.numHiddenLayers) of width \(config.hiddenSize)"
        }
        if let bad = probes.first(where: { $0.depth < 1 || $0.depth >= layers || $0.weights.count != hiddenSize }) {
            return "the probe at exit \(bad.depth) does not fit (\(bad.weights.count) weights)"
        }
        if zip(exits, exits.dropFirst()).contains(where: { $0 >= $1 }) {
            return "its exits \(exits) are not ascending and distinct"
        }
        if Set(shortlist).count != shortlist.count {
            return "its shortlist repeats tokens"
        }
        if shortlist.contains(where: { $0 < 0 || Int($0) >= config.vocabSize }) {
            return "its shortlist names tokens outside the vocabulary of \(config.vocabSize)"
        }
        if let bad = levels.first(where: { $0.thresholds.count != probes.count }) {
            return "a level has \(bad.thresholds.count) thresholds for \(probes.count) probes"
        }
        return nil
    }

    /// What `calibrate --json` and `inspect` show: everything but the probes' weights.
    public var report: Report {
        Report(exits: exits, exitAgreement: probes.map(\.agreement), levels: levels, calibration: calibration,
               shortlistTokens: shortlist.count)
    }

    public struct Report: Codable, Sendable, Equatable {
        public var exits: [Int]
        /// Per exit, how often its top-1 token equals the last layer's on the fit tokens.
        public var exitAgreement: [Double]
        public var levels: [CalibrationLevel]
        public var calibration: CalibrationSummary
        public var shortlistTokens: Int

        enum CodingKeys: String, CodingKey {
            case exits, levels, calibration
            case exitAgreement = "exit_agreement"
            case shortlistTokens = "shortlist_tokens"
        }
    }

    // MARK: - Scoring

    /// Number of features a probe reads: h / rms(h) and one cosine.
    static func featureCount(dim: Int) -> Int { dim + 1 }

    /// out[0..<D] = h / rms(h); out[D] = cos(h, previous).
    static func features(hidden h: UnsafePointer<Float>, previous: UnsafePointer<Float>, dim D: Int,
                         into out: UnsafeMutablePointer<Float>) {
        var squares = 0.0, previousSquares = 0.0, cross = 0.0
        for i in 0..<D {
            let a = Double(h[i]), b = Double(previous[i])
            squares += a * a
            previousSquares += b * b
            cross += a * b
        }
        let inverseRMS = Float(1 / max((squares / Double(D)).squareRoot(), 1e-12))
        for i in 0..<D { out[i] = h[i] * inverseRMS }
        out[D] = Float(cross / max((squares * previousSquares).squareRoot(), 1e-30))
    }

    /// The probability that probe `index` agrees with the last layer, for the exit state
    /// `hidden` [D] after the state `previous` [D] of the exit before it.
    public func score(_ index: Int, hidden: UnsafePointer<Float>, previous: UnsafePointer<Float>) -> Double {
        let p = probes[index], D = hiddenSize
        var squares = 0.0, previousSquares = 0.0, cross = 0.0, z = 0.0
        p.weights.withUnsafeBufferPointer { w in
            for i in 0..<D {
                let a = Double(hidden[i]), b = Double(previous[i])
                squares += a * a
                previousSquares += b * b
                cross += a * b
                z += Double(w[i]) * a
            }
        }
        let rms = max((squares / Double(D)).squareRoot(), 1e-12)
        let cosine = cross / max((squares * previousSquares).squareRoot(), 1e-30)
        return p.probability(weightedDirection: z / rms, cosine: Float(cosine))
    }

    // MARK: - Files

    /// A decoding failure in a few words: which key is missing or wrong, or that it is no JSON.
    static func reason(_ error: Error) -> String {
        func path(_ context: DecodingError.Context) -> String {
            context.codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
        }
        switch error as? DecodingError {
        case .keyNotFound(let key, let context)?: return "no '\(([path(context)] + [key.stringValue]).filter { !$0.isEmpty }.joined(separator: "."))'"
        case .typeMismatch(_, let context)?, .valueNotFound(_, let context)?: return "'\(path(context))' has the wrong type"
        case .dataCorrupted(let context)?: return context.codingPath.isEmpty ? "not valid JSON" : "'\(path(context))' is malformed"
        default: return "\(error)"
        }
    }

    /// Where a model's probes live: inside its folder (checkpoint step, HF directory), or
    /// beside its file (GGUF, HDF5).
    public static func location(forModel path: URL, isFolder: Bool) -> URL {
        isFolder ? path.appendingPathComponent(fileName) : URL(fileURLWithPath: path.path + "." + fileName)
    }

    /// The GGUF metadata key that carries a model's probes (as this file's JSON text).
    public static let ggufKey = "sortedtrain.exit_probes"

    /// The probes as the JSON text of their file.
    public func jsonText() throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try encoder.encode(self), as: UTF8.self)
    }

    /// Probes from JSON text (a GGUF's metadata), checked against `config`; `source` names
    /// where the text came from in errors.
    public static func decode(_ text: String, source: String, for config: LlamaConfig) throws -> ExitProbes {
        let probes: ExitProbes
        do { probes = try JSONDecoder().decode(ExitProbes.self, from: Data(text.utf8)) } catch {
            throw FormatError(file: source, "holds no readable probes (\(reason(error))); calibrate the model again")
        }
        if let problem = probes.mismatch(config) { throw FormatError(file: source, "\(problem); calibrate the model again") }
        return probes
    }

    /// The probes kept at `url` for `config`'s model, nil when there are none; probes that do
    /// not fit the model are an error naming the file.
    public static func load(_ url: URL, for config: LlamaConfig) throws -> ExitProbes? {
        guard FileManager.default.fileExists(atPath: url.path) else { return nil }
        let probes = try read(url)
        if let problem = probes.mismatch(config) {
            throw FormatError(file: url.path, "\(problem); run `sortedtrain calibrate` again or delete it")
        }
        return probes
    }

    public static func read(_ url: URL) throws -> ExitProbes {
        guard let data = FileManager.default.contents(atPath: url.path) else {
            throw FormatError(file: url.path, "cannot be read")
        }
        do {
            return try JSONDecoder().decode(ExitProbes.self, from: data)
        } catch {
            throw FormatError(file: url.path, "is not a probes file (\(Self.reason(error))); run `sortedtrain calibrate` again or delete it")
        }
    }

    /// Written to a temporary file and renamed, so a failed write leaves the old file whole.
    public func write(to url: URL) throws {
        let temporary = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).tmp")
        do {
            try Data(try jsonText().utf8).write(to: temporary)
            // rename(2) replaces an existing file in one step.
            guard rename(temporary.path, url.path) == 0 else {
                throw CocoaError(.fileWriteUnknown, userInfo: [NSLocalizedDescriptionKey: String(cString: strerror(errno))])
            }
        } catch {
            try? FileManager.default.removeItem(at: temporary)
            throw FormatError(file: url.path, "cannot be written (\(error.localizedDescription))")
        }
    }
}
