// Causal grouped-query attention over a fused q|k|v activation, tile by tile with an online
// softmax (flash-attention style): no [T, T] matrix is kept. The forward saves one
// log-sum-exp per query row; the backward recomputes each tile's probabilities from it.
// qkv rows: [q heads (H·Dh) | k heads (Hkv·Dh) | v heads (Hkv·Dh)], T rows per sequence;
// query head h reads key/value head h / (H/Hkv).
// A tile's products run in float32 (OpenBLAS's sgemm, one thread per tile) or in bf16 (CQuant's
// AVX512_BF16 tiles: bfloat16 operands, float32 accumulation, as autocast runs attention). In bf16
// every key tile's K and V are packed once per pass into the kernel's layout, and each query
// tile's q and dO once per query tile, so no tile product re-reads or re-rounds an operand
// another tile already prepared; the softmax, its statistics and the outputs stay float32. The
// softmax's exponentials run on CQuant's AVX-512/AVX2 exp (cq_exp_shifted_f32): in Swift's
// portable SIMD (SSE, no FMA) they cost two thirds of the bf16 tile products.
import CQuant
import Dispatch
import Foundation

struct CausalAttention {
    let heads: Int          // H
    let kvHeads: Int        // Hkv
    let headDim: Int        // Dh
    let sequenceLength: Int // T
    /// Query rows per tile: one work item is (sequence, head, query tile).
    let queryTile: Int
    /// Keys per tile: the scores of one tile, [queryTile, keyTile], stay in cache.
    let keyTile: Int
    /// The tile products' arithmetic: float32, or bf16 (bfloat16 operands, float32 accumulation).
    let precision: TrainingPrecision

    static let defaultQueryTile = 64, defaultKeyTile = 256

    init(heads: Int, kvHeads: Int, headDim: Int, sequenceLength: Int,
         queryTile: Int = defaultQueryTile, keyTile: Int = defaultKeyTile, precision: TrainingPrecision = .fp32) {
        precondition(queryTile > 0 && keyTile > 0 && keyTile % queryTile == 0,
                     "CausalAttention: the key tile must be a multiple of the query tile")
        self.heads = heads
        self.kvHeads = kvHeads
        self.headDim = headDim
        self.sequenceLength = sequenceLength
        self.queryTile = queryTile
        self.keyTile = keyTile
        self.precision = precision
    }

    var qkvWidth: Int { (heads + 2 * kvHeads) * headDim }
    var outWidth: Int { heads * headDim }
    var scale: Float { 1 / Float(headDim).squareRoot() }
    private var queryTiles: Int { (sequenceLength + queryTile - 1) / queryTile }

    /// Floats the forward saves for the backward: one log-sum-exp per (sequence, head, row).
    func savedCount(batch B: Int) -> Int { B * heads * sequenceLength }

    /// Scratch floats for forward and backward: two score tiles and the row statistics per
    /// worker, and for every worker but the first its own d key|value rows, [B·T, 2·Hkv·Dh]
    /// (query tiles of one group run on both workers; their dK, dV sum at the end); in bf16 also
    /// the packed operands (BF16Operands).
    func scratchCount(batch B: Int) -> Int {
        Int(Self.scratchFloats(kvHeads: kvHeads, headDim: headDim, batch: Double(B), sequenceLength: Double(sequenceLength),
                               queryTile: queryTile, keyTile: keyTile, precision: precision))
    }

    /// scratchCount in Double: memory checks run it on sizes from a config that may not fit an Int.
    static func scratchFloats(kvHeads: Int, headDim: Int, batch: Double, sequenceLength: Double,
                              queryTile: Int = defaultQueryTile, keyTile: Int = defaultKeyTile,
                              precision: TrainingPrecision = .fp32) -> Double {
        let workers = Double(Parallel.workers), tile = Double(queryTile), rows = batch * sequenceLength
        let floats = workers * (2 * tile * Double(keyTile) + 2 * tile) + (workers - 1) * rows * Double(2 * kvHeads * headDim)
        guard precision == .bf16 else { return floats }
        let layout = BF16Operands.Layout(headDim: headDim, queryTile: queryTile, keyTile: keyTile)
        let keyTiles = batch * Double(kvHeads) * (sequenceLength / Double(keyTile)).rounded(.up)
        let halves = Double(BF16Operands.keyTileLayouts) * keyTiles * Double(layout.keyTileSlot) + workers * Double(layout.perWorker)
        return floats + BF16Operands.alignment + (halves / 2).rounded(.up)
    }

