// Causal grouped-query attention over a fused q|k|v activation, tile by tile with an online
// softmax (flash-attention style): no [T, T] matrix is kept. The forward saves one
// log-sum-exp per query row; the backward recomputes each tile's probabilities from it.
// qkv rows: [q heads (H·Dh) | k heads (Hkv·Dh) | v heads (Hkv·Dh)], T rows per sequence;
// query head h reads key/value head h / (H/Hkv).
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

    static let defaultQueryTile = 64, defaultKeyTile = 256

    init(heads: Int, kvHeads: Int, headDim: Int, sequenceLength: Int,
         queryTile: Int = defaultQueryTile, keyTile: Int = defaultKeyTile) {
        precondition(queryTile > 0 && keyTile > 0 && keyTile % queryTile == 0,
                     "CausalAttention: the key tile must be a multiple of the query tile")
        self.heads = heads
        self.kvHeads = kvHeads
        self.headDim = headDim
        self.sequenceLength = sequenceLength
        self.queryTile = queryTile
        self.keyTile = keyTile
    }

    var qkvWidth: Int { (heads + 2 * kvHeads) * headDim }
    var outWidth: Int { heads * headDim }
    var scale: Float { 1 / Float(headDim).squareRoot() }
    private var queryTiles: Int { (sequenceLength + queryTile - 1) / queryTile }

    /// Floats the forward saves for the backward: one log-sum-exp per (sequence, head, row).
    func savedCount(batch B: Int) -> Int { B * heads * sequenceLength }

    /// Scratch floats for forward and backward: two score tiles and the row statistics per
    /// worker, and for every worker but the first its own d key|value rows, [B·T, 2·Hkv·Dh]
    /// (query tiles of one group run on both workers; their dK, dV sum at the end).
    func scratchCount(batch B: Int) -> Int {
        Int(Self.scratchFloats(kvHeads: kvHeads, headDim: headDim, rows: Double(B * sequenceLength),
                               queryTile: queryTile, keyTile: keyTile))
    }

    /// scratchCount for rows = B·T tokens, in Double: memory checks run it on sizes from a
    /// config that may not fit an Int.
    static func scratchFloats(kvHeads: Int, headDim: Int, rows: Double,
                              queryTile: Int = defaultQueryTile, keyTile: Int = defaultKeyTile) -> Double {
        let workers = Double(Parallel.workers), tile = Double(queryTile)
        return workers * (2 * tile * Double(keyTile) + 2 * tile) + (workers - 1) * rows * Double(2 * kvHeads * headDim)
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
        forEachTile(batch: B) { b, h, tile, worker in
            let (r0, rows) = rowRange(tile)
            let g = h / group, base = qkv + b * T * W
            let q = base + r0 * W + h * Dh, k = base + (heads + g) * Dh, v = base + (heads + kvHeads + g) * Dh
            let o = out + (b * T + r0) * A + h * Dh
            let s = scratch + worker * perWorker
            let runningMax = s + 2 * queryTile * keyTile, runningSum = runningMax + queryTile
            runningMax.update(repeating: -.infinity, count: rows)
            runningSum.update(repeating: 0, count: rows)
            var k0 = 0
            while k0 < r0 + rows {
                let width = min(Bk, r0 + rows - k0)
                // S = scale · Q Kᵀ over this key tile.
                BLAS.gemm(transposeA: false, transposeB: true, m: rows, n: width, k: Dh, alpha: scale,
                          a: q, lda: W, b: k + k0 * W, ldb: W, beta: 0, c: s, ldc: Bk)
                for r in 0..<rows {
                    let row = s + r * Bk
                    let visible = min(width, r0 + r + 1 - k0)
                    let newMax = max(runningMax[r], maxValue(row, visible))
                    let rescale = Foundation.exp(runningMax[r] - newMax)
                    runningSum[r] = runningSum[r] * rescale + expShiftedInPlace(row, visible, shift: newMax)
                    (row + visible).update(repeating: 0, count: width - visible)
                    if k0 > 0 { scaleInPlace(o + r * A, Dh, by: rescale) }
                    runningMax[r] = newMax
                }
                // O = O·rescale + P V over this key tile (unnormalised until the last).
                BLAS.gemm(transposeA: false, transposeB: false, m: rows, n: Dh, k: width,
                          a: s, lda: Bk, b: v + k0 * W, ldb: W, beta: k0 > 0 ? 1 : 0, c: o, ldc: A)
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
            var k0 = 0
            while k0 < r0 + rows {
                let width = min(Bk, r0 + rows - k0)
                // P = exp(scale · Q Kᵀ − lse), 0 past the diagonal; dP = dO Vᵀ.
                BLAS.gemm(transposeA: false, transposeB: true, m: rows, n: width, k: Dh, alpha: scale,
                          a: q, lda: W, b: k + k0 * W, ldb: W, beta: 0, c: s, ldc: Bk)
                BLAS.gemm(transposeA: false, transposeB: true, m: rows, n: width, k: Dh,
                          a: dO, lda: A, b: v + k0 * W, ldb: W, beta: 0, c: dS, ldc: Bk)
                for r in 0..<rows {
                    let p = s + r * Bk, d = dS + r * Bk
                    let visible = min(width, r0 + r + 1 - k0)
                    _ = expShiftedInPlace(p, visible, shift: lse[r])
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
                BLAS.gemm(transposeA: true, transposeB: false, m: width, n: Dh, k: rows,
                          a: s, lda: Bk, b: dO, ldb: A, beta: 1, c: dv + k0 * ld, ldc: ld)
                BLAS.gemm(transposeA: false, transposeB: false, m: rows, n: Dh, k: width, alpha: scale,
                          a: dS, lda: Bk, b: k + k0 * W, ldb: W, beta: 1, c: dq, ldc: W)
                BLAS.gemm(transposeA: true, transposeB: false, m: width, n: Dh, k: rows, alpha: scale,
                          a: dS, lda: Bk, b: q, ldb: W, beta: 1, c: dk + k0 * ld, ldc: ld)
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
