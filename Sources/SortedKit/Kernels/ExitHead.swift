// ExitHead: the tail every exit shares — the final RMSNorm, then the LM head. One
// implementation for the fused training loss, evaluation and generation.

enum ExitHead {
    /// normed[r] = RMSNorm(hidden[r]) for `rows` rows of D; inverseRMS: [rows], saved for a backward.
    @inline(__always)
    static func normalize(hidden: UnsafePointer<Float>, rows: Int, normWeight: UnsafePointer<Float>, eps: Float,
                          normed: UnsafeMutablePointer<Float>, inverseRMS: UnsafeMutablePointer<Float>, dim D: Int) {
        RMSNorm.forward(x: hidden, weight: normWeight, y: normed, inverseRMS: inverseRMS, rows: rows, dim: D, eps: eps)
    }

    /// logits[rows, V] = normed[rows, D] · headᵀ (head: [V, D], as HF's lm_head stores it).
    @inline(__always)
    static func logits(normed: UnsafePointer<Float>, rows: Int, headWeight: UnsafePointer<Float>,
                       vocab V: Int, dim D: Int, matmul: MatrixMultiply, logits: UnsafeMutablePointer<Float>) {
        matmul.gemm(transposeA: false, transposeB: true, m: rows, n: V, k: D, a: normed, lda: D,
                  b: headWeight, ldb: D, beta: 0, c: logits, ldc: V)
    }
}
