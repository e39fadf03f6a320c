// CQuant's bfloat16 GEMM tiles (cq_bf16.c): the packed layouts of A and B bit for bit (rounding
// as BFloat16.round, zero padding, nothing written beyond them), and cq_bf16_gemm on the
// AVX512_BF16 path (when the CPU has it) and the portable path against a Double reference of the
// bf16-rounded operands, and against each other.
import XCTest
import CQuant
@testable import SortedKit

final class BF16TileTests: XCTestCase {
    /// float32's unit roundoff.
    static let u = 0x1p-24

    /// The error bound of one result. Each product of two bf16 values is exact in float32 (8 + 8
    /// significand bits ≤ 24), so the only roundings are the float32 additions of the k products
    /// into one accumulator (each at most u times the partial sum, ≤ u·Σ|a·b|: k − 1 of them, plus
    /// the zero pad product of an odd k, which is exact), the multiply by alpha and the add of
    /// beta·C (fused or not): at most (k + 2)·u·(|alpha|·Σ|a·b| + |beta·C|) to first order; one
    /// more u of slack covers the second-order terms. The tiny absolute term covers the 0 · 0 case.
    static func tolerance(k: Int, magnitude: Double) -> Double {
        Double(k + 3) * u * magnitude + 1e-30
    }

    override func tearDown() {
        cq_set_portable(0)
        super.tearDown()
    }

    /// Values that exercise the rounding: ties to even both ways, carry into the exponent,
    /// overflow to infinity, infinities, subnormals, signed zeros, NaNs (quiet and signalling).
    static let special: [Float] = [
        Float(bitPattern: 0x3F80_8000), Float(bitPattern: 0x3F81_8000), Float(bitPattern: 0x3F80_7FFF),
        Float(bitPattern: 0x3F80_8001), Float(bitPattern: 0x3FFF_FFFF), Float(bitPattern: 0x7F7F_FFFF),
        Float(bitPattern: 0xFF7F_8000), .infinity, -.infinity, Float(bitPattern: 0x0000_8000),
        Float(bitPattern: 0x0001_8000), Float(bitPattern: 0x8000_7FFF), Float(bitPattern: 0x007F_FFFF), 0, -0.0,
        .nan, Float(bitPattern: 0x7F80_0001), Float(bitPattern: 0xFFA0_1234),
    ]

    /// Random floats with the special values sprinkled in.
    func source(_ count: Int, seed: UInt64) -> [Float] {
        var s = randomArray(count, seed: seed)
        for (i, v) in Self.special.enumerated() where i * 7 < count { s[i * 7] = v }
        return s
    }

    /// Runs body on the portable path and on the CPU's best (the packs have an AVX-512 path).
    func onBothPaths(_ body: (String) -> Void) {
        for portable in [true, false] {
            cq_set_portable(portable ? 1 : 0)
            body(String(cString: cq_bf16_kernel_name()))
        }
        cq_set_portable(0)
    }

    func testPackBLayout() {
        for (k, n) in [(1, 1), (3, 17), (5, 33), (7, 40), (33, 5), (34, 64), (2, 31)] {
            for transposed in [false, true] {
                // src is stored k × n (or n × k when transposed) with a wider leading dimension.
                let ld = (transposed ? k : n) + 3, rows = transposed ? n : k
                let src = source(rows * ld, seed: UInt64(100 * k + n))
                let npad = (n + 31) / 32 * 32, k2 = (k + 1) / 2
                let count = Int(cq_bf16_packed_b_count(Int64(k), Int64(n)))
                XCTAssertEqual(count, k2 * npad * 2)
                var expected = [UInt16](repeating: 0, count: count)
                for kk in 0..<k {
                    for j in 0..<n {
                        expected[((kk / 2) * npad + j) * 2 + kk % 2] =
                            BFloat16.round(transposed ? src[j * ld + kk] : src[kk * ld + j])
                    }
                }
                onBothPaths { path in
                    // Two sentinel elements past the end must survive; everything before is written.
                    var dst = [UInt16](repeating: 0xBEEF, count: count + 2)
                    cq_bf16_pack_b(src, Int64(ld), transposed ? 1 : 0, Int64(k), Int64(n), &dst)
                    XCTAssertEqual(Array(dst[0..<count]), expected, "pack_b k \(k) n \(n) transposed \(transposed) \(path)")
                    XCTAssertEqual(Array(dst[count...]), [0xBEEF, 0xBEEF], "pack_b wrote past the end (\(path))")
                }
            }
        }
    }

    func testPackALayout() {
        for (m, k) in [(1, 1), (5, 3), (17, 7), (19, 33), (3, 40), (16, 32), (33, 65)] {
            for transposed in [false, true] {
                let ld = (transposed ? m : k) + 5, rows = transposed ? k : m
                let src = source(rows * ld, seed: UInt64(1000 * m + k))
                let kpad = (k + 1) / 2 * 2, ldd = kpad + 3
                // Columns kpad..<ldd are not the pack's: they keep the sentinel.
                var expected = [UInt16](repeating: 0xBEEF, count: m * ldd)
                for i in 0..<m {
                    for kk in 0..<kpad {
                        expected[i * ldd + kk] = kk < k ? BFloat16.round(transposed ? src[kk * ld + i] : src[i * ld + kk]) : 0
                    }
                }
                onBothPaths { path in
                    var dst = [UInt16](repeating: 0xBEEF, count: m * ldd)
                    cq_bf16_pack_a(src, Int64(ld), transposed ? 1 : 0, Int64(m), Int64(k), &dst, Int64(ldd))
                    XCTAssertEqual(dst, expected, "pack_a m \(m) k \(k) transposed \(transposed) \(path)")
                }
            }
        }
    }

