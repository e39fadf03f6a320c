// Causal grouped-query attention over a fused q|k|v activation.
// qkv rows: [q heads (H·Dh) | k heads (Hkv·Dh) | v heads (Hkv·Dh)], T rows per sequence;
// query head h reads key/value head h / (H/Hkv).
import Dispatch

struct CausalAttention {
    let heads: Int          // H
    let kvHeads: Int        // Hkv
    let headDim: Int        // Dh
    let sequenceLength: Int // T

    var qkvWidth: Int { (heads + 2 * kvHeads) * headDim }
    var outWidth: Int { heads * headDim }
    var scale: Float { 1 / Float(headDim).squareRoot() }

    /// Runs body(b, g) for every sequence b and key/value head g on all cores, each call
    /// with a single-threaded BLAS: the per-head GEMMs are too small to share. A (b, g)
    /// item owns every query head of its group, so no two threads write the same dK/dV.
    private func forEachGroup(batch B: Int, _ body: (_ b: Int, _ g: Int, _ worker: Int) -> Void) {
        let items = B * kvHeads
        let workers = min(Parallel.workers, items)
        let blasThreads = BLAS.threads
        if workers > 1 { BLAS.setThreads(1) }
        defer { if workers > 1 { BLAS.setThreads(blasThreads) } }
        DispatchQueue.concurrentPerform(iterations: workers) { w in
            for item in stride(from: w, to: items, by: workers) { body(item / kvHeads, item % kvHeads, w) }
        }
    }

    /// Scratch floats the backward needs: one [T, T] block per worker.
    var backwardScratchCount: Int { Parallel.workers * sequenceLength * sequenceLength }

    /// probs: [B, H, T, T] saved for the backward; out: [B·T, H·Dh].
    func forward(qkv: UnsafePointer<Float>, probs: UnsafeMutablePointer<Float>,
                 out: UnsafeMutablePointer<Float>, batch B: Int) {
        let T = sequenceLength, Dh = headDim, W = qkvWidth, group = heads / kvHeads
        forEachGroup(batch: B) { b, g, _ in
            let base = qkv + b * T * W
            for h in (g * group)..<((g + 1) * group) {
                let q = base + h * Dh
                let k = base + (heads + g) * Dh
                let v = base + (heads + kvHeads + g) * Dh
                let p = probs + (b * heads + h) * T * T
                // S = scale · Q Kᵀ, then a causal softmax per row; masked entries are 0.
                BLAS.gemm(transposeA: false, transposeB: true, m: T, n: T, k: Dh, alpha: scale,
                          a: q, lda: W, b: k, ldb: W, beta: 0, c: p, ldc: T)
                for i in 0..<T {
                    let row = p + i * T
                    let m = maxValue(row, i + 1)
                    let sum = expShiftedInPlace(row, i + 1, shift: m)
                    scaleInPlace(row, i + 1, by: 1 / sum)
                    (row + i + 1).update(repeating: 0, count: T - i - 1)
                }
                BLAS.gemm(transposeA: false, transposeB: false, m: T, n: Dh, k: T,
                          a: p, lda: T, b: v, ldb: W, beta: 0,
                          c: out + b * T * outWidth + h * Dh, ldc: outWidth)
            }
        }
    }

    /// dQKV is overwritten with the gradients of q (post-RoPE), k (post-RoPE) and v.
    /// scratch: backwardScratchCount floats.
    func backward(dOut: UnsafePointer<Float>, qkv: UnsafePointer<Float>, probs: UnsafePointer<Float>,
                  dQKV: UnsafeMutablePointer<Float>, scratch: UnsafeMutablePointer<Float>, batch B: Int) {
        let T = sequenceLength, Dh = headDim, W = qkvWidth, group = heads / kvHeads
        dQKV.update(repeating: 0, count: B * T * W)
        forEachGroup(batch: B) { b, g, worker in
            let base = qkv + b * T * W, dBase = dQKV + b * T * W
            let dP = scratch + worker * T * T
            for h in (g * group)..<((g + 1) * group) {
                let q = base + h * Dh, k = base + (heads + g) * Dh, v = base + (heads + kvHeads + g) * Dh
                let dq = dBase + h * Dh, dk = dBase + (heads + g) * Dh, dv = dBase + (heads + kvHeads + g) * Dh
                let p = probs + (b * heads + h) * T * T
                let dO = dOut + b * T * outWidth + h * Dh
                // dP = dO Vᵀ; dV += Pᵀ dO
                BLAS.gemm(transposeA: false, transposeB: true, m: T, n: T, k: Dh,
                          a: dO, lda: outWidth, b: v, ldb: W, beta: 0, c: dP, ldc: T)
                BLAS.gemm(transposeA: true, transposeB: false, m: T, n: Dh, k: T,
                          a: p, lda: T, b: dO, ldb: outWidth, beta: 1, c: dv, ldc: W)
                // dS = P ⊙ (dP − rowsum(P ⊙ dP)); entries above the diagonal stay 0.
                for i in 0..<T {
                    let pr = p + i * T, dr = dP + i * T
                    let n = i + 1
                    let c = Float8(repeating: dot(pr, dr, n))
                    var j = 0
                    while j + 8 <= n {
                        store8(load8(pr + j) * (load8(dr + j) - c), dr + j)
                        j += 8
                    }
                    while j < n {
                        dr[j] = pr[j] * (dr[j] - c[0])
                        j += 1
                    }
                    (dr + n).update(repeating: 0, count: T - n)
                }
                // dQ = scale · dS K; dK += scale · dSᵀ Q
                BLAS.gemm(transposeA: false, transposeB: false, m: T, n: Dh, k: T, alpha: scale,
                          a: dP, lda: T, b: k, ldb: W, beta: 0, c: dq, ldc: W)
                BLAS.gemm(transposeA: true, transposeB: false, m: T, n: Dh, k: T, alpha: scale,
                          a: dP, lda: T, b: q, ldb: W, beta: 1, c: dk, ldc: W)
            }
        }
    }
}
