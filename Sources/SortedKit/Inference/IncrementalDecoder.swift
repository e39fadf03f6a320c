// IncrementalDecoder: the inference path. It runs any range of layers over new token rows of several
// sequences at once, reading and extending a KV cache, and keeps no activations: memory is
// the weights, the cache and one layer of scratch for at most `maxRows` rows. A prompt is
// prefilled in chunks of up to maxRows rows (batched GEMMs); decoding feeds one row per
// sequence. The layer arithmetic is the training forward's (same kernels, same order);
// only attention differs, reading keys and values from the cache.
import Dispatch

/// New rows of one sequence slot, consecutive in the hidden buffer. Their positions start
/// at what the cache already holds for the slot at the layer being run.
public struct DecoderSegment: Sendable, Equatable {
    public let slot: Int
    public let rows: Int
    public init(slot: Int, rows: Int) {
        self.slot = slot
        self.rows = rows
    }
}

public final class IncrementalDecoder {
    /// The weights it multiplies, in their stored format.
    public let model: InferenceModel
    public let cache: KVCache
    /// Most rows one call may carry.
    public let maxRows: Int
    private var config: LlamaConfig { model.config }
    private let rope: RotaryEmbedding

    // One layer of scratch for maxRows rows.
    private let normed: FloatBuffer        // [R, D]
    private let inverseRMS: FloatBuffer    // [R]
    private let qkv: FloatBuffer           // [R, (H+2Hkv)·Dh]
    private let attended: FloatBuffer      // [R, H·Dh]
    private let gateUp: FloatBuffer        // [R, 2F]
    private let activated: FloatBuffer     // [R, F]
    private let scores: FloatBuffer        // [workers, R, capacity]

    /// slots: sequences decoded together; capacity: positions per sequence (prompt and
    /// continuation); cacheLayers: the deepest layer any call will run (a depth-k model
    /// needs only k layers of cache).
    public init(model: InferenceModel, slots: Int, capacity: Int, maxRows: Int = 256, cacheLayers: Int? = nil) throws {
        let c = model.config
        let layers = cacheLayers ?? c.numHiddenLayers
        guard layers >= 1 && layers <= c.numHiddenLayers else {
            throw ConfigError(key: "depth", "\(layers) is outside 1...\(c.numHiddenLayers)")
        }
        guard slots >= 1 && maxRows >= 1 else { throw ConfigError(key: "batch_size", "must be positive") }
        guard capacity >= 1 && capacity <= c.maxPositionEmbeddings else {
            throw ConfigError(key: "max_position_embeddings",
                              "\(capacity) positions asked, the model has \(c.maxPositionEmbeddings)")
        }
        self.model = model
        self.maxRows = maxRows
        cache = KVCache(slots: slots, layers: layers, kvHeads: c.numKeyValueHeads, headDim: c.headDim, capacity: capacity)
        rope = RotaryEmbedding(headDim: c.headDim, maxLength: capacity, theta: c.ropeTheta)
        let D = c.hiddenSize, F = c.intermediateSize
        normed = FloatBuffer(count: maxRows * D)
        inverseRMS = FloatBuffer(count: maxRows)
        qkv = FloatBuffer(count: maxRows * c.qkvWidth)
        attended = FloatBuffer(count: maxRows * c.queryWidth)
        gateUp = FloatBuffer(count: maxRows * 2 * F)
        activated = FloatBuffer(count: maxRows * F)
        scores = FloatBuffer(count: Parallel.workers * maxRows * capacity)
    }

    /// A hidden-state buffer of `rows` rows of D: what forward reads and writes.
    public func makeHidden(rows: Int) -> FloatBuffer { FloatBuffer(count: rows * config.hiddenSize) }