    /// One GEMM problem: random operands packed once, the exact result of the packed (rounded)
    /// operands in Double, and the Σ|a·b| of each element.
    struct Problem {
        let m, n, k, lda: Int
        let a, b: [UInt16]
        let exact, magnitude: [Double]

        init(m: Int, n: Int, k: Int, seed: UInt64) {
            self.m = m
            self.n = n
            self.k = k
            let kpad = (k + 1) / 2 * 2
            let lda = kpad + 2 // even, with two columns the kernel must not read into the sum
            self.lda = lda
            let transposedA = seed % 2 == 1, transposedB = seed % 3 == 1
            let asrc = randomArray(m * k, seed: seed), bsrc = randomArray(k * n, seed: seed + 1)
            var a = [UInt16](repeating: 0x7FC0, count: m * lda) // NaN in the unused columns
            cq_bf16_pack_a(asrc, Int64(transposedA ? m : k), transposedA ? 1 : 0, Int64(m), Int64(k), &a, Int64(lda))
            var b = [UInt16](repeating: 0, count: Int(cq_bf16_packed_b_count(Int64(k), Int64(n))))
            cq_bf16_pack_b(bsrc, Int64(transposedB ? k : n), transposedB ? 1 : 0, Int64(k), Int64(n), &b)
            // The reference widens the packed values themselves (what the kernel multiplies).
            let npad = (n + 31) / 32 * 32
            var exact = [Double](repeating: 0, count: m * n), magnitude = exact
            let bw = (0..<k).map { kk in (0..<n).map { j in Double(BFloat16.float(b[((kk / 2) * npad + j) * 2 + kk % 2])) } }
            for i in 0..<m {
                for kk in 0..<k {
                    let av = Double(BFloat16.float(a[i * lda + kk]))
                    let row = bw[kk]
                    for j in 0..<n {
                        let p = av * row[j]
                        exact[i * n + j] += p
                        magnitude[i * n + j] += abs(p)
                    }
                }
            }
            self.a = a
            self.b = b
            self.exact = exact
            self.magnitude = magnitude
        }

        /// C (m × n in an ldc = n + 3 buffer, columns n..<ldc sentinels) after one cq_bf16_gemm
        /// from c0 (nil: NaN everywhere).
        func run(alpha: Float, beta: Float, c0: [Float]?) -> [Float] {
            let ldc = n + 3
            var c = c0 ?? [Float](repeating: .nan, count: m * ldc)
            cq_bf16_gemm(Int64(m), Int64(n), Int64(k), alpha, a, Int64(lda), b, Int64(n), beta, &c, Int64(ldc))
            return c
        }
    }

    static let shapes: [(m: Int, n: Int, k: Int)] = {
        var s: [(Int, Int, Int)] = []
        for m in [1, 7, 64] { for n in [1, 17, 64, 256] { for k in [1, 2, 63, 64, 256] { s.append((m, n, k)) } } }
        return s + [(13, 33, 5), (12, 32, 3), (25, 95, 130)] // edges of the 12 × 32 micro-tile
    }()

    /// Every shape, alpha ≠ 1, beta ∈ {0 (over NaN), 0 (over numbers), 1, 0.5}, on the current path.
    func checkGemm(path: String) {
        for (s, shape) in Self.shapes.enumerated() {
            let p = Problem(m: shape.m, n: shape.n, k: shape.k, seed: UInt64(s + 1))
            let ldc = p.n + 3
            let c0 = randomArray(p.m * ldc, seed: UInt64(7000 + s))
            for (alpha, beta, start) in [(Float(0.75), Float(0), nil as [Float]?), (-1.5, 0, c0), (0.75, 1, c0), (-1.5, 0.5, c0)] {
                let c = p.run(alpha: alpha, beta: beta, c0: start)
                var worst = 0.0
                for i in 0..<p.m {
                    for j in 0..<p.n {
                        let old = beta == 0 ? 0 : Double(beta) * Double(c0[i * ldc + j])
                        let ref = Double(alpha) * p.exact[i * p.n + j] + old
                        let tol = Self.tolerance(k: p.k, magnitude: abs(Double(alpha)) * p.magnitude[i * p.n + j] + abs(old))
                        let err = abs(Double(c[i * ldc + j]) - ref)
                        if !(err <= tol) { worst = max(worst, err.isNaN ? .infinity : err / tol) }
                    }
                    for j in p.n..<ldc { // columns beyond n are never touched
                        let expected = start?[i * ldc + j] ?? .nan
                        XCTAssert(c[i * ldc + j].bitPattern == expected.bitPattern,
                                  "\(path) m \(p.m) n \(p.n) k \(p.k): column \(j) ≥ n was written")
                    }
                }
                XCTAssertEqual(worst, 0, "\(path) m \(p.m) n \(p.n) k \(p.k) alpha \(alpha) beta \(beta)"
                               + (start == nil ? " over NaN" : "") + ": error \(worst) × the tolerance")
            }
        }
    }

