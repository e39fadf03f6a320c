// TextGenerator: continues prompts with a SoFT model through the KV-cache decoder, in one
// of three ways of spending depth:
//   fixed           every token through the first k layers (batched over prompts);
//   early exit      each token stops at the first trained exit confident enough (by its
//                   softmax, a head pass per exit tried, or by a learned probe on its hidden
//                   state, one head pass per token); the layers it skipped get its keys and
//                   values from the exited state (CALM);
//   self-speculative the exit-k sub-model drafts tokens on the shared cache, the remaining
//                   layers verify them all in one batched pass, the accepted prefix is kept.
// Greedy self-speculative output equals full-depth greedy output; with sampling the
// speculative-sampling rule keeps the full model's distribution.
import Foundation
import SortedKit

public enum DecodingStrategy: Sendable, Equatable {
    case fixed(depth: Int)
    /// exits ascending, the last layer last (it always answers).
    case earlyExit(exits: [Int], decision: ExitDecision)
    case selfSpeculative(draftDepth: Int, lookahead: Lookahead, vocabulary: DraftVocabulary = .full)

    public enum Lookahead: Sendable, Equatable {
        /// Always draft N tokens.
        case fixed(Int)
        /// Draft up to `maximum`, stopping at the first draft whose confidence (top
        /// probability) is below `threshold`.
        case adaptive(maximum: Int, threshold: Double)
        /// Draft up to `maximum`, stopping at the first draft whose probe at the draft exit
        /// (the probability that it equals the full model's token) is below `threshold`.
        case probed(maximum: Int, probes: ExitProbes, threshold: Double)

        var maximum: Int {
            switch self {
            case .fixed(let n), .adaptive(let n, _), .probed(let n, _, _): return n
            }
        }
    }

    /// Which tokens the draft scores. Verification always scores the whole vocabulary.
    public enum DraftVocabulary: Sendable, Equatable {
        case full
        /// Only these token ids (e.g. the most frequent of the tuned task, FR-Spec): the draft
        /// head reads their rows of the head weight, not all V.
        case shortlist([Int32])
    }
}

/// "Should this token exit here?"
public enum ExitDecision: Sendable, Equatable {
    /// The exit's own softmax confidence reaches its threshold: one threshold for every exit,
    /// or one per exit below the last layer. Each exit tried costs a pass over the head.
    case confidence(thresholds: [Double], measure: ConfidenceMeasure)
    /// The exit's probe (a calibrated level's thresholds, one per probe, for the probes' exits
    /// in order) reaches its threshold; the head runs once, at the exit chosen.
    case probe(ExitProbes, thresholds: [Double])
}

/// What a generation run did, for reports and benchmarks.
public struct GenerationStats: Codable, Sendable, Equatable {
    public var prompts = 0
    public var promptTokens = 0
    public var generatedTokens = 0
    public var prefillSeconds = 0.0
    public var decodeSeconds = 0.0
    /// Σ over generated tokens of the layers that computed it fully.
    public var layersComputed = 0
    /// depth (as a string, for JSON) → tokens produced by that many layers.
    public var exitHistogram: [String: Int] = [:]
    /// Self-speculative: draft tokens proposed, accepted, and verification passes.
    public var drafted = 0
    public var accepted = 0
    public var verifications = 0
    /// Weight bytes the decoding steps read (layers, heads, propagation; not the KV cache).
    public var weightBytesRead = 0

    public init() {}

    public var meanLayersPerToken: Double { generatedTokens > 0 ? Double(layersComputed) / Double(generatedTokens) : 0 }
    public var acceptanceRate: Double? { drafted > 0 ? Double(accepted) / Double(drafted) : nil }
    public var weightBytesPerToken: Double { generatedTokens > 0 ? Double(weightBytesRead) / Double(generatedTokens) : 0 }
    public var decodeTokensPerSecond: Double { generatedTokens > 0 ? Double(generatedTokens) / max(decodeSeconds, 1e-9) : 0 }
    public var prefillTokensPerSecond: Double { promptTokens > 0 ? Double(promptTokens) / max(prefillSeconds, 1e-9) : 0 }
}