    /// hidden[row + i] = embedding of tokens[i].
    public func embed(_ tokens: [Int32], into hidden: FloatBuffer, at row: Int = 0) {
        let D = config.hiddenSize
        precondition((row + tokens.count) * D <= hidden.count, "IncrementalDecoder.embed: hidden buffer too small")
        for (i, token) in tokens.enumerated() {
            precondition(token >= 0 && Int(token) < config.vocabSize, "IncrementalDecoder.embed: token \(token) outside the vocabulary")
            model.embedding.dequantize(row: Int(token), into: hidden.pointer + (row + i) * D)
        }
    }

    /// Runs `layers` over the rows of `segments` (stacked in order from row `firstRow` of
    /// hidden), in place: hidden holds each row's residual stream after the last layer of
    /// the range. Each layer appends the rows' keys and values to its cache.
    public func forward(_ hidden: FloatBuffer, at firstRow: Int = 0, segments: [DecoderSegment], layers: Range<Int>) {
        let R = checkRows(hidden, firstRow, segments, layers)
        let x = hidden.pointer + firstRow * config.hiddenSize
        for l in layers { layerForward(l, hidden: x, rows: R, segments: segments) }
    }

    /// CALM's state propagation: rows that exited before `layers` still give those layers
    /// keys and values, computed from the exited hidden state (which is not changed), so
    /// later tokens attend to a full cache.
    public func propagate(_ hidden: FloatBuffer, at firstRow: Int = 0, segments: [DecoderSegment], layers: Range<Int>) {
        let R = checkRows(hidden, firstRow, segments, layers)
        let c = config, D = c.hiddenSize, A = c.queryWidth, KV = c.keyValueWidth
        let x = hidden.pointer + firstRow * D
        for l in layers {
            RMSNorm.forward(x: x, weight: model.layers[l].inputNorm, y: normed.pointer, inverseRMS: inverseRMS.pointer,
                            rows: R, dim: D, eps: Float(c.rmsNormEps))
            // k|v rows follow the q rows in the fused weight; the output rows are k then v.
            model.layers[l].qkv.multiply(normed.pointer, count: R, rows: A..<(A + 2 * KV), into: qkv.pointer,
                                           ldy: 2 * KV, accumulate: false)
            var row = 0
            for s in segments {
                let start = cache.length(slot: s.slot, layer: l)
                rope.apply(qkv.pointer + row * 2 * KV, rows: s.rows, heads: c.numKeyValueHeads, stride: 2 * KV,
                           inverse: false, firstPosition: start)
                store(keys: qkv.pointer + row * 2 * KV, values: qkv.pointer + row * 2 * KV + KV, stride: 2 * KV,
                      segment: s, layer: l, start: start)
                cache.advance(slot: s.slot, layer: l, by: s.rows)
                row += s.rows
            }
        }
    }

    /// logits[i] = head(finalNorm(hidden[rows[i]])): [rows.count, V] into `logits`.
    public func logits(_ hidden: FloatBuffer, rows: Range<Int>, into logits: UnsafeMutablePointer<Float>) {
        normalizeFinal(hidden, rows: rows)
        model.head.multiply(normed.pointer, count: rows.count, into: logits, ldy: config.vocabSize, accumulate: false)
    }

    /// The same over another head: `head` [n, D] (e.g. a shortlist of the head's rows), so
    /// logits [rows.count, n].
    public func logits(_ hidden: FloatBuffer, rows: Range<Int>, head: UnsafePointer<Float>, vocab n: Int,
                       into logits: UnsafeMutablePointer<Float>) {
        normalizeFinal(hidden, rows: rows)
        BLAS.gemm(transposeA: false, transposeB: true, m: rows.count, n: n, k: config.hiddenSize, a: normed.pointer,
                  lda: config.hiddenSize, b: head, ldb: config.hiddenSize, beta: 0, c: logits, ldc: n)
    }