    func testGemmPortable() {
        cq_set_portable(1)
        XCTAssertEqual(String(cString: cq_bf16_kernel_name()), "portable")
        checkGemm(path: "portable")
    }

    func testGemmAVX512BF16() throws {
        cq_set_portable(0)
        guard String(cString: cq_bf16_kernel_name()) == "avx512-bf16" else { throw XCTSkip("no AVX512_BF16 on this CPU") }
        checkGemm(path: "avx512-bf16")
    }

    /// The two paths agree within twice the tolerance (each is within it of the exact result).
    func testPathsAgree() throws {
        cq_set_portable(0)
        guard String(cString: cq_bf16_kernel_name()) == "avx512-bf16" else { throw XCTSkip("no AVX512_BF16 on this CPU") }
        for (s, shape) in Self.shapes.enumerated() {
            let p = Problem(m: shape.m, n: shape.n, k: shape.k, seed: UInt64(500 + s))
            let ldc = p.n + 3
            let c0 = randomArray(p.m * ldc, seed: UInt64(9000 + s))
            cq_set_portable(1)
            let portable = p.run(alpha: 1.25, beta: 0.5, c0: c0)
            cq_set_portable(0)
            let simd = p.run(alpha: 1.25, beta: 0.5, c0: c0)
            var worst = 0.0
            for i in 0..<p.m {
                for j in 0..<p.n {
                    let mag = 1.25 * p.magnitude[i * p.n + j] + 0.5 * abs(Double(c0[i * ldc + j]))
                    let d = abs(Double(portable[i * ldc + j]) - Double(simd[i * ldc + j]))
                    let tol = 2 * Self.tolerance(k: p.k, magnitude: mag)
                    if !(d <= tol) { worst = max(worst, d.isNaN ? .infinity : d / tol) }
                }
            }
            XCTAssertEqual(worst, 0, "paths differ: m \(p.m) n \(p.n) k \(p.k), \(worst) × the tolerance")
        }
    }

    /// A product on the first k rows and n columns of a B packed wider (ldb) and longer is the
    /// product on that block packed alone, bit for bit: causal attention multiplies the visible
    /// part of a key tile packed once. Odd k included (B's row k meets A's zero pad column).
    func testProductOnPartOfAPackedB() {
        onBothPaths { path in
            let fullK = 70, fullN = 100, m = 9
            let bsrc = randomArray(fullK * fullN, seed: 41), asrc = randomArray(m * fullK, seed: 42)
            var wide = [UInt16](repeating: 0, count: Int(cq_bf16_packed_b_count(Int64(fullK), Int64(fullN))))
            cq_bf16_pack_b(bsrc, Int64(fullN), 0, Int64(fullK), Int64(fullN), &wide)
            for (k, n) in [(70, 100), (33, 100), (70, 31), (17, 45), (1, 1)] {
                let lda = (k + 1) / 2 * 2
                var a = [UInt16](repeating: 0, count: m * lda)
                cq_bf16_pack_a(asrc, Int64(fullK), 0, Int64(m), Int64(k), &a, Int64(lda))
                var alone = [UInt16](repeating: 0, count: Int(cq_bf16_packed_b_count(Int64(k), Int64(n))))
                cq_bf16_pack_b(bsrc, Int64(fullN), 0, Int64(k), Int64(n), &alone)
                var fromWide = [Float](repeating: .nan, count: m * n), fromAlone = fromWide
                cq_bf16_gemm(Int64(m), Int64(n), Int64(k), 0.5, a, Int64(lda), wide, Int64(fullN), 0, &fromWide, Int64(n))
                cq_bf16_gemm(Int64(m), Int64(n), Int64(k), 0.5, a, Int64(lda), alone, Int64(n), 0, &fromAlone, Int64(n))
                XCTAssertEqual(fromWide.map(\.bitPattern), fromAlone.map(\.bitPattern), "\(path): k \(k) n \(n) of \(fullK) × \(fullN)")
            }
        }
    }

    /// k = 0: C = beta·C (alpha times an empty sum); beta 0 over NaN gives zeros.
    func testEmptySum() {
        onBothPaths { path in
            var c: [Float] = [.nan, .nan, .nan, 2, 4, 6]
            let a: [UInt16] = [0], b: [UInt16] = [0]
            c.withUnsafeMutableBufferPointer { c in
                cq_bf16_gemm(1, 3, 0, 2, a, 0, b, 3, 0, c.baseAddress!, 3)
                cq_bf16_gemm(1, 3, 0, 2, a, 0, b, 3, 0.5, c.baseAddress! + 3, 3)
            }
            XCTAssertEqual(c, [0, 0, 0, 1, 2, 3], path)
        }
    }
}
