// `bench gemm`: the training step's GEMM shapes in float32 (OpenBLAS sgemm) and in bfloat16
// with float32 accumulation (oneDNN), side by side — the measurement a bf16 training path is
// chosen by. Per shape: GFLOP/s of both, their ratio, and oneDNN's kernel; then the GEMM time
// of one whole step in each precision (every layer up to the deepest exit, forward and both
// backward products, and the stacked head at every exit), and float32 → bfloat16 rounding's
// bandwidth, the cost a bf16 step adds.
import Foundation
import SortedKit

public struct GEMMShapeResult: Codable, Sendable {
    public var name: String
    public var m: Int, n: Int, k: Int
    public var transposeA: Bool, transposeB: Bool, accumulate: Bool
    /// How often one training step runs this product.
    public var perStep: Int
    public var fp32GFLOPS: Double
    public var bf16GFLOPS: Double
    public var bf16OverFP32: Double
    public var bf16Kernel: String

    enum CodingKeys: String, CodingKey {
        case name, m, n, k, perStep = "per_step", accumulate
        case transposeA = "transpose_a", transposeB = "transpose_b"
        case fp32GFLOPS = "fp32_gflops", bf16GFLOPS = "bf16_gflops", bf16OverFP32 = "bf16_over_fp32", bf16Kernel = "bf16_kernel"
    }
}

public struct GEMMBenchmarkResult: Codable, Sendable {
    public var rows: Int
    public var exits: [Int]
    public var openblasCore: String
    public var openblasThreads: Int
    public var onednnISA: String
    public var bf16Native: Bool
    public var shapes: [GEMMShapeResult]
    /// One step's GEMMs at the measured rates.
    public var stepFP32Seconds: Double
    public var stepBF16Seconds: Double
    public var stepSpeedup: Double
    /// float32 → bfloat16 rounding, bytes read and written per second.
    public var roundingGBps: Double

    enum CodingKeys: String, CodingKey {
        case rows, exits, shapes
        case openblasCore = "openblas_core", openblasThreads = "openblas_threads", onednnISA = "onednn_isa"
        case bf16Native = "bf16_native", stepFP32Seconds = "step_fp32_gemm_s", stepBF16Seconds = "step_bf16_gemm_s"
        case stepSpeedup = "step_gemm_speedup", roundingGBps = "rounding_gb_per_s"
    }
}

public enum GEMMBenchmark {
    struct Shape {
        let name: String, m: Int, n: Int, k: Int, transposeA: Bool, transposeB: Bool, accumulate: Bool, perStep: Int
        var flops: Double { 2 * Double(m) * Double(n) * Double(k) }
    }

    /// Every GEMM of a SortedPass step on `rows` = B·T tokens: each projection's forward
    /// (x·Wᵀ), input gradient (dy·W) and weight gradient (dW += dyᵀ·x), once per layer up to the
    /// deepest exit; the head's three on chunks of stacked exit rows, at every exit.
    static func stepShapes(_ c: LlamaConfig, rows N: Int, exits: [Int]) -> [Shape] {
        let L = exits.max() ?? c.numHiddenLayers, D = c.hiddenSize, F = c.intermediateSize
        let projections = [("qkv", c.qkvWidth, D), ("o", D, c.queryWidth), ("gate_up", 2 * F, D), ("down", D, F)]
        var shapes: [Shape] = []
        for (name, out, input) in projections {
            shapes.append(Shape(name: "\(name) forward", m: N, n: out, k: input, transposeA: false, transposeB: true, accumulate: false, perStep: L))
            shapes.append(Shape(name: "\(name) input grad", m: N, n: input, k: out, transposeA: false, transposeB: false, accumulate: false, perStep: L))
            shapes.append(Shape(name: "\(name) weight grad", m: out, n: input, k: N, transposeA: true, transposeB: false, accumulate: true, perStep: L))
        }
        // The head sees every exit's rows, stacked in chunks of the pass's default size.
        let headRows = exits.count * N, chunk = min(SortedPass.defaultHeadChunkRows, headRows)
        let chunks = (headRows + chunk - 1) / chunk
        let V = c.vocabSize
        shapes.append(Shape(name: "head forward", m: chunk, n: V, k: D, transposeA: false, transposeB: true, accumulate: false, perStep: chunks))
        shapes.append(Shape(name: "head input grad", m: chunk, n: D, k: V, transposeA: false, transposeB: false, accumulate: false, perStep: chunks))
        shapes.append(Shape(name: "head weight grad", m: V, n: D, k: chunk, transposeA: true, transposeB: false, accumulate: true, perStep: chunks))
        return shapes
    }

