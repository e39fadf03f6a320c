// BLAS: the one file that calls OpenBLAS. Row-major single-precision GEMM and the
// library's thread and kernel queries.
import CBLAS

public enum BLAS {
    /// C[m,n] = alpha · op(A)[m,k] · op(B)[k,n] + beta · C, all row-major.
    @inline(__always)
    public static func gemm(
        transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
        alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int,
        beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        if m == 0 || n == 0 { return }
        if m == 1 && !transposeA && transposeB {
            // One row times Wᵀ (batch-1 decoding): sgemv streams W once, sgemm packs it first.
            cblas_sgemv(CblasRowMajor, CblasNoTrans, blasint(n), blasint(k), alpha, b, blasint(ldb),
                        a, 1, beta, c, 1)
            return
        }
        cblas_sgemm(CblasRowMajor,
                    transposeA ? CblasTrans : CblasNoTrans,
                    transposeB ? CblasTrans : CblasNoTrans,
                    blasint(m), blasint(n), blasint(k), alpha, a, blasint(lda),
                    b, blasint(ldb), beta, c, blasint(ldc))
    }

    /// The kernel OpenBLAS selected at load (e.g. "Haswell"); it depends on OPENBLAS_CORETYPE.
    public static var coreName: String {
        guard let name = openblas_get_corename() else { return "unknown" }
        return String(cString: name)
    }

    public static var threads: Int { Int(openblas_get_num_threads()) }

    public static func setThreads(_ n: Int) { openblas_set_num_threads(Int32(n)) }
}
