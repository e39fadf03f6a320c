// ActivationBuffer: saved activations in the run's precision. In float32 they are kept as they
// are. In bf16 only their bfloat16 rounding is kept, in half the bytes, as PyTorch's autocast
// keeps a bf16 GEMM's output: for the activations only GEMMs read (the normed inputs of the
// projections, SwiGLU's output) that is exactly what every reader took anyway; SwiGLU's input
// (the gate|up projection) is then read back as its rounding, forward and backward alike.
// A producer writes float32 values where `values(at:scratch:)` says, then `commit` keeps them.

final class ActivationBuffer {
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

    /// Keeps the `count` values a producer wrote to `values(at: offset, scratch:)`; with
    /// `writeBack`, leaves there what was kept (their rounding in bf16), for a reader that
    /// must see what the backward will.
    func commit(at offset: Int, count: Int, from written: UnsafeMutablePointer<Float>, writeBack: Bool = false) {
        guard let halves else { return }
        let kept = halves.baseAddress! + offset
        BFloat16.round(written, into: kept, count: count)
        if writeBack { for i in 0..<count { written[i] = BFloat16.float(kept[i]) } }
    }

    /// The `count` values at `offset` as float32: in place (fp32), or widened into `scratch`.
    func read(at offset: Int, count: Int, scratch: UnsafeMutablePointer<Float>) -> UnsafePointer<Float> {
        if let floats { return UnsafePointer(floats.pointer + offset) }
        let kept = halves!.baseAddress! + offset
        for i in 0..<count { scratch[i] = BFloat16.float(kept[i]) }
        return UnsafePointer(scratch)
    }

    /// The values at `offset` as a GEMM operand.
    func operand(at offset: Int) -> MatrixOperand {
        if let floats { return .float(floats.pointer + offset) }
        return .bfloat16(halves!.baseAddress! + offset)
    }
}