/// Tokens equal position by position in two sets of answers, and the positions compared
/// (the longer answer's length, so a missing token counts as a disagreement).
public func tokenAgreement(_ a: [[Int32]], _ b: [[Int32]]) -> (same: Int, total: Int) {
    zip(a, b).reduce((0, 0)) { sum, pair in
        (sum.0 + zip(pair.0, pair.1).filter { $0 == $1 }.count, sum.1 + max(pair.0.count, pair.1.count))
    }
}

public final class TextGenerator {
    public let model: InferenceModel
    public let strategy: DecodingStrategy
    public let sampling: SamplingSettings
    public let stop: Set<Int32>
    /// Prompts decoded together (fixed depth); early exit and speculation take one at a time.
    public let batchSize: Int
    /// Positions per sequence: prompt plus continuation.
    public let capacity: Int
    public private(set) var stats = GenerationStats()
    /// Asked after every token: true ends every answer of the running generate() there (a
    /// server's client went away, or its time ran out).
    public var isCancelled: () -> Bool = { false }

    private let decoder: IncrementalDecoder
    private let hidden: FloatBuffer
    private let logits: FloatBuffer
    /// [D] the state at the exit before, for a probe's saturation feature.
    private let previousState: FloatBuffer
    /// A shortlist draft: its token ids and their rows of the head weight [N, D].
    private let shortlist: [Int32]
    private let shortlistHead: FloatBuffer?
    /// generate() calls so far: with the prompt's index in the call it seeds that prompt's
    /// sampler, so a sampled answer does not depend on the batch size or the other prompts.
    private var calls: UInt64 = 0
    private var V: Int { model.config.vocabSize }
    private var L: Int { model.config.numHiddenLayers }

