// Generator: continues prompts with the exit-k sub-model — greedy, or sampled with a
// temperature and top-k from a seeded generator. Batched: B prompts advance together,
// each at its own position (right padding is harmless under the causal mask). Every new
// token re-runs the first k layers over the window; there is no KV cache yet.
import Foundation
import SortedKit

public struct SamplingSettings: Sendable {
    /// 0 means greedy (argmax).
    public var temperature: Double
    /// Keep only the k most likely tokens (0: all).
    public var topK: Int
    public var seed: UInt64

    public init(temperature: Double = 0, topK: Int = 0, seed: UInt64 = 0) {
        self.temperature = temperature
        self.topK = topK
        self.seed = seed
    }
}

public final class Generator {
    public let model: LlamaModel
    public let depth: Int
    public let batchSize: Int
    public let window: Int
    private let pass: SortedPass

    /// window: the most tokens a prompt plus its continuation may hold.
    public init(model: LlamaModel, depth: Int, batchSize: Int, window: Int) throws {
        guard depth >= 1 && depth <= model.config.numHiddenLayers else {
            throw ConfigError(key: "depth", "\(depth) is outside 1...\(model.config.numHiddenLayers)")
        }
        self.model = model
        self.depth = depth
        self.batchSize = batchSize
        self.window = min(window, model.config.maxPositionEmbeddings)
        pass = try SortedPass(model: model, batchSize: batchSize, sequenceLength: self.window, headChunkRows: batchSize)
    }

    /// The new tokens of each prompt (at most batchSize prompts), ending before a stop token,
    /// after maxNewTokens, or when the window is full. Prompts longer than the window keep
    /// their last window − 1 tokens.
    public func generate(_ prompts: [[Int32]], maxNewTokens: Int, stop: Set<Int32>,
                         sampling: SamplingSettings = SamplingSettings()) -> [[Int32]] {
        precondition(prompts.count <= batchSize, "Generator: more prompts than the batch size")
        let T = window, V = model.config.vocabSize
        var tokens = [Int32](repeating: 0, count: batchSize * T)
        var lengths = [Int](repeating: 1, count: batchSize)
        var done = [Bool](repeating: true, count: batchSize)
        var output = [[Int32]](repeating: [], count: prompts.count)
        for (b, prompt) in prompts.enumerated() {
            let kept = Array(prompt.suffix(T - 1))
            for (t, id) in kept.enumerated() { tokens[b * T + t] = id }
            lengths[b] = max(kept.count, 1)
            done[b] = kept.isEmpty
        }
        var rng = SplitMix64(seed: sampling.seed)
        for _ in 0..<maxNewTokens {
            let active = (0..<prompts.count).filter { !done[$0] }
            if active.isEmpty { break }
            let batch = TokenBatch(batchSize: batchSize, sequenceLength: T, tokens: tokens,
                                   targets: [Int32](repeating: TokenBatch.ignoreIndex, count: batchSize * T))
            let logits = pass.logits(batch, depth: depth, rows: active.map { $0 * T + lengths[$0] - 1 })
            for (i, b) in active.enumerated() {
                let next = logits.withUnsafeBufferPointer {
                    choose(UnsafeBufferPointer(rebasing: $0[(i * V)..<((i + 1) * V)]), sampling, &rng)
                }
                if stop.contains(next) {
                    done[b] = true
                    continue
                }
                output[b].append(next)
                tokens[b * T + lengths[b]] = next
                lengths[b] += 1
                if lengths[b] >= T { done[b] = true }
            }
        }
        return output
    }

    private func choose(_ logits: UnsafeBufferPointer<Float>, _ s: SamplingSettings, _ rng: inout SplitMix64) -> Int32 {
        if s.temperature <= 0 {
            var best = 0
            for v in 1..<logits.count where logits[v] > logits[best] { best = v }
            return Int32(best)
        }
        var candidates = Array(logits.indices)
        if s.topK > 0 && s.topK < candidates.count {
            candidates = Array(candidates.sorted { logits[$0] > logits[$1] }.prefix(s.topK))
        }
        let top = candidates.map { Double(logits[$0]) }.max()!
        let weights = candidates.map { exp((Double(logits[$0]) - top) / s.temperature) }
        var r = rng.nextUnit() * weights.reduce(0, +)
        for (i, w) in zip(candidates, weights) {
            r -= w
            if r <= 0 { return Int32(i) }
        }
        return Int32(candidates.last!)
    }
}