    /// Floats of the float32 scratch (the bf16 operands follow it).
    private func floatScratchCount(batch B: Int) -> Int {
        Int(Self.scratchFloats(kvHeads: kvHeads, headDim: headDim, batch: Double(B), sequenceLength: Double(sequenceLength),
                               queryTile: queryTile, keyTile: keyTile))
    }

    private func bf16Operands(_ scratch: UnsafeMutablePointer<Float>, batch B: Int) -> BF16Operands? {
        guard precision == .bf16 else { return nil }
        return BF16Operands(scratch + floatScratchCount(batch: B), attention: self, batch: B)
    }

    /// Runs body(b, h, tile, worker) for every sequence, query head and query tile on all
    /// cores, each call with a single-threaded BLAS: the tile GEMMs are too small to share.
    /// Items are dealt out in a fixed order, so the result does not depend on timing.
    private func forEachTile(batch B: Int, _ body: (_ b: Int, _ h: Int, _ tile: Int, _ worker: Int) -> Void) {
        let tiles = queryTiles, items = B * heads * tiles
        let workers = min(Parallel.workers, items)
        let blasThreads = BLAS.threads
        if workers > 1 { BLAS.setThreads(1) }
        defer { if workers > 1 { BLAS.setThreads(blasThreads) } }
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            for item in stride(from: w, to: items, by: workers) {
                body(item / (heads * tiles), item / tiles % heads, item % tiles, w)
            }
        }
    }

    /// Query tile `tile`'s rows [r0, r0 + rows) see keys [0, r0 + rows); the key tiles start
    /// at multiples of keyTile, so every row has at least one visible key in each.
    private func rowRange(_ tile: Int) -> (r0: Int, rows: Int) {
        let r0 = tile * queryTile
        return (r0, min(queryTile, sequenceLength - r0))
    }

    /// out: [B·T, H·Dh]; logSumExp: [B, H, T], saved for the backward.
    func forward(qkv: UnsafePointer<Float>, logSumExp: UnsafeMutablePointer<Float>,
                 out: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>, batch B: Int) {
        let T = sequenceLength, Dh = headDim, W = qkvWidth, A = outWidth, Bk = keyTile
        let group = heads / kvHeads, perWorker = 2 * queryTile * keyTile + 2 * queryTile
        let packed = bf16Operands(scratch, batch: B)
        packed?.packKeyTiles(qkv, [.keysTransposed, .values])
        forEachTile(batch: B) { b, h, tile, worker in
            let (r0, rows) = rowRange(tile)
            let g = h / group, base = qkv + b * T * W
            let q = base + r0 * W + h * Dh, k = base + (heads + g) * Dh, v = base + (heads + kvHeads + g) * Dh
            let o = out + (b * T + r0) * A + h * Dh
            let s = scratch + worker * perWorker
            let runningMax = s + 2 * queryTile * keyTile, runningSum = runningMax + queryTile
            runningMax.update(repeating: -.infinity, count: rows)
            runningSum.update(repeating: 0, count: rows)
            let operands = packed?.worker(worker)
            operands?.packQueryRows(q, ld: W, rows: rows, pairs: false)
            var k0 = 0
            while k0 < r0 + rows {
                let width = min(Bk, r0 + rows - k0)
                // S = scale · Q Kᵀ over this key tile.
                if let operands, let packed {
                    packed.product(m: rows, n: width, k: Dh, alpha: scale, a: operands.queryRows, lda: operands.layout.ldHead,
                                   b: packed.keyTile(0, b, g, k0), ldb: packed.width(k0), beta: 0, c: s, ldc: Bk)
                } else {
                    BLAS.gemm(transposeA: false, transposeB: true, m: rows, n: width, k: Dh, alpha: scale,
                              a: q, lda: W, b: k + k0 * W, ldb: W, beta: 0, c: s, ldc: Bk)
                }
                for r in 0..<rows {
                    let row = s + r * Bk
                    let visible = min(width, r0 + r + 1 - k0)
                    let newMax = max(runningMax[r], maxValue(row, visible))
                    let rescale = Foundation.exp(runningMax[r] - newMax)
                    runningSum[r] = runningSum[r] * rescale + cq_exp_shifted_f32(row, Int64(visible), newMax)
                    (row + visible).update(repeating: 0, count: width - visible)
                    if k0 > 0 { scaleInPlace(o + r * A, Dh, by: rescale) }
                    runningMax[r] = newMax
                }
                // O = O·rescale + P V over this key tile (unnormalised until the last).
                if let operands, let packed {
                    let p = operands.rowsByKeys(s, rows: rows, keys: width)
                    packed.product(m: rows, n: Dh, k: width, a: p, lda: operands.layout.ldKeys,
                                   b: packed.keyTile(1, b, g, k0), ldb: Dh, beta: k0 > 0 ? 1 : 0, c: o, ldc: A)
                } else {
                    BLAS.gemm(transposeA: false, transposeB: false, m: rows, n: Dh, k: width,
                              a: s, lda: Bk, b: v + k0 * W, ldb: W, beta: k0 > 0 ? 1 : 0, c: o, ldc: A)
                }
                k0 += width
            }
            let lse = logSumExp + (b * heads + h) * T + r0
            for r in 0..<rows {
                scaleInPlace(o + r * A, Dh, by: 1 / runningSum[r])
                lse[r] = runningMax[r] + Foundation.log(runningSum[r])
            }
        }
    }

    /// dQKV is overwritten with the gradients of q (post-RoPE), k (post-RoPE) and v, given
    /// the forward's `out` and `logSumExp`.
    func backward(dOut: UnsafePointer<Float>, qkv: UnsafePointer<Float>, out: UnsafePointer<Float>,
                  logSumExp: UnsafePointer<Float>, dQKV: UnsafeMutablePointer<Float>,
                  scratch: UnsafeMutablePointer<Float>, batch B: Int) {
        let T = sequenceLength, Dh = headDim, W = qkvWidth, A = outWidth, Bk = keyTile
        let group = heads / kvHeads, perWorker = 2 * queryTile * keyTile + 2 * queryTile
        let kvWidth = 2 * kvHeads * Dh, workers = Parallel.workers
        let privateKV = scratch + workers * perWorker   // workers 1…: [B·T, 2·Hkv·Dh] each
        dQKV.update(repeating: 0, count: B * T * W)
        if workers > 1 { privateKV.update(repeating: 0, count: (workers - 1) * B * T * kvWidth) }
        let packed = bf16Operands(scratch, batch: B)
        packed?.packKeyTiles(qkv, [.keysTransposed, .valuesTransposed, .keys])
        forEachTile(batch: B) { b, h, tile, worker in
            let (r0, rows) = rowRange(tile)
            let g = h / group, base = qkv + b * T * W
            let q = base + r0 * W + h * Dh, k = base + (heads + g) * Dh, v = base + (heads + kvHeads + g) * Dh
            let dq = dQKV + (b * T + r0) * W + h * Dh
            // Worker 0 adds dK, dV into dQKV, the others into their own rows.
            let (dkv, ld) = worker == 0 ? (dQKV + b * T * W + heads * Dh, W)
                                        : (privateKV + ((worker - 1) * B + b) * T * kvWidth, kvWidth)
            let dk = dkv + g * Dh, dv = dkv + (kvHeads + g) * Dh
            let o = out + (b * T + r0) * A + h * Dh, dO = dOut + (b * T + r0) * A + h * Dh
            let lse = logSumExp + (b * heads + h) * T + r0
            let s = scratch + worker * perWorker, dS = s + queryTile * Bk
            let rowDot = dS + queryTile * Bk   // D_r = dO_r · O_r = Σ_j P_rj dP_rj
            for r in 0..<rows { rowDot[r] = dot(dO + r * A, o + r * A, Dh) }
            let operands = packed?.worker(worker)
            operands?.packQueryRows(q, ld: W, rows: rows, pairs: true)
            operands?.packOutputGradientRows(dO, ld: A, rows: rows)
            var k0 = 0
            while k0 < r0 + rows {
                let width = min(Bk, r0 + rows - k0)
                // P = exp(scale · Q Kᵀ − lse), 0 past the diagonal; dP = dO Vᵀ.
                if let operands, let packed {
                    packed.product(m: rows, n: width, k: Dh, alpha: scale, a: operands.queryRows, lda: operands.layout.ldHead,
                                   b: packed.keyTile(0, b, g, k0), ldb: packed.width(k0), beta: 0, c: s, ldc: Bk)
                    packed.product(m: rows, n: width, k: Dh, a: operands.outputGradientRows, lda: operands.layout.ldHead,
                                   b: packed.keyTile(1, b, g, k0), ldb: packed.width(k0), beta: 0, c: dS, ldc: Bk)
                } else {
                    BLAS.gemm(transposeA: false, transposeB: true, m: rows, n: width, k: Dh, alpha: scale,
                              a: q, lda: W, b: k + k0 * W, ldb: W, beta: 0, c: s, ldc: Bk)
                    BLAS.gemm(transposeA: false, transposeB: true, m: rows, n: width, k: Dh,
                              a: dO, lda: A, b: v + k0 * W, ldb: W, beta: 0, c: dS, ldc: Bk)
                }
                for r in 0..<rows {
                    let p = s + r * Bk, d = dS + r * Bk
                    let visible = min(width, r0 + r + 1 - k0)
                    _ = cq_exp_shifted_f32(p, Int64(visible), lse[r])
                    (p + visible).update(repeating: 0, count: width - visible)
                    // dS = P ⊙ (dP − D_r)
                    let c = Float8(repeating: rowDot[r])
                    var j = 0
                    while j + 8 <= width {
                        store8(load8(p + j) * (load8(d + j) - c), d + j)
                        j += 8
                    }
                    while j < width {
                        d[j] = p[j] * (d[j] - c[0])
                        j += 1
                    }
                }
                // dV += Pᵀ dO; dQ += scale · dS K; dK += scale · dSᵀ Q
                if let operands, let packed {
                    packed.product(m: width, n: Dh, k: rows, a: operands.keysByRows(s, rows: rows, keys: width),
                                   lda: operands.layout.ldRows, b: operands.outputGradientPairs, ldb: Dh, beta: 1, c: dv + k0 * ld, ldc: ld)
                    packed.product(m: rows, n: Dh, k: width, alpha: scale, a: operands.rowsByKeys(dS, rows: rows, keys: width),
                                   lda: operands.layout.ldKeys, b: packed.keyTile(2, b, g, k0), ldb: Dh, beta: 1, c: dq, ldc: W)
                    packed.product(m: width, n: Dh, k: rows, alpha: scale, a: operands.keysByRows(dS, rows: rows, keys: width),
                                   lda: operands.layout.ldRows, b: operands.queryPairs, ldb: Dh, beta: 1, c: dk + k0 * ld, ldc: ld)
                } else {
                    BLAS.gemm(transposeA: true, transposeB: false, m: width, n: Dh, k: rows,
                              a: s, lda: Bk, b: dO, ldb: A, beta: 1, c: dv + k0 * ld, ldc: ld)
                    BLAS.gemm(transposeA: false, transposeB: false, m: rows, n: Dh, k: width, alpha: scale,
                              a: dS, lda: Bk, b: k + k0 * W, ldb: W, beta: 1, c: dq, ldc: W)
                    BLAS.gemm(transposeA: true, transposeB: false, m: width, n: Dh, k: rows, alpha: scale,
                              a: dS, lda: Bk, b: q, ldb: W, beta: 1, c: dk + k0 * ld, ldc: ld)
                }
                k0 += width
            }
        }
        // The other workers' dK, dV rows join worker 0's, in worker order.
        guard workers > 1 else { return }
        Parallel.forEachRange(B * T, grain: 64) { range in
            for row in range {
                for w in 1..<workers {
                    addInPlace(dQKV + row * W + heads * Dh, privateKV + ((w - 1) * B * T + row) * kvWidth, kvWidth)
                }
            }
        }
    }
}