    public init(model: InferenceModel, strategy: DecodingStrategy, sampling: SamplingSettings = SamplingSettings(),
                stop: Set<Int32>, batchSize: Int = 1, capacity: Int) throws {
        let L = model.config.numHiddenLayers
        func depthProblem(_ d: Int) -> ConfigError? {
            d >= 1 && d <= L ? nil : ConfigError(key: "depth", "\(d) is outside 1...\(L)")
        }
        var rows = 1
        var cacheLayers = L
        switch strategy {
        case .fixed(let depth):
            if let e = depthProblem(depth) { throw e }
            cacheLayers = depth
            rows = batchSize
        case .earlyExit(let exits, let decision):
            guard !exits.isEmpty, exits == exits.sorted(), Set(exits).count == exits.count else {
                throw ConfigError(key: "exits", "must be ascending and distinct, got \(exits)")
            }
            if let e = exits.lazy.compactMap(depthProblem).first { throw e }
            let below = exits.filter { $0 < L }
            switch decision {
            case .confidence(let thresholds, _):
                // One threshold for every exit, or one per exit below the last layer (which always
                // answers; a threshold given for it is ignored).
                guard thresholds.count == 1 || thresholds.count == below.count || thresholds.count == exits.count else {
                    throw ConfigError(key: "early_exit", "give one threshold, or one per exit below layer \(L) (\(below.count)), got \(thresholds.count)")
                }
                guard thresholds.allSatisfy({ $0.isFinite }) else { throw ConfigError(key: "early_exit", "thresholds must be finite") }
            case .probe(let probes, let thresholds):
                if let problem = probes.mismatch(model.config) { throw ConfigError(key: "exit_probes", problem) }
                guard below == probes.exits else {
                    throw ConfigError(key: "exit_probes", "probes at exits \(probes.exits) cannot decide exits \(below)")
                }
                guard thresholds.count == probes.probes.count, thresholds.allSatisfy({ !$0.isNaN }) else {
                    throw ConfigError(key: "exit_probes", "needs one threshold per probe (\(probes.probes.count)), got \(thresholds.count)")
                }
            }
        case .selfSpeculative(let draft, let lookahead, let vocabulary):
            if let e = depthProblem(draft) { throw e }
            guard draft < L else { throw ConfigError(key: "draft_depth", "must be below the model's \(L) layers, got \(draft)") }
            let drafts = lookahead.maximum
            guard drafts >= 1 else { throw ConfigError(key: "speculate", "must draft at least one token") }
            if case .probed(_, let probes, _) = lookahead {
                if let problem = probes.mismatch(model.config) { throw ConfigError(key: "exit_probes", problem) }
                guard probes.exits.contains(draft) else {
                    throw ConfigError(key: "exit_probes", "has no probe at the draft exit \(draft) (probed exits: \(probes.exits))")
                }
            }
            if case .shortlist(let ids) = vocabulary {
                guard !ids.isEmpty, ids.allSatisfy({ $0 >= 0 && Int($0) < model.config.vocabSize }) else {
                    throw ConfigError(key: "shortlist", "needs token ids within the vocabulary of \(model.config.vocabSize)")
                }
            }
            // No round drafts more than the sequence can still hold (see generateSpeculative).
            rows = min(drafts, max(1, min(capacity, model.config.maxPositionEmbeddings) - 2)) + 1
        }
        if let problem = sampling.problem { throw ConfigError(key: "sampling", problem) }
        guard batchSize >= 1 else { throw ConfigError(key: "batch_size", "must be positive, got \(batchSize)") }
        self.model = model
        self.strategy = strategy
        self.sampling = sampling
        self.stop = stop
        self.batchSize = batchSize
        self.capacity = min(capacity, model.config.maxPositionEmbeddings)
        let slots: Int
        if case .fixed = strategy { slots = batchSize } else { slots = 1 }
        try Self.checkMemory(model: model, slots: slots, layers: cacheLayers, capacity: self.capacity)
        let maxRows = max(rows, min(256, self.capacity))
        decoder = try IncrementalDecoder(model: model, slots: slots, capacity: self.capacity, maxRows: maxRows, cacheLayers: cacheLayers)
        hidden = decoder.makeHidden(rows: maxRows)
        logits = FloatBuffer(count: maxRows * model.config.vocabSize)
        previousState = FloatBuffer(count: model.config.hiddenSize)
        if case .selfSpeculative(_, _, .shortlist(let ids)) = strategy {
            let D = model.config.hiddenSize
            let rows = FloatBuffer(count: ids.count * D)
            for (i, id) in ids.enumerated() { model.head.dequantize(row: Int(id), into: rows.pointer + i * D) }
            shortlist = ids
            shortlistHead = rows
        } else {
            shortlist = []
            shortlistHead = nil
        }
    }

    /// Refuses to decode when the model's weights (as stored) and a KV cache of `slots` sequences × `capacity` tokens over
    /// `layers` layers would not fit the machine, before the cache is allocated: --batch-size,
    /// --parallel and --context come from the user.
    static func checkMemory(model: InferenceModel, slots: Int, layers: Int, capacity: Int,
                            key: String = "batch_size") throws {
        let c = model.config
        let cache = 8 * Double(slots) * Double(layers) * Double(c.numKeyValueHeads) * Double(capacity) * Double(c.headDim)
        let stored = Double(model.residentBytes)
        let what = "the model's weights (\(MemoryBudget.describe(Int(stored)))) and the KV cache of \(slots) sequences × \(capacity) tokens"
        try MemoryBudget.check(bytes: cache + stored < 9e18 ? Int(cache + stored) : nil, for: what, key: key)
    }