    /// normed[0..<rows.count] = finalNorm(hidden[rows]).
    private func normalizeFinal(_ hidden: FloatBuffer, rows: Range<Int>) {
        let c = config, D = c.hiddenSize
        precondition(rows.count <= maxRows && rows.upperBound * D <= hidden.count, "IncrementalDecoder.logits: rows out of range")
        ExitHead.normalize(hidden: hidden.pointer + rows.lowerBound * D, rows: rows.count,
                           normWeight: model.finalNorm, eps: Float(c.rmsNormEps),
                           normed: normed.pointer, inverseRMS: inverseRMS.pointer, dim: D)
    }

    private func checkRows(_ hidden: FloatBuffer, _ firstRow: Int, _ segments: [DecoderSegment], _ layers: Range<Int>) -> Int {
        let R = segments.reduce(0) { $0 + $1.rows }
        precondition(R <= maxRows && (firstRow + R) * config.hiddenSize <= hidden.count,
                     "IncrementalDecoder: more rows than maxRows or the buffer")
        precondition(layers.lowerBound >= 0 && layers.upperBound <= cache.layers, "IncrementalDecoder: layers beyond the cache")
        for s in segments {
            precondition(s.slot >= 0 && s.slot < cache.slots, "IncrementalDecoder: no slot \(s.slot)")
            for l in layers {
                precondition(cache.length(slot: s.slot, layer: l) + s.rows <= cache.capacity,
                             "IncrementalDecoder: slot \(s.slot) is full (\(cache.capacity) positions)")
            }
        }
        return R
    }

    private func store(keys k: UnsafePointer<Float>, values v: UnsafePointer<Float>, stride: Int,
                       segment s: DecoderSegment, layer l: Int, start: Int) {
        let Dh = config.headDim
        for g in 0..<config.numKeyValueHeads {
            let kc = cache.keyBase(slot: s.slot, layer: l, head: g) + start * Dh
            let vc = cache.valueBase(slot: s.slot, layer: l, head: g) + start * Dh
            for i in 0..<s.rows {
                (kc + i * Dh).update(from: k + i * stride + g * Dh, count: Dh)
                (vc + i * Dh).update(from: v + i * stride + g * Dh, count: Dh)
            }
        }
    }

    // MARK: - One decoder layer

    private func layerForward(_ l: Int, hidden x: UnsafeMutablePointer<Float>, rows R: Int, segments: [DecoderSegment]) {
        let c = config, D = c.hiddenSize, F = c.intermediateSize, W = c.qkvWidth, A = c.queryWidth
        let H = c.numAttentionHeads, Hkv = c.numKeyValueHeads, Dh = c.headDim
        let matrices = model.layers[l]
        let eps = Float(c.rmsNormEps)

        RMSNorm.forward(x: x, weight: matrices.inputNorm, y: normed.pointer, inverseRMS: inverseRMS.pointer,
                        rows: R, dim: D, eps: eps)
        matrices.qkv.multiply(normed.pointer, count: R, into: qkv.pointer, ldy: W, accumulate: false)
        var starts: [Int] = []
        var row = 0
        for s in segments {
            let start = cache.length(slot: s.slot, layer: l)
            starts.append(start)
            let base = qkv.pointer + row * W
            // q and k heads are adjacent in a row: rotate H + Hkv heads at once.
            rope.apply(base, rows: s.rows, heads: H + Hkv, stride: W, inverse: false, firstPosition: start)
            store(keys: base + A, values: base + A + Hkv * Dh, stride: W, segment: s, layer: l, start: start)
            row += s.rows
        }
        attention(layer: l, segments: segments, starts: starts)
        for s in segments { cache.advance(slot: s.slot, layer: l, by: s.rows) }

        matrices.output.multiply(attended.pointer, count: R, into: x, ldy: D, accumulate: true)
        RMSNorm.forward(x: x, weight: matrices.postNorm, y: normed.pointer, inverseRMS: inverseRMS.pointer,
                        rows: R, dim: D, eps: eps)
        matrices.gateUp.multiply(normed.pointer, count: R, into: gateUp.pointer, ldy: 2 * F, accumulate: false)
        SwiGLU.forward(gateUp: gateUp.pointer, act: activated.pointer, rows: R, width: F)
        matrices.down.multiply(activated.pointer, count: R, into: x, ldy: D, accumulate: true)
    }

