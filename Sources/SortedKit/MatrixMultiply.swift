// MatrixMultiply: the training pass's GEMMs in the run's precision. float32 goes to OpenBLAS's
// sgemm; bf16 rounds both operands to bfloat16 (nearest, ties to even) and multiplies them on
// the CPU's bf16 units through oneDNN, accumulating and writing float32 — so every output,
// gradient and the weights themselves stay float32, as in PyTorch's autocast. A weight (a `b`
// operand inside the parameters given to `roundWeightsOncePerPass`) is rounded once per pass,
// into a bfloat16 mirror of the parameters, rather than at each of its GEMMs: the tied head
// alone serves 2·exits GEMMs a step.
import Foundation

/// train.precision: the arithmetic of the training GEMMs.
public enum TrainingPrecision: String, CaseIterable, Sendable {
    case fp32, bf16
}

public enum TrainingPrecisionError: Error, CustomStringConvertible {
    case noHardwareBF16(isa: String)
    public var description: String {
        switch self {
        case .noHardwareBF16(let isa):
            "train.precision: bf16 needs a CPU with AVX512_BF16 or AMX-BF16 (AMD Zen 4 and later, Intel Cooper Lake, Sapphire Rapids and later); this one offers \(isa), where bf16 would be emulated and slower than fp32: use fp32"
        }
    }
}

public final class MatrixMultiply {
    public let precision: TrainingPrecision
    private struct Shape: Hashable {
        let transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int, lda: Int, ldb: Int, ldc: Int, accumulate: Bool
    }
    private var plans: [Shape: BF16Matmul] = [:]
    private var scratchA = UnsafeMutableBufferPointer<UInt16>.allocate(capacity: 0)
    private var scratchB = UnsafeMutableBufferPointer<UInt16>.allocate(capacity: 0)
    /// The parameters' float32 values, their bfloat16 mirror, and the regions (offset → values)
    /// of the mirror rounded since the parameters last changed.
    private var parameters: (values: UnsafePointer<Float>, count: Int)?
    private var mirror: UnsafeMutablePointer<UInt16>?
    private var current: [Int: Int] = [:]

    /// float32 through OpenBLAS.
    public convenience init() {
        try! self.init(precision: .fp32)   // only bf16 can be refused
    }

    /// Refuses bf16 where the CPU has no bf16 arithmetic (oneDNN would emulate it, slower than fp32).
    public init(precision: TrainingPrecision) throws {
        self.precision = precision
        if precision == .bf16 {
            let hardware = BFloat16.hardware
            guard hardware.native && BFloat16.matmulAvailable else { throw TrainingPrecisionError.noHardwareBF16(isa: hardware.isa) }
        }
    }

    deinit {
        mirror?.deallocate()
        scratchA.deallocate()
        scratchB.deallocate()
    }

    /// In bf16, `b` operands inside `values` are weights: each is rounded on its first GEMM after
    /// `parametersChanged` and reused until the next one (2 bytes a parameter). No-op in fp32.
    public func roundWeightsOncePerPass(of values: UnsafePointer<Float>, count: Int) {
        guard precision == .bf16 else { return }
        mirror?.deallocate()
        mirror = .allocate(capacity: count)
        parameters = (values, count)
        current.removeAll()
    }

    /// The parameters may have changed (an optimizer step, a load): round weights again.
    public func parametersChanged() {
        current.removeAll(keepingCapacity: true)
    }

    /// The bfloat16 copy of `count` values at `b`, when they are parameters.
    private func roundedWeight(_ b: UnsafePointer<Float>, count: Int) -> UnsafePointer<UInt16>? {
        guard let (values, total) = parameters, let mirror, b >= values, b + count <= values + total else { return nil }
        let offset = b - values
        if current[offset, default: 0] < count {
            BFloat16.round(b, into: mirror + offset, count: count)
            current[offset] = count
        }
        return UnsafePointer(mirror + offset)
    }

