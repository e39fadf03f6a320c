// GEMMOperandBuffer: saved activations that the pass reads only as GEMM operands (the normed
// inputs of the projections, SwiGLU's output). In float32 they are kept as they are; in bf16
// only their bfloat16 rounding is kept — exactly what every GEMM reading them takes — in half
// the bytes. A producer writes float32 values where `values(at:scratch:)` says, then `commit`
// rounds them in (bf16) or leaves them in place (fp32).

final class GEMMOperandBuffer {
    let precision: TrainingPrecision
    private let floats: FloatBuffer?
    private let halves: UnsafeMutableBufferPointer<UInt16>?

    init(count: Int, precision: TrainingPrecision) {
        self.precision = precision
        if precision == .bf16 {
            floats = nil
            let halves = UnsafeMutableBufferPointer<UInt16>.allocate(capacity: max(count, 1))
            halves.initialize(repeating: 0)
            self.halves = halves
        } else {
            floats = FloatBuffer(count: count)
            halves = nil
        }
    }

    deinit { halves?.deallocate() }

    /// Where a producer writes the float32 values at `offset`: this buffer (fp32), or `scratch`.
    func values(at offset: Int, scratch: UnsafeMutablePointer<Float>) -> UnsafeMutablePointer<Float> {
        floats.map { $0.pointer + offset } ?? scratch
    }

    /// Keeps the `count` values a producer wrote to `values(at: offset, scratch:)`.
    func commit(at offset: Int, count: Int, from written: UnsafePointer<Float>) {
        guard let halves else { return }
        BFloat16.round(written, into: halves.baseAddress! + offset, count: count)
    }

    /// The values at `offset` as a GEMM operand.
    func operand(at offset: Int) -> MatrixOperand {
        if let floats { return .float(floats.pointer + offset) }
        return .bfloat16(halves!.baseAddress! + offset)
    }

    /// Bytes per value kept.
    static func bytesPerValue(_ precision: TrainingPrecision) -> Int { precision == .bf16 ? 2 : 4 }
}