/// bf16 attention's operands in CQuant's tile layouts (cquant.h), in the scratch after the
/// float32 tiles: every (sequence, key/value head, key tile)'s keys and values packed as a
/// GEMM's B operand in up to three layouts, and per worker one query tile's q and dO (as A rows
/// and as B pairs) and one tile of P or dS rounded as an A operand, either way round.
struct BF16Operands {
    /// How a key tile is packed: Kᵀ or Vᵀ for the scores S = Q Kᵀ and dP = dO Vᵀ (k = Dh, n =
    /// keys), K or V for O += P V and dQ += dS K (k = keys, n = Dh).
    enum KeyTileLayout {
        case keysTransposed, valuesTransposed, keys, values
    }
    /// The layouts a backward packs (the forward two).
    static let keyTileLayouts = 3
    /// Floats kept free before the operands, to start them on a 128-byte boundary.
    static let alignment = 32.0

    struct Layout {
        let headDim, queryTile, keyTile: Int
        /// Row strides (even, as the kernel reads bfloat16 pairs) of A operands: a query tile's
        /// rows of Dh, rows of keys ([queries × keys]), and keys by query rows ([keys × queries]).
        var ldHead: Int { (headDim + 1) / 2 * 2 }
        var ldKeys: Int { (keyTile + 1) / 2 * 2 }
        var ldRows: Int { (queryTile + 1) / 2 * 2 }
        /// Elements of one packed key tile in its larger layout.
        var keyTileSlot: Int {
            Int(max(cq_bf16_packed_b_count(Int64(headDim), Int64(keyTile)), cq_bf16_packed_b_count(Int64(keyTile), Int64(headDim))))
        }
        /// A query tile's q or dO as a B operand (k = query rows, n = Dh).
        var queryPairsCount: Int { Int(cq_bf16_packed_b_count(Int64(queryTile), Int64(headDim))) }
        /// Elements per worker: q and dO as A rows and as B pairs, and the two tile operands.
        var perWorker: Int { 2 * queryTile * ldHead + 2 * queryPairsCount + queryTile * ldKeys + keyTile * ldRows }
    }

