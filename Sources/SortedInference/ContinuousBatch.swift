// ContinuousBatch: fixed-depth sequences decoded together, joining and leaving between
// steps (continuous batching). Each sequence has its own depth, sampling and limits; one
// step feeds every running sequence one token. Rows are kept deepest first, so the layers
// all of them need run once over all rows, and each deeper group continues over a prefix
// of the same buffer: sequences at the same depth share every GEMM, and shallower ones
// share the layers they have in common with deeper ones. The output of a sequence equals
// TextGenerator's fixed-depth output for the same prompt and settings.
import SortedKit

public final class ContinuousBatch {
    /// One sequence to decode.
    public struct Request: Sendable {
        public var prompt: [Int32]
        public var depth: Int
        public var sampling: SamplingSettings
        public var maxNewTokens: Int
        public var stop: Set<Int32>

        public init(prompt: [Int32], depth: Int, sampling: SamplingSettings, maxNewTokens: Int, stop: Set<Int32>) {
            self.prompt = prompt
            self.depth = depth
            self.sampling = sampling
            self.maxNewTokens = maxNewTokens
            self.stop = stop
        }
    }

    /// Why a sequence ended.
    public enum Finish: String, Sendable {
        /// A stop token.
        case stop
        /// maxNewTokens, or the sequence filled its slot's positions.
        case length
    }

    /// What one step did for one sequence: a new token, and whether the sequence ended
    /// (then the token is nil when it ended on a stop token, which is not emitted).
    public struct Event: Sendable, Equatable {
        public let slot: Int
        public let token: Int32?
        public let finish: Finish?
    }

    public let model: InferenceModel
    /// Positions per slot: prompt plus answer.
    public let capacity: Int
    public var slots: Int { decoder.cache.slots }
    public var running: Int { sequences.count }
    public var freeSlots: Int { slots - sequences.count }

    private let decoder: IncrementalDecoder
    private let hidden: FloatBuffer
    private let logits: FloatBuffer
    private struct Sequence {
        var request: Request
        var sampler: TokenSampler
        var pending: Int32
        var produced = 0
    }
    private var sequences: [Int: Sequence] = [:]
    private var V: Int { model.config.vocabSize }

    public init(model: InferenceModel, slots: Int, capacity: Int) throws {
        guard slots >= 1 else { throw ConfigError(key: "slots", "must be positive, got \(slots)") }
        self.model = model
        self.capacity = min(capacity, model.config.maxPositionEmbeddings)
        try TextGenerator.checkMemory(model: model, slots: slots, layers: model.config.numHiddenLayers,
                                      capacity: self.capacity, key: "parallel")
        // Prefill chunks of up to 256 rows; a decoding step has at most one row per slot.
        let maxRows = max(slots, min(256, self.capacity))
        decoder = try IncrementalDecoder(model: model, slots: slots, capacity: self.capacity, maxRows: maxRows)
        hidden = decoder.makeHidden(rows: maxRows)
        logits = FloatBuffer(count: maxRows * model.config.vocabSize)
    }

    /// Why `request` cannot run here, or nil.
    public func problem(_ request: Request) -> String? {
        let L = model.config.numHiddenLayers
        if !(1...L).contains(request.depth) { return "depth \(request.depth) is outside 1...\(L)" }
        if request.prompt.isEmpty { return "the prompt has no tokens" }
        if request.prompt.count >= capacity {
            return "the prompt is \(request.prompt.count) tokens; the context of \(capacity) holds \(capacity - 1) with one new token"
        }
        if request.maxNewTokens < 1 { return "max new tokens must be at least 1" }
        if request.prompt.contains(where: { $0 < 0 || Int($0) >= V }) { return "a prompt token is outside the vocabulary of \(V)" }
        return request.sampling.problem
    }

    /// Prefills `request` into a free slot and chooses its first token (emitted by the next
    /// step). Returns the slot, which names the sequence in events until it finishes.
    public func admit(_ request: Request) throws -> Int { try admit([request])[0] }

