// BF16Matmul: the one file that calls oneDNN. Row-major GEMMs on bfloat16 inputs with float32
// accumulation and output — the arithmetic of the CPU's bf16 units (AVX512_BF16, AMX-BF16),
// which Debian's OpenBLAS does not expose — and the float32 → bfloat16 rounding that feeds them.
import CDNNL
import Foundation

/// bfloat16: the top 16 bits of a float32 (8-bit exponent, 8-bit significand).
public enum BFloat16 {
    /// Round to nearest, ties to even (as PyTorch's `.to(torch.bfloat16)`); a NaN stays a quiet NaN.
    @inline(__always)
    public static func round(_ x: Float) -> UInt16 {
        let u = x.bitPattern
        if x.isNaN { return UInt16(truncatingIfNeeded: (u >> 16) | 0x40) }
        return UInt16(truncatingIfNeeded: (u &+ 0x7FFF &+ ((u >> 16) & 1)) >> 16)
    }

    @inline(__always)
    public static func float(_ b: UInt16) -> Float { Float(bitPattern: UInt32(b) << 16) }

    /// `count` floats rounded into `out`.
    public static func round(_ x: UnsafePointer<Float>, into out: UnsafeMutablePointer<UInt16>, count: Int) {
        for i in 0..<count { out[i] = round(x[i]) }
    }

    /// The instruction set oneDNN's kernels use on this CPU, and whether it computes bf16 natively
    /// (AVX512_BF16 or AMX); without it oneDNN emulates bf16 on float32 units, slower than sgemm.
    public static var hardware: (isa: String, native: Bool) {
        let isa = dnnl_get_effective_cpu_isa()
        let names: [(dnnl_cpu_isa_t, String)] = [
            (dnnl_cpu_isa_avx512_core_amx, "avx512_core_amx"), (dnnl_cpu_isa_avx512_core_bf16, "avx512_core_bf16"),
            (dnnl_cpu_isa_avx512_core_vnni, "avx512_core_vnni"), (dnnl_cpu_isa_avx512_core, "avx512_core"),
            (dnnl_cpu_isa_avx2_vnni, "avx2_vnni"), (dnnl_cpu_isa_avx2, "avx2"), (dnnl_cpu_isa_avx, "avx"),
            (dnnl_cpu_isa_sse41, "sse41"),
        ]
        // The enum values are nested bit masks: the first one isa contains is its name.
        let name = names.first { isa.rawValue & $0.0.rawValue == $0.0.rawValue }?.1 ?? "isa \(isa.rawValue)"
        let bf16 = dnnl_cpu_isa_avx512_core_bf16.rawValue
        return (name, isa.rawValue & bf16 == bf16)
    }
}

extension BFloat16 {
    /// Whether oneDNN multiplies bfloat16 here at all (natively or emulated): oneDNN 2.6 has no
    /// bf16 matmul below AVX-512 (e.g. AMD Zen 3). Asked once, by making a 1×1×1 multiply.
    public static let matmulAvailable: Bool = (try? BF16Matmul(transposeA: false, transposeB: false, m: 1, n: 1, k: 1,
                                                               lda: 1, ldb: 1, ldc: 1, accumulate: false)) != nil
}

public enum BF16MatmulError: Error, CustomStringConvertible {
    case oneDNN(call: String, status: Int)
    public var description: String {
        switch self { case .oneDNN(let call, let status): "oneDNN: \(call) failed (status \(status))" }
    }
}

/// C[m,n] = op(A)[m,k] · op(B)[k,n] (+ C when accumulating): A and B bfloat16, C float32, all
/// row-major with leading dimensions, as `BLAS.gemm` with alpha 1 and beta 0 or 1. One
/// oneDNN primitive per shape, made on first use and kept. Not for concurrent use: every
/// instance runs on one shared oneDNN stream (the training pass calls it from one thread).
public final class BF16Matmul {
    public let m: Int, n: Int, k: Int
    public let transposeA: Bool, transposeB: Bool, accumulate: Bool
    /// oneDNN's name for the kernel it chose (e.g. "brg:avx512_core_bf16").
    public let implementation: String
    private let primitive: dnnl_primitive_t
    private let memory: (a: dnnl_memory_t, b: dnnl_memory_t, c: dnnl_memory_t)

    private static let engine: (dnnl_engine_t, dnnl_stream_t)? = {
        var engine: dnnl_engine_t?
        var stream: dnnl_stream_t?
        guard dnnl_engine_create(&engine, dnnl_cpu, 0) == dnnl_success, let engine,
              dnnl_stream_create(&stream, engine, UInt32(dnnl_stream_default_flags.rawValue)) == dnnl_success, let stream
        else { return nil }
        return (engine, stream)
    }()

    private static func check(_ status: dnnl_status_t, _ call: String) throws {
        guard status == dnnl_success else { throw BF16MatmulError.oneDNN(call: call, status: Int(status.rawValue)) }
    }