    /// One worker's operands.
    struct Worker {
        let layout: Layout
        let queryRows, outputGradientRows, queryPairs, outputGradientPairs: UnsafeMutablePointer<UInt16>
        private let tileRows, tileKeys: UnsafeMutablePointer<UInt16>

        init(_ base: UnsafeMutablePointer<UInt16>, layout: Layout) {
            self.layout = layout
            let rowsCount = layout.queryTile * layout.ldHead
            queryRows = base
            outputGradientRows = base + rowsCount
            queryPairs = base + 2 * rowsCount
            outputGradientPairs = queryPairs + layout.queryPairsCount
            tileRows = outputGradientPairs + layout.queryPairsCount
            tileKeys = tileRows + layout.queryTile * layout.ldKeys
        }

        /// The query tile's q rows as the A of S = Q Kᵀ, and for the backward (`pairs`) also as
        /// the B of dK += dSᵀ Q.
        func packQueryRows(_ q: UnsafePointer<Float>, ld: Int, rows: Int, pairs: Bool) {
            cq_bf16_pack_a(q, Int64(ld), 0, Int64(rows), Int64(layout.headDim), queryRows, Int64(layout.ldHead))
            if pairs { cq_bf16_pack_b(q, Int64(ld), 0, Int64(rows), Int64(layout.headDim), queryPairs) }
        }