    /// C[m,n] = op(A)[m,k] · op(B)[k,n] + beta · C, row-major; beta 0 or 1 (what the pass uses).
    public func gemm(transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
                     a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                     beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        gemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, a: .float(a), lda: lda, b: .float(b), ldb: ldb,
             beta: beta, c: c, ldc: ldc)
    }

    /// The same with either operand possibly already in bfloat16 (bf16 only: a saved activation
    /// kept as its rounding).
    public func gemm(transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
                     a: MatrixOperand, lda: Int, b: MatrixOperand, ldb: Int,
                     beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
        guard precision == .bf16 else {
            guard case .float(let a) = a, case .float(let b) = b else { preconditionFailure("MatrixMultiply: a bfloat16 operand in fp32") }
            BLAS.gemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, a: a, lda: lda,
                      b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
            return
        }
        if m == 0 || n == 0 { return }
        precondition(beta == 0 || beta == 1, "MatrixMultiply: beta must be 0 or 1 in bf16, got \(beta)")
        if k == 0 {
            if beta == 0 { for i in 0..<m { (c + i * ldc).update(repeating: 0, count: n) } }
            return
        }
        let shape = Shape(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, lda: lda, ldb: ldb,
                          ldc: ldc, accumulate: beta == 1)
        let plan: BF16Matmul
        if let known = plans[shape] {
            plan = known
        } else {
            do {
                plan = try BF16Matmul(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k,
                                      lda: lda, ldb: ldb, ldc: ldc, accumulate: beta == 1)
            } catch {
                fatalError("MatrixMultiply: \(error)")   // the CPU passed init's check: an internal error
            }
            plans[shape] = plan
        }
        // The stored extent of each operand: its rows, the last one only as long as it is used.
        let (aRows, aColumns) = transposeA ? (k, m) : (m, k)
        let (bRows, bColumns) = transposeB ? (n, k) : (k, n)
        let aCount = (aRows - 1) * lda + aColumns, bCount = (bRows - 1) * ldb + bColumns
        let roundedA = rounded(a, count: aCount, scratch: &scratchA, weights: false)
        let roundedB = rounded(b, count: bCount, scratch: &scratchB, weights: true)
        do { try plan.run(a: roundedA, b: roundedB, c: c) } catch {
            fatalError("MatrixMultiply: \(error)")
        }
    }

    /// The operand's bfloat16 values: as given, from the weights' mirror (a `b` operand inside
    /// the parameters), or rounded into `scratch`.
    private func rounded(_ operand: MatrixOperand, count: Int, scratch: inout UnsafeMutableBufferPointer<UInt16>,
                         weights: Bool) -> UnsafePointer<UInt16> {
        switch operand {
        case .bfloat16(let values):
            return values
        case .float(let values):
            if weights, let weight = roundedWeight(values, count: count) { return weight }
            if scratch.count < count {
                scratch.deallocate()
                scratch = .allocate(capacity: count)
            }
            BFloat16.round(values, into: scratch.baseAddress!, count: count)
            return UnsafePointer(scratch.baseAddress!)
        }
    }
}

/// A GEMM operand: float32 values (rounded at each call in bf16), or values already rounded to
/// bfloat16 (what a bf16 GEMM takes, so they are not rounded again).
public enum MatrixOperand {
    case float(UnsafePointer<Float>)
    case bfloat16(UnsafePointer<UInt16>)
}

extension MatrixMultiply {
    /// Best-of-`repeats` throughput of C[m,n] = A[m,k]·B[n,k]ᵀ (every projection's layout) in this
    /// precision: the peak a training step is measured against. In bf16 the weight B comes
    /// rounded (as the pass keeps it, once per pass) and A is rounded at each call (as the pass's
    /// float32 operands are; its saved ones come rounded, so this peak is a little low for them).
    public func measureGFLOPS(m: Int, n: Int, k: Int, repeats: Int = 5) -> Double {
        let a = FloatBuffer(count: m * k), b = FloatBuffer(count: n * k), c = FloatBuffer(count: m * n)
        for i in 0..<a.count { a[i] = Float(i % 7) * 0.01 }
        for i in 0..<b.count { b[i] = Float(i % 5) * 0.01 }
        var roundedB = [UInt16](repeating: 0, count: precision == .bf16 ? n * k : 0)
        if precision == .bf16 { roundedB.withUnsafeMutableBufferPointer { BFloat16.round(b.pointer, into: $0.baseAddress!, count: n * k) } }
        var best = 0.0
        for _ in 0..<(repeats + 1) {
            let start = ContinuousClock.now
            roundedB.withUnsafeBufferPointer { rb in
                gemm(transposeA: false, transposeB: true, m: m, n: n, k: k, a: .float(a.pointer), lda: k,
                     b: precision == .bf16 ? .bfloat16(rb.baseAddress!) : .float(b.pointer), ldb: k, beta: 0, c: c.pointer, ldc: n)
            }
            let seconds = (ContinuousClock.now - start).seconds
            best = max(best, 2 * Double(m) * Double(n) * Double(k) / seconds / 1e9)
        }
        return best
    }
}