    /// Prefills several requests together — their prompts share each chunk's GEMMs — and
    /// chooses their first tokens; returns their slots in order.
    public func admit(_ requests: [Request]) throws -> [Int] {
        for request in requests {
            if let problem = problem(request) { throw ConfigError(key: "request", problem) }
        }
        let free = (0..<slots).filter { sequences[$0] == nil }
        guard requests.count <= free.count else {
            throw ConfigError(key: "slots", "\(requests.count) requests for \(free.count) free slots of \(slots)")
        }
        let assigned = Array(free.prefix(requests.count))
        let D = model.config.hiddenSize, chunk = decoder.maxRows
        let last = FloatBuffer(count: max(1, requests.count) * D)   // each prompt's last hidden row
        for depth in Set(requests.map(\.depth)).sorted() {
            // The group's prompt tokens as (request, token index) rows, cut into chunks; a long
            // prompt continues in the next chunk, after its earlier rows.
            let group = requests.indices.filter { requests[$0].depth == depth }
            for i in group { decoder.cache.reset(slot: assigned[i]) }
            var rows: [(request: Int, position: Int)] = []
            for i in group { rows += requests[i].prompt.indices.map { (i, $0) } }
            for first in stride(from: 0, to: rows.count, by: chunk) {
                let piece = rows[first..<min(first + chunk, rows.count)]
                decoder.embed(piece.map { requests[$0.request].prompt[$0.position] }, into: hidden)
                var segments: [DecoderSegment] = []
                for row in piece {
                    if let lastSegment = segments.last, lastSegment.slot == assigned[row.request] {
                        segments[segments.count - 1] = DecoderSegment(slot: lastSegment.slot, rows: lastSegment.rows + 1)
                    } else {
                        segments.append(DecoderSegment(slot: assigned[row.request], rows: 1))
                    }
                }
                decoder.forward(hidden, segments: segments, layers: 0..<depth)
                for (r, row) in piece.enumerated() where row.position == requests[row.request].prompt.count - 1 {
                    (last.pointer + row.request * D).update(from: hidden.pointer + r * D, count: D)
                }
            }
        }
        for start in stride(from: 0, to: requests.count, by: chunk) {
            let n = min(chunk, requests.count - start)
            hidden.pointer.update(from: last.pointer + start * D, count: n * D)
            decoder.logits(hidden, rows: 0..<n, into: logits.pointer)
            for j in 0..<n {
                let i = start + j
                var sampler = TokenSampler.forPrompt(requests[i].sampling, call: 1, index: 0)
                let pending = sampler.choose(logits.pointer + j * V, vocab: V)
                sequences[assigned[i]] = Sequence(request: requests[i], sampler: sampler, pending: pending)
            }
        }
        return assigned
    }

    /// Ends a sequence now (its client went away); its slot is free for the next admit.
    public func cancel(slot: Int) { sequences[slot] = nil }

    /// Emits every running sequence's pending token (or ends it) and computes the next
    /// token of those that go on, in one pass over the layers.
    public func step() -> [Event] {
        var events: [Event] = []
        var going: [Int] = []
        for slot in sequences.keys.sorted() {
            var s = sequences[slot]!
            if s.request.stop.contains(s.pending) {
                events.append(Event(slot: slot, token: nil, finish: .stop))
                sequences[slot] = nil
                continue
            }
            s.produced += 1
            // Room for the emitted token and the one it predicts.
            let full = decoder.cache.length(slot: slot, layer: 0) + 1 >= capacity
            let ended = s.produced >= s.request.maxNewTokens || full
            events.append(Event(slot: slot, token: s.pending, finish: ended ? .length : nil))
            sequences[slot] = ended ? nil : s
            if !ended { going.append(slot) }
        }
        guard !going.isEmpty else { return events }
        // Deepest first: each depth's rows are a prefix of the rows still going at it.
        let rows = going.sorted {
            let a = sequences[$0]!.request.depth, b = sequences[$1]!.request.depth
            return a != b ? a > b : $0 < $1
        }
        decoder.embed(rows.map { sequences[$0]!.pending }, into: hidden)
        var done = 0
        for depth in Set(rows.map { sequences[$0]!.request.depth }).sorted() {
            let count = rows.prefix { sequences[$0]!.request.depth >= depth }.count
            decoder.forward(hidden, segments: rows.prefix(count).map { DecoderSegment(slot: $0, rows: 1) }, layers: done..<depth)
            done = depth
        }
        decoder.logits(hidden, rows: 0..<rows.count, into: logits.pointer)
        for (i, slot) in rows.enumerated() {
            sequences[slot]!.pending = sequences[slot]!.sampler.choose(logits.pointer + i * V, vocab: V)
        }
        return events
    }
}