        /// The query tile's dO rows, as the A of dP = dO Vᵀ and the B of dV += Pᵀ dO.
        func packOutputGradientRows(_ dO: UnsafePointer<Float>, ld: Int, rows: Int) {
            cq_bf16_pack_a(dO, Int64(ld), 0, Int64(rows), Int64(layout.headDim), outputGradientRows, Int64(layout.ldHead))
            cq_bf16_pack_b(dO, Int64(ld), 0, Int64(rows), Int64(layout.headDim), outputGradientPairs)
        }

        /// A [rows × keys] tile of P or dS (row stride keyTile) rounded as an A operand (ldKeys).
        func rowsByKeys(_ tile: UnsafePointer<Float>, rows: Int, keys: Int) -> UnsafePointer<UInt16> {
            cq_bf16_pack_a(tile, Int64(layout.keyTile), 0, Int64(rows), Int64(keys), tileRows, Int64(layout.ldKeys))
            return UnsafePointer(tileRows)
        }

        /// The same tile transposed, [keys × rows], as an A operand (ldRows).
        func keysByRows(_ tile: UnsafePointer<Float>, rows: Int, keys: Int) -> UnsafePointer<UInt16> {
            cq_bf16_pack_a(tile, Int64(layout.keyTile), 1, Int64(keys), Int64(rows), tileKeys, Int64(layout.ldRows))
            return UnsafePointer(tileKeys)
        }
    }