    public init(transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
                lda: Int, ldb: Int, ldc: Int, accumulate: Bool) throws {
        precondition(m > 0 && n > 0 && k > 0, "BF16Matmul: empty shape")
        self.m = m; self.n = n; self.k = k
        self.transposeA = transposeA; self.transposeB = transposeB; self.accumulate = accumulate
        guard let (engine, _) = Self.engine else { throw BF16MatmulError.oneDNN(call: "dnnl_engine_create", status: -1) }
        // Logical shapes src [m,k], weights [k,n], dst [m,n]; a transpose is a swap of strides.
        var a = dnnl_memory_desc_t(), b = dnnl_memory_desc_t(), c = dnnl_memory_desc_t()
        var aDims: [Int64] = [Int64(m), Int64(k)], bDims: [Int64] = [Int64(k), Int64(n)], cDims: [Int64] = [Int64(m), Int64(n)]
        var aStrides: [Int64] = transposeA ? [1, Int64(lda)] : [Int64(lda), 1]
        var bStrides: [Int64] = transposeB ? [1, Int64(ldb)] : [Int64(ldb), 1]
        var cStrides: [Int64] = [Int64(ldc), 1]
        try Self.check(dnnl_memory_desc_init_by_strides(&a, 2, &aDims, dnnl_bf16, &aStrides), "memory_desc_init (A)")
        try Self.check(dnnl_memory_desc_init_by_strides(&b, 2, &bDims, dnnl_bf16, &bStrides), "memory_desc_init (B)")
        try Self.check(dnnl_memory_desc_init_by_strides(&c, 2, &cDims, dnnl_f32, &cStrides), "memory_desc_init (C)")
        var descriptor = dnnl_matmul_desc_t()
        try Self.check(dnnl_matmul_desc_init(&descriptor, &a, &b, nil, &c), "matmul_desc_init")
        var attributes: dnnl_primitive_attr_t?
        try Self.check(dnnl_primitive_attr_create(&attributes), "primitive_attr_create")
        defer { dnnl_primitive_attr_destroy(attributes) }
        if accumulate {
            // beta = 1: the sum post-op adds what C held.
            var ops: dnnl_post_ops_t?
            try Self.check(dnnl_post_ops_create(&ops), "post_ops_create")
            defer { dnnl_post_ops_destroy(ops) }
            try Self.check(dnnl_post_ops_append_sum(ops, 1), "post_ops_append_sum")
            try Self.check(dnnl_primitive_attr_set_post_ops(attributes, ops), "primitive_attr_set_post_ops")
        }
        var pd: dnnl_primitive_desc_t?
        try Self.check(dnnl_primitive_desc_create(&pd, &descriptor, attributes, engine, nil), "primitive_desc_create")
        defer { dnnl_primitive_desc_destroy(pd) }
        var name: UnsafePointer<CChar>?
        dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &name)
        implementation = name.map { String(cString: $0) } ?? "unknown"
        var p: dnnl_primitive_t?
        try Self.check(dnnl_primitive_create(&p, pd), "primitive_create")
        primitive = p!
        var ma: dnnl_memory_t?, mb: dnnl_memory_t?, mc: dnnl_memory_t?
        // Data handles are set per call (DNNL_MEMORY_NONE here).
        try Self.check(dnnl_memory_create(&ma, &a, engine, nil), "memory_create (A)")
        try Self.check(dnnl_memory_create(&mb, &b, engine, nil), "memory_create (B)")
        try Self.check(dnnl_memory_create(&mc, &c, engine, nil), "memory_create (C)")
        memory = (ma!, mb!, mc!)
    }

    deinit {
        dnnl_memory_destroy(memory.a)
        dnnl_memory_destroy(memory.b)
        dnnl_memory_destroy(memory.c)
        dnnl_primitive_destroy(primitive)
    }

    /// Runs the multiply on these operands (the shapes and strides of init).
    public func run(a: UnsafePointer<UInt16>, b: UnsafePointer<UInt16>, c: UnsafeMutablePointer<Float>) throws {
        guard let (_, stream) = Self.engine else { return }
        try Self.check(dnnl_memory_set_data_handle(memory.a, UnsafeMutableRawPointer(mutating: a)), "memory_set_data_handle (A)")
        try Self.check(dnnl_memory_set_data_handle(memory.b, UnsafeMutableRawPointer(mutating: b)), "memory_set_data_handle (B)")
        try Self.check(dnnl_memory_set_data_handle(memory.c, UnsafeMutableRawPointer(c)), "memory_set_data_handle (C)")
        var arguments = [dnnl_exec_arg_t(arg: DNNL_ARG_SRC, memory: memory.a),
                         dnnl_exec_arg_t(arg: DNNL_ARG_WEIGHTS, memory: memory.b),
                         dnnl_exec_arg_t(arg: DNNL_ARG_DST, memory: memory.c)]
        try Self.check(dnnl_primitive_execute(primitive, stream, 3, &arguments), "primitive_execute")
        try Self.check(dnnl_stream_wait(stream), "stream_wait")
    }
}