    /// Most rows of one segment whose attention takes the dot-product path.
    static let dotProductRows = 65

    /// attended[row, h] = softmax(q·Kᵀ/√Dh) V over the cached positions up to the row's own,
    /// for every query head h, reading key/value head h / (H/Hkv).
    private func attention(layer l: Int, segments: [DecoderSegment], starts: [Int]) {
        let c = config, H = c.numAttentionHeads, Dh = c.headDim, W = c.qkvWidth, A = c.queryWidth
        let group = H / c.numKeyValueHeads, scale = 1 / Float(Dh).squareRoot()
        var firstRow: [Int] = []
        var row = 0
        for s in segments { firstRow.append(row); row += s.rows }
        // Up to the rows a speculative verification carries (64 drafts + 1): dot products
        // against the cache, so a row attends exactly as it would decoded alone and greedy
        // speculation reproduces full-depth greedy decoding. More (a prompt chunk): two GEMMs
        // per head, as the training forward.
        let useGEMM = segments.contains { $0.rows > Self.dotProductRows }
        let items = segments.count * H
        // Below ~64k multiply-adds a second thread costs more to wake than it saves (small
        // models, short caches: what a draft step is).
        let work = zip(segments, starts).reduce(0) { $0 + $1.0.rows * ($1.1 + $1.0.rows) } * H * Dh
        let workers = work < 1 << 16 ? 1 : min(Parallel.workers, items)
        let blasThreads = BLAS.threads
        if useGEMM && workers > 1 { BLAS.setThreads(1) }
        defer { if useGEMM && workers > 1 { BLAS.setThreads(blasThreads) } }
        let capacity = cache.capacity
        let body: (Int) -> Void = { w in
            let scratch = self.scores.pointer + w * self.maxRows * capacity
            for item in stride(from: w, to: items, by: workers) {
                let si = item / H, h = item % H, g = h / group
                let s = segments[si], start = starts[si], n = s.rows, length = start + n
                let q = self.qkv.pointer + firstRow[si] * W + h * Dh
                let out = self.attended.pointer + firstRow[si] * A + h * Dh
                let k = self.cache.keyBase(slot: s.slot, layer: l, head: g)
                let v = self.cache.valueBase(slot: s.slot, layer: l, head: g)
                if n > Self.dotProductRows {
                    BLAS.gemm(transposeA: false, transposeB: true, m: n, n: length, k: Dh, alpha: scale,
                              a: q, lda: W, b: k, ldb: Dh, beta: 0, c: scratch, ldc: length)
                    for i in 0..<n {
                        let p = scratch + i * length, visible = start + i + 1
                        let m = maxValue(p, visible)
                        let sum = expShiftedInPlace(p, visible, shift: m)
                        scaleInPlace(p, visible, by: 1 / sum)
                        (p + visible).update(repeating: 0, count: length - visible)
                    }
                    BLAS.gemm(transposeA: false, transposeB: false, m: n, n: Dh, k: length,
                              a: scratch, lda: length, b: v, ldb: Dh, beta: 0, c: out, ldc: A)
                } else {
                    for i in 0..<n {
                        let qi = q + i * W, oi = out + i * A, visible = start + i + 1
                        for j in 0..<visible { scratch[j] = dot(qi, k + j * Dh, Dh) * scale }
                        let m = maxValue(scratch, visible)
                        let sum = expShiftedInPlace(scratch, visible, shift: m)
                        oi.update(repeating: 0, count: Dh)
                        let inv = 1 / sum
                        for j in 0..<visible { axpy(oi, scratch[j] * inv, v + j * Dh, Dh) }
                    }
                }
            }
        }
        if workers > 1 { DispatchQueue.concurrentPerform(iterations: workers, execute: body) } else { body(0) }
    }
}