    /// The new tokens of each prompt, ending before a stop token, after maxNewTokens, or
    /// when prompt and answer fill `capacity` tokens. A prompt longer than capacity − 1 keeps its last
    /// capacity − 1 tokens. onToken(prompt index, token) streams tokens as they are chosen.
    public func generate(_ prompts: [[Int32]], maxNewTokens: Int,
                         onToken: ((Int, Int32) -> Void)? = nil) -> [[Int32]] {
        var outputs: [[Int32]] = []
        calls += 1
        switch strategy {
        case .fixed(let depth):
            for first in stride(from: 0, to: prompts.count, by: batchSize) {
                let group = Array(prompts[first..<min(first + batchSize, prompts.count)])
                outputs += generateFixed(group, firstIndex: first, depth: depth, maxNewTokens: maxNewTokens) { onToken?(first + $0, $1) }
            }
        case .earlyExit(let exits, let decision):
            for (i, prompt) in prompts.enumerated() {
                outputs.append(generateEarlyExit(prompt, sampler: sampler(for: i), exits: exits, decision: decision,
                                                 maxNewTokens: maxNewTokens) { onToken?(i, $0) })
            }
        case .selfSpeculative(let draft, let lookahead, _):
            for (i, prompt) in prompts.enumerated() {
                outputs.append(generateSpeculative(prompt, sampler: sampler(for: i), draftDepth: draft, lookahead: lookahead,
                                                   maxNewTokens: maxNewTokens) { onToken?(i, $0) })
            }
        }
        return outputs
    }

    public func resetStats() { stats = GenerationStats() }

    private func sampler(for prompt: Int) -> TokenSampler { TokenSampler.forPrompt(sampling, call: calls, index: prompt) }

    // MARK: - Shared steps

    /// Keeps what fits with room for one new token.
    private func fitted(_ prompt: [Int32]) -> [Int32] { Array(prompt.suffix(capacity - 1)) }

    /// Runs the prompt through `layers` into the slot's cache in chunks; the hidden state
    /// of its last token is left in row 0 of `hidden`.
    private func prefill(_ prompt: [Int32], slot: Int, layers: Range<Int>) {
        let start = ContinuousClock.now
        decoder.cache.reset(slot: slot)
        let chunk = decoder.maxRows
        var first = 0
        while first < prompt.count {
            let n = min(chunk, prompt.count - first)
            decoder.embed(Array(prompt[first..<(first + n)]), into: hidden)
            decoder.forward(hidden, segments: [DecoderSegment(slot: slot, rows: n)], layers: layers)
            first += n
        }
        if prompt.count > 1 {
            let last = (prompt.count - 1) % chunk
            hidden.pointer.update(from: hidden.pointer + last * model.config.hiddenSize, count: model.config.hiddenSize)
        }
        stats.prompts += 1
        stats.promptTokens += prompt.count
        stats.prefillSeconds += (ContinuousClock.now - start).seconds
    }

    /// Counts one generated token computed by `depth` layers.
    private func record(depth: Int) {
        stats.layersComputed += depth
        stats.exitHistogram[String(depth), default: 0] += 1
    }

    private func row(_ i: Int) -> UnsafeMutablePointer<Float> { logits.pointer + i * V }

    // The decoder's steps while decoding, counting the weight bytes each reads: a call reads
    // its layers (or the head) once whatever its rows, which is what batch-1 decoding pays.
    private func run(_ hidden: FloatBuffer, at row: Int = 0, segments: [DecoderSegment], layers: Range<Int>) {
        decoder.forward(hidden, at: row, segments: segments, layers: layers)
        stats.weightBytesRead += layers.reduce(0) { $0 + decoder.model.layerBytes($1) }
    }

    private func head(_ hidden: FloatBuffer, rows: Range<Int>, into out: UnsafeMutablePointer<Float>) {
        decoder.logits(hidden, rows: rows, into: out)
        stats.weightBytesRead += decoder.model.head.bytes
    }

