// LinearWeight: the seam between the inference path and how a weight matrix is stored. The
// decoder asks a weight [rows, columns] (HF's [out, in]) to multiply activation rows; each
// storage format (F32 here, the GGUF block formats in their own files) brings its kernels.
import CQuant
import Dispatch

public enum WeightFormat: String, CaseIterable, Sendable {
    case f32
    case q8_0
    case q4_0
    case q4_1
}

public protocol LinearWeight: AnyObject, Sendable {
    var format: WeightFormat { get }
    var rows: Int { get }
    var columns: Int { get }
    /// Bytes of the stored matrix: what one pass over it reads.
    var bytes: Int { get }
    /// y[i·ldy + r] (= or +=) Σ_c x[i·columns + c] · W[rows.lowerBound + r, c], for the n
    /// activation rows i and the weight rows r of `rows`.
    func multiply(_ x: UnsafePointer<Float>, count n: Int, rows: Range<Int>, into y: UnsafeMutablePointer<Float>,
                  ldy: Int, accumulate: Bool)
    /// Row r as float32 (an embedding lookup; what the kernels multiply by, up to the
    /// activations' rounding).
    func dequantize(row r: Int, into out: UnsafeMutablePointer<Float>)
    /// Up to how many activation rows a multiply gives each row the bits it would get alone.
    var exactRows: Int { get }
}

extension LinearWeight {
    public var exactRows: Int { .max }

    public func multiply(_ x: UnsafePointer<Float>, count n: Int, into y: UnsafeMutablePointer<Float>, ldy: Int, accumulate: Bool) {
        multiply(x, count: n, rows: 0..<rows, into: y, ldy: ldy, accumulate: accumulate)
    }
}

/// A float32 matrix inside a buffer someone else owns (the model's parameters, or a buffer of
/// its own): CQuant's cq_linear_f32 for a few activation rows, OpenBLAS sgemm for more.
public final class F32Weight: LinearWeight, @unchecked Sendable {
    public var format: WeightFormat { .f32 }
    public let rows: Int
    public let columns: Int
    let data: UnsafePointer<Float>
    let owner: AnyObject

    /// data: [rows, columns] row-major, kept alive by `owner`.
    public init(_ data: UnsafePointer<Float>, rows: Int, columns: Int, owner: AnyObject) {
        self.data = data
        self.rows = rows
        self.columns = columns
        self.owner = owner
    }

    public var bytes: Int { rows * columns * 4 }

    public func dequantize(row r: Int, into out: UnsafeMutablePointer<Float>) {
        out.update(from: data + r * columns, count: columns)
    }

    /// Up to this many activation rows, cq_linear_f32 (streams W once, in place); sgemm packs W
    /// first and, below ~16 rows, reads it at about half the speed.
    static let skinnyRows = 16

    public var exactRows: Int { Self.skinnyRows }

    /// Rows up to `skinnyRows` are exact across n and row splits (cq_linear_f32's contract), so a
    /// speculative verification reproduces decoding its rows one at a time.
    public func multiply(_ x: UnsafePointer<Float>, count n: Int, rows range: Range<Int>, into y: UnsafeMutablePointer<Float>,
                         ldy: Int, accumulate: Bool) {
        guard n > 0, !range.isEmpty else { return }
        if n <= Self.skinnyRows {
            precondition(range.lowerBound >= 0 && range.upperBound <= rows, "rows \(range) outside 0..<\(rows)")
            _ = CQuantPool.configured
            cq_linear_f32(data, Int64(columns), Int64(columns), Int64(range.lowerBound), Int64(range.upperBound), x, Int64(columns),
                          Int64(n), y, Int64(ldy), accumulate ? 1 : 0)
            return
        }
        BLAS.gemm(transposeA: false, transposeB: true, m: n, n: range.count, k: columns, a: x, lda: columns,
                  b: data + range.lowerBound * columns, ldb: columns, beta: accumulate ? 1 : 0, c: y, ldc: ldy)
    }
}

/// CQuant's pool runs as many threads as the rest of the inference path (OPENBLAS_NUM_THREADS
/// when ranks share a machine); set once, before the first multiply.
enum CQuantPool {
    static let configured: Void = cq_set_threads(Int32(Parallel.workers))
}

/// Splits `rows` weight rows over the cores when the work is worth a second thread.
func forEachRowRange(_ rows: Range<Int>, work: Int, _ body: (Range<Int>) -> Void) {
    let pieces = work < 1 << 17 ? 1 : min(Parallel.workers, rows.count)
    if pieces <= 1 {
        body(rows)
        return
    }
    let count = rows.count
    DispatchQueue.concurrentPerform(iterations: pieces) { p in
        body((rows.lowerBound + count * p / pieces)..<(rows.lowerBound + count * (p + 1) / pieces))
    }
}