    public struct Unavailable: Error, CustomStringConvertible {
        public let isa: String
        public var description: String {
            "bench gemm: oneDNN has no bfloat16 matmul on this CPU (it offers \(isa)); bf16 needs AVX-512, natively AVX512_BF16 or AMX-BF16"
        }
    }

    public static func run(model c: LlamaConfig, rows: Int, exits: [Int], repeats: Int,
                           progress: (String) -> Void = { _ in }) throws -> GEMMBenchmarkResult {
        guard BFloat16.matmulAvailable else { throw Unavailable(isa: BFloat16.hardware.isa) }
        var results: [GEMMShapeResult] = []
        var fp32Step = 0.0, bf16Step = 0.0
        for shape in stepShapes(c, rows: rows, exits: exits) {
            progress("\(shape.name): [\(shape.m)×\(shape.k)]·[\(shape.k)×\(shape.n)]")
            let (aCount, bCount) = (shape.m * shape.k, shape.k * shape.n)
            let a = FloatBuffer(count: aCount), b = FloatBuffer(count: bCount), c = FloatBuffer(count: shape.m * shape.n)
            var rng = SplitMix64(seed: 7)
            for i in 0..<aCount { a[i] = Float(rng.nextNormal()) }
            for i in 0..<bCount { b[i] = Float(rng.nextNormal()) }
            var a16 = [UInt16](repeating: 0, count: aCount), b16 = [UInt16](repeating: 0, count: bCount)
            BFloat16.round(a.pointer, into: &a16, count: aCount)
            BFloat16.round(b.pointer, into: &b16, count: bCount)
            let lda = shape.transposeA ? shape.m : shape.k, ldb = shape.transposeB ? shape.k : shape.n
            let fp32 = best(repeats) {
                BLAS.gemm(transposeA: shape.transposeA, transposeB: shape.transposeB, m: shape.m, n: shape.n, k: shape.k,
                          a: a.pointer, lda: lda, b: b.pointer, ldb: ldb, beta: shape.accumulate ? 1 : 0, c: c.pointer, ldc: shape.n)
            }
            let matmul = try BF16Matmul(transposeA: shape.transposeA, transposeB: shape.transposeB, m: shape.m, n: shape.n,
                                        k: shape.k, lda: lda, ldb: ldb, ldc: shape.n, accumulate: shape.accumulate)
            var failure: Error?
            let bf16 = best(repeats) {
                do { try matmul.run(a: a16, b: b16, c: c.pointer) } catch { failure = error }
            }
            if let failure { throw failure }
            fp32Step += fp32 * Double(shape.perStep)
            bf16Step += bf16 * Double(shape.perStep)
            results.append(GEMMShapeResult(name: shape.name, m: shape.m, n: shape.n, k: shape.k, transposeA: shape.transposeA,
                                           transposeB: shape.transposeB, accumulate: shape.accumulate, perStep: shape.perStep,
                                           fp32GFLOPS: shape.flops / fp32 / 1e9, bf16GFLOPS: shape.flops / bf16 / 1e9,
                                           bf16OverFP32: fp32 / bf16, bf16Kernel: matmul.implementation))
        }
        // Rounding: the biggest operand a step rounds, the head weight.
        let count = c.vocabSize * c.hiddenSize
        let source = FloatBuffer(count: count)
        var rounded = [UInt16](repeating: 0, count: count)
        let rounding = best(repeats) { BFloat16.round(source.pointer, into: &rounded, count: count) }
        let hardware = BFloat16.hardware
        return GEMMBenchmarkResult(rows: rows, exits: exits, openblasCore: BLAS.coreName, openblasThreads: BLAS.threads,
                                   onednnISA: hardware.isa, bf16Native: hardware.native, shapes: results,
                                   stepFP32Seconds: fp32Step, stepBF16Seconds: bf16Step, stepSpeedup: fp32Step / bf16Step,
                                   roundingGBps: Double(6 * count) / rounding / 1e9)
    }

    /// The best of `repeats` timed runs after one untimed.
    private static func best(_ repeats: Int, _ body: () -> Void) -> Double {
        body()
        var fastest = Double.infinity
        for _ in 0..<repeats {
            let start = ContinuousClock.now
            body()
            fastest = min(fastest, (ContinuousClock.now - start).seconds)
        }
        return fastest
    }
}