    /// State propagation reads each skipped layer's input norm and key/value rows only.
    private func propagateState(_ hidden: FloatBuffer, segments: [DecoderSegment], layers: Range<Int>) {
        decoder.propagate(hidden, segments: segments, layers: layers)
        stats.weightBytesRead += layers.reduce(0) { $0 + decoder.model.propagationBytes($1) }
    }

    /// The draft's logits for hidden row `r` into row 0: over the whole vocabulary, or over the
    /// shortlist with every other token at −10³⁰ (never the argmax, probability 0).
    private func draftLogits(row r: Int) {
        guard let shortlistHead else {
            head(hidden, rows: r..<(r + 1), into: row(0))
            return
        }
        let N = shortlist.count, scores = row(1)   // row 1 is free while drafting: verification overwrites it
        decoder.logits(hidden, rows: r..<(r + 1), head: shortlistHead.pointer, vocab: N, into: scores)
        stats.weightBytesRead += N * model.config.hiddenSize * 4
        let out = row(0)
        out.update(repeating: -1e30, count: V)
        for (i, id) in shortlist.enumerated() { out[Int(id)] = scores[i] }
    }

    private func timed<T>(_ body: () -> T) -> T {
        let start = ContinuousClock.now
        defer { stats.decodeSeconds += (ContinuousClock.now - start).seconds }
        return body()
    }

    // MARK: - Fixed depth, batched

    private func generateFixed(_ prompts: [[Int32]], firstIndex: Int, depth: Int, maxNewTokens: Int,
                               onToken: (Int, Int32) -> Void) -> [[Int32]] {
        let B = prompts.count
        var samplers = (0..<B).map { sampler(for: firstIndex + $0) }
        var output = [[Int32]](repeating: [], count: B)
        var next = [Int32](repeating: 0, count: B)
        var active = [Int]()
        for (b, prompt) in prompts.enumerated() {
            let kept = fitted(prompt)
            guard !kept.isEmpty, maxNewTokens > 0 else { continue }
            prefill(kept, slot: b, layers: 0..<depth)
            timed {
                head(hidden, rows: 0..<1, into: row(0))
                next[b] = samplers[b].choose(row(0), vocab: V)
            }
            active.append(b)
        }
        timed {
            while !active.isEmpty {
                // Emit each slot's pending token, or end the slot.
                active = active.filter { b in
                    if stop.contains(next[b]) { return false }
                    output[b].append(next[b])
                    onToken(b, next[b])
                    stats.generatedTokens += 1
                    record(depth: depth)
                    // Room for the pending token and the one it predicts.
                    return output[b].count < maxNewTokens && decoder.cache.length(slot: b, layer: 0) + 1 < capacity && !isCancelled()
                }
                guard !active.isEmpty else { break }
                decoder.embed(active.map { next[$0] }, into: hidden)
                run(hidden, segments: active.map { DecoderSegment(slot: $0, rows: 1) }, layers: 0..<depth)
                head(hidden, rows: 0..<active.count, into: logits.pointer)
                for (i, b) in active.enumerated() { next[b] = samplers[b].choose(row(i), vocab: V) }
            }
        }
        return output
    }

    // MARK: - Early exit

