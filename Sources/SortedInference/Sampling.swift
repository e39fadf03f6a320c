// Sampling: how the next token is chosen from a row of logits — greedy, or drawn from the
// temperature-scaled distribution restricted to the top-k tokens and the top-p nucleus
// (HF generate's order: temperature, top-k, top-p), from a seeded generator.
import Foundation
import SortedKit

public struct SamplingSettings: Sendable, Equatable {
    /// 0 means greedy (argmax).
    public var temperature: Double
    /// Keep only the k most likely tokens (0: all).
    public var topK: Int
    /// Keep the smallest set of most likely tokens whose probability reaches p (1: all).
    public var topP: Double
    public var seed: UInt64

    public init(temperature: Double = 0, topK: Int = 0, topP: Double = 1, seed: UInt64 = 0) {
        self.temperature = temperature
        self.topK = topK
        self.topP = topP
        self.seed = seed
    }

    /// Temperatures below 1e-4 are greedy too: dividing float logits by them overflows.
    public var isGreedy: Bool { temperature < 1e-4 }

    /// Why the settings cannot be used, or nil.
    public var problem: String? {
        if !temperature.isFinite || temperature < 0 { return "temperature must be a finite number ≥ 0, got \(temperature)" }
        if topK < 0 { return "top-k must be ≥ 0, got \(topK)" }
        if !(topP > 0 && topP <= 1) { return "top-p must be in (0, 1], got \(topP)" }
        return nil
    }
}

/// Chooses tokens under one SamplingSettings, owning its random stream.
struct TokenSampler {
    let settings: SamplingSettings
    private var rng: SplitMix64
    private var scratch: [Float] = []

    init(_ settings: SamplingSettings) {
        self.settings = settings
        rng = SplitMix64(seed: settings.seed)
    }

    /// The sampler of prompt `index` of generate() call `call` (from 1): its stream depends on
    /// the seed and these two only, so an answer does not depend on the batch it was in.
    static func forPrompt(_ settings: SamplingSettings, call: UInt64, index: Int) -> TokenSampler {
        var mixer = SplitMix64(seed: settings.seed ^ (call &* 0x9E37_79B9_7F4A_7C15) ^ (UInt64(index) &* 0xBF58_476D_1CE4_E5B9))
        var seeded = settings
        seeded.seed = mixer.next()
        return TokenSampler(seeded)
    }

    /// The next token from one row of V logits.
    mutating func choose(_ logits: UnsafePointer<Float>, vocab V: Int) -> Int32 {
        if settings.isGreedy { return Int32(LogitStatistics.argmax(logits, count: V)) }
        if scratch.count != V { scratch = [Float](repeating: 0, count: V) }
        var probabilities = scratch
        probabilities.withUnsafeMutableBufferPointer { distribution(logits, vocab: V, into: $0.baseAddress!) }
        defer { scratch = probabilities }
        return draw(probabilities)
    }

    /// The distribution tokens are drawn from: softmax(logits / T), zero outside the top-k
    /// and the top-p nucleus, renormalised. out: [V].
    func distribution(_ logits: UnsafePointer<Float>, vocab V: Int, into out: UnsafeMutablePointer<Float>) {
        LogitStatistics.softmax(logits, count: V, temperature: Float(settings.temperature), into: out)
        let k = settings.topK > 0 ? min(settings.topK, V) : V
        guard k < V || settings.topP < 1 else { return }
        // The k most likely tokens in order (a partial selection would do; V log V is
        // small next to a forward pass).
        let order = (0..<V).sorted { out[$0] > out[$1] || (out[$0] == out[$1] && $0 < $1) }
        var kept = k
        if settings.topP < 1 {
            // The nucleus of the top-k distribution, renormalised (HF applies top-p after top-k).
            let topKMass = order.prefix(k).reduce(0.0) { $0 + Double(out[$1]) }
            var mass = 0.0
            for (i, v) in order.prefix(k).enumerated() {
                mass += Double(out[v])
                if mass >= settings.topP * topKMass { kept = i + 1; break }
            }
        }
        var total: Float = 0
        for v in order.prefix(kept) { total += out[v] }
        for v in order.dropFirst(kept) { out[v] = 0 }
        for v in order.prefix(kept) { out[v] /= total }
    }

    /// A token drawn from probabilities that sum to 1 (up to rounding).
    mutating func draw(_ probabilities: [Float]) -> Int32 {
        var r = rng.nextUnit() * probabilities.reduce(0.0) { $0 + Double($1) }
        var last = 0
        for (v, p) in probabilities.enumerated() where p > 0 {
            r -= Double(p)
            last = v
            if r <= 0 { return Int32(v) }
        }
        return Int32(last)
    }

    /// A uniform draw in [0, 1): the speculative-sampling acceptance test.
    mutating func unit() -> Double { rng.nextUnit() }
}