    let layout: Layout
    private let heads, kvHeads, sequenceLength, batch, keyTiles: Int
    private let keyTilePacks, workerOperands: UnsafeMutablePointer<UInt16>

    /// `scratch`: the floats after the float32 tiles (CausalAttention.scratchFloats counts them).
    init(_ scratch: UnsafeMutablePointer<Float>, attention a: CausalAttention, batch B: Int) {
        layout = Layout(headDim: a.headDim, queryTile: a.queryTile, keyTile: a.keyTile)
        heads = a.heads
        kvHeads = a.kvHeads
        sequenceLength = a.sequenceLength
        batch = B
        keyTiles = (a.sequenceLength + a.keyTile - 1) / a.keyTile
        let start = UnsafeMutableRawPointer(scratch + Int(Self.alignment))
        let aligned = UnsafeMutableRawPointer(bitPattern: UInt(bitPattern: start) & ~UInt(127))!
        let count = Self.keyTileLayouts * B * kvHeads * keyTiles * layout.keyTileSlot + Parallel.workers * layout.perWorker
        keyTilePacks = aligned.bindMemory(to: UInt16.self, capacity: count)
        workerOperands = keyTilePacks + Self.keyTileLayouts * B * kvHeads * keyTiles * layout.keyTileSlot
    }

    func worker(_ w: Int) -> Worker { Worker(workerOperands + w * layout.perWorker, layout: layout) }

    /// Keys in the key tile starting at k0 (the width it was packed for).
    func width(_ k0: Int) -> Int { min(layout.keyTile, sequenceLength - k0) }

    /// The key tile at k0 of sequence b and key/value head g, in the `index`th layout packed.
    func keyTile(_ index: Int, _ b: Int, _ g: Int, _ k0: Int) -> UnsafePointer<UInt16> {
        UnsafePointer(keyTilePacks + (((index * batch + b) * kvHeads + g) * keyTiles + k0 / layout.keyTile) * layout.keyTileSlot)
    }

    /// Packs every key tile of qkv in each of `layouts` (the `index` of keyTile), on all cores.
    func packKeyTiles(_ qkv: UnsafePointer<Float>, _ layouts: [KeyTileLayout]) {
        precondition(layouts.count <= Self.keyTileLayouts)
        let T = sequenceLength, Dh = layout.headDim, W = (heads + 2 * kvHeads) * Dh
        let items = layouts.count * batch * kvHeads * keyTiles
        let workers = min(Parallel.workers, items)
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            for item in stride(from: w, to: items, by: workers) {
                let tile = item % keyTiles, g = item / keyTiles % kvHeads, b = item / (keyTiles * kvHeads) % batch
                let index = item / (keyTiles * kvHeads * batch), k0 = tile * layout.keyTile, keys = width(k0)
                let rows = qkv + (b * T + k0) * W
                let destination = UnsafeMutablePointer(mutating: keyTile(index, b, g, k0))
                switch layouts[index] {
                case .keysTransposed:
                    cq_bf16_pack_b(rows + (heads + g) * Dh, Int64(W), 1, Int64(Dh), Int64(keys), destination)
                case .valuesTransposed:
                    cq_bf16_pack_b(rows + (heads + kvHeads + g) * Dh, Int64(W), 1, Int64(Dh), Int64(keys), destination)
                case .keys:
                    cq_bf16_pack_b(rows + (heads + g) * Dh, Int64(W), 0, Int64(keys), Int64(Dh), destination)
                case .values:
                    cq_bf16_pack_b(rows + (heads + kvHeads + g) * Dh, Int64(W), 0, Int64(keys), Int64(Dh), destination)
                }
            }
        }
    }

    /// C = alpha · A B + beta · C on the first k rows and n columns of a packed B (cq_bf16_gemm).
    func product(m: Int, n: Int, k: Int, alpha: Float = 1, a: UnsafePointer<UInt16>, lda: Int,
                 b: UnsafePointer<UInt16>, ldb: Int, beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        cq_bf16_gemm(Int64(m), Int64(n), Int64(k), alpha, a, Int64(lda), b, Int64(ldb), beta, c, Int64(ldc))
    }
}