    private func generateEarlyExit(_ prompt: [Int32], sampler: TokenSampler, exits: [Int], decision: ExitDecision,
                                   maxNewTokens: Int, onToken: (Int32) -> Void) -> [Int32] {
        var sampler = sampler
        let kept = fitted(prompt)
        guard !kept.isEmpty, maxNewTokens > 0 else { return [] }
        // The prompt runs at full depth so every layer's cache is complete.
        prefill(kept, slot: 0, layers: 0..<L)
        var output: [Int32] = []
        timed {
            head(hidden, rows: 0..<1, into: row(0))
            var token = sampler.choose(row(0), vocab: V)
            var depth = L   // the first token came from the prefill at full depth
            let segment = [DecoderSegment(slot: 0, rows: 1)]
            while !stop.contains(token) {
                output.append(token)
                record(depth: depth)
                onToken(token)
                guard output.count < maxNewTokens, decoder.cache.length(slot: 0, layer: 0) + 1 < capacity, !isCancelled() else { break }
                decoder.embed([token], into: hidden)
                depth = 0
                var exited = false
                if case .probe = decision { previousState.pointer.update(from: hidden.pointer, count: model.config.hiddenSize) }
                for (i, exit) in exits.filter({ $0 < L }).enumerated() {
                    run(hidden, segments: segment, layers: depth..<exit)
                    depth = exit
                    switch decision {
                    case .confidence(let thresholds, let measure):
                        head(hidden, rows: 0..<1, into: row(0))
                        exited = LogitStatistics.confidence(row(0), count: V, measure: measure) >= thresholds[min(i, thresholds.count - 1)]
                    case .probe(let probes, let thresholds):
                        exited = probes.score(i, hidden: hidden.pointer, previous: previousState.pointer) >= thresholds[i]
                        if exited {
                            head(hidden, rows: 0..<1, into: row(0))
                        } else {
                            previousState.pointer.update(from: hidden.pointer, count: model.config.hiddenSize)
                        }
                    }
                    if exited { break }
                }
                if exited {
                    propagateState(hidden, segments: segment, layers: depth..<L)
                } else {
                    run(hidden, segments: segment, layers: depth..<L)
                    depth = L
                    head(hidden, rows: 0..<1, into: row(0))
                }
                token = sampler.choose(row(0), vocab: V)
            }
        }
        stats.generatedTokens += output.count
        return output
    }

    // MARK: - Self-speculative decoding

    private func generateSpeculative(_ prompt: [Int32], sampler: TokenSampler, draftDepth k: Int,
                                     lookahead: DecodingStrategy.Lookahead, maxNewTokens: Int,
                                     onToken: (Int32) -> Void) -> [Int32] {
        var sampler = sampler
        let kept = fitted(prompt)
        guard !kept.isEmpty, maxNewTokens > 0 else { return [] }
        prefill(kept, slot: 0, layers: 0..<L)
        let maxDraft = min(lookahead.maximum, max(1, capacity - 2))
        let exactRows = model.exactRows
        // A probe's saturation feature needs the state at the probed exit before the draft's.
        var probe: (probes: ExitProbes, index: Int, before: Int, threshold: Double)?
        if case .probed(_, let probes, let threshold) = lookahead, let i = probes.exits.firstIndex(of: k) {
            probe = (probes, i, i > 0 ? probes.exits[i - 1] : 0, threshold)
        }
        let D = model.config.hiddenSize
        var output: [Int32] = []
        let greedy = sampling.isGreedy
        // Draft distributions q_i (sampling only): [maxDraft, V].
        var draftProbabilities = greedy ? [] : [Float](repeating: 0, count: maxDraft * V)
        var targetProbabilities = greedy ? [] : [Float](repeating: 0, count: V)
        timed {
            head(hidden, rows: 0..<1, into: row(0))
            var pending = sampler.choose(row(0), vocab: V)
            /// Emits a token (checked by all L layers); false when generation ends here.
            func emit(_ token: Int32) -> Bool {
                if stop.contains(token) { return false }
                output.append(token)
                record(depth: L)
                onToken(token)
                return output.count < maxNewTokens && !isCancelled()
            }
            guard emit(pending) else { return }
            while true {
                let position = decoder.cache.committedLength(slot: 0)   // where `pending` goes
                // Drafts that may still be accepted with the correction after them: prompt and
                // answer together never exceed `capacity` tokens.
                let room = capacity - position - 2
                guard room >= 0 else { break }
                // Draft: rows 0..<fed hold the exit-k states of [pending, d1, …].
                var drafts: [Int32] = []
                var input = pending
                var fed = 0
                let limit = min(maxDraft, room, maxNewTokens - output.count)
                while fed <= limit {
                    decoder.embed([input], into: hidden, at: fed)
                    let one = [DecoderSegment(slot: 0, rows: 1)]
                    if let probe {
                        run(hidden, at: fed, segments: one, layers: 0..<probe.before)
                        previousState.pointer.update(from: hidden.pointer + fed * D, count: D)
                        run(hidden, at: fed, segments: one, layers: probe.before..<k)
                    } else {
                        run(hidden, at: fed, segments: one, layers: 0..<k)
                    }
                    fed += 1
                    if drafts.count == limit { break }
                    if let probe,
                       probe.probes.score(probe.index, hidden: hidden.pointer + (fed - 1) * D, previous: previousState.pointer) < probe.threshold {
                        break
                    }
                    draftLogits(row: fed - 1)
                    if case .adaptive(_, let t) = lookahead,
                       LogitStatistics.confidence(row(0), count: V, measure: .probability) < t { break }
                    let d: Int32
                    if greedy {
                        d = Int32(LogitStatistics.argmax(row(0), count: V))
                    } else {
                        let i = drafts.count
                        draftProbabilities.withUnsafeMutableBufferPointer {
                            sampler.distribution(row(0), vocab: V, into: $0.baseAddress! + i * V)
                        }
                        d = sampler.draw(Array(draftProbabilities[(i * V)..<((i + 1) * V)]))
                    }
                    drafts.append(d)
                    input = d
                }
                // Verify: layers k..<L over the fed rows, in chunks the weights compute exactly as
                // single rows (the later chunks attend to the earlier ones' keys, as a chunked
                // prefill does); row i predicts after input i.
                for first in stride(from: 0, to: fed, by: exactRows) {
                    let rows = first..<min(fed, first + exactRows)
                    run(hidden, at: first, segments: [DecoderSegment(slot: 0, rows: rows.count)], layers: k..<L)
                    head(hidden, rows: rows, into: logits.pointer + first * V)
                }
                stats.verifications += 1
                stats.drafted += drafts.count
                var acceptedCount = 0
                var correction: Int32
                if greedy {
                    while acceptedCount < drafts.count
                            && Int32(LogitStatistics.argmax(row(acceptedCount), count: V)) == drafts[acceptedCount] {
                        acceptedCount += 1
                    }
                    correction = Int32(LogitStatistics.argmax(row(acceptedCount), count: V))
                } else {
                    correction = -1
                    while acceptedCount < drafts.count {
                        let d = Int(drafts[acceptedCount])
                        targetProbabilities.withUnsafeMutableBufferPointer {
                            sampler.distribution(row(acceptedCount), vocab: V, into: $0.baseAddress!)
                        }
                        let q = draftProbabilities[acceptedCount * V + d], p = targetProbabilities[d]
                        if sampler.unit() < Double(min(1, p / max(q, .leastNonzeroMagnitude))) {
                            acceptedCount += 1
                            continue
                        }
                        // Rejected: draw from the residual max(0, p − q), renormalised.
                        var residual = targetProbabilities
                        for v in 0..<V { residual[v] = max(0, residual[v] - draftProbabilities[acceptedCount * V + v]) }
                        correction = residual.contains { $0 > 0 } ? sampler.draw(residual) : sampler.draw(targetProbabilities)
                        break
                    }
                    if correction < 0 {
                        targetProbabilities.withUnsafeMutableBufferPointer {
                            sampler.distribution(row(acceptedCount), vocab: V, into: $0.baseAddress!)
                        }
                        correction = sampler.draw(targetProbabilities)
                    }
                }
                stats.accepted += acceptedCount
                // Keep pending and the accepted drafts; forget the rest of the draft.
                decoder.cache.truncate(slot: 0, to: position + 1 + acceptedCount)
                var going = true
                for d in drafts.prefix(acceptedCount) where going { going = emit(d) }
                guard going else { break }
                pending = correction
                guard emit(pending) else { break }
            }
        }
        stats.generatedTokens += output.count
        return output
    }
}
