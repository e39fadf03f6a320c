// BF16Matmul and BFloat16 rounding. A product of two bfloat16 numbers is exact in float32
// (8 + 8 significand bits ≤ 24), so oneDNN's bf16 GEMM must equal OpenBLAS's sgemm on the same
// rounded values up to the order of float32 summation: |Δ| ≤ 2·k·2⁻²⁴·Σ|a·b| per element
// (the classic bound for two summation orders), checked for every transpose, accumulation
// and leading-dimension padding the training GEMMs use.
import XCTest
@testable import SortedKit

final class BF16MatmulTests: XCTestCase {
    func testRoundingIsToNearestTiesToEven() {
        let cases: [(UInt32, UInt16, String)] = [
            (0x3F80_0000, 0x3F80, "1 is exact"),
            (0x3F80_8000, 0x3F80, "a tie rounds to the even 0x3F80"),
            (0x3F81_8000, 0x3F82, "a tie rounds to the even 0x3F82"),
            (0x3F80_8001, 0x3F81, "above the half rounds up"),
            (0x3F80_7FFF, 0x3F80, "below the half rounds down"),
            (0xBF80_8001, 0xBF81, "the sign is kept"),
            (0x7F80_0000, 0x7F80, "infinity stays infinite"),
            (0x7F7F_FFFF, 0x7F80, "the largest float rounds to infinity, as RNE does"),
            (0x0000_0001, 0x0000, "the smallest subnormal rounds to zero"),
        ]
        for (bits, expected, what) in cases {
            XCTAssertEqual(BFloat16.round(Float(bitPattern: bits)), expected, what)
        }
        let nan = BFloat16.round(Float(bitPattern: 0x7F80_0001))   // a signalling NaN whose payload is in the low half
        XCTAssertTrue(BFloat16.float(nan).isNaN, "a NaN stays a NaN, not infinity")
        XCTAssertEqual(BFloat16.float(0x4049), 3.140625)
    }

    func testBulkRoundingMatchesTheScalar() {
        let x = randomArray(1000, seed: 3, scale: 10)
        var out = [UInt16](repeating: 0, count: x.count)
        x.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { BFloat16.round(src.baseAddress!, into: $0.baseAddress!, count: x.count) }
        }
        XCTAssertEqual(out, x.map(BFloat16.round))
        // Rounding error within half an ulp of 8 significand bits.
        for (v, b) in zip(x, out) where v != 0 {
            XCTAssertLessThanOrEqual(abs(BFloat16.float(b) - v) / abs(v), 1.0 / 256 + 1e-7)
        }
    }

    func testMatchesSgemmOnTheRoundedValues() throws {
        try XCTSkipUnless(BFloat16.matmulAvailable, "oneDNN has no bf16 matmul on this CPU (\(BFloat16.hardware.isa))")
        // (m, n, k) odd and larger than one register tile; padding 3 on every leading dimension.
        for (m, n, k) in [(7, 13, 37), (64, 96, 160)] {
            for transposeA in [false, true] {
                for transposeB in [false, true] {
                    for accumulate in [false, true] {
                        try check(m: m, n: n, k: k, transposeA: transposeA, transposeB: transposeB, accumulate: accumulate)
                    }
                }
            }
        }
    }

    private func check(m: Int, n: Int, k: Int, transposeA: Bool, transposeB: Bool, accumulate: Bool) throws {
        let pad = 3
        let (aRows, aCols) = transposeA ? (k, m) : (m, k)
        let (bRows, bCols) = transposeB ? (n, k) : (k, n)
        let lda = aCols + pad, ldb = bCols + pad, ldc = n + pad
        let a = randomArray(aRows * lda, seed: UInt64(m * 31 + k), scale: 1).map(BFloat16.round)
        let b = randomArray(bRows * ldb, seed: UInt64(n * 17 + k), scale: 1).map(BFloat16.round)
        let c0 = randomArray(m * ldc, seed: 5, scale: 1)
        let af = a.map(BFloat16.float), bf = b.map(BFloat16.float)

        var expected = c0
        BLAS.gemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, a: af, lda: lda,
                  b: bf, ldb: ldb, beta: accumulate ? 1 : 0, c: &expected, ldc: ldc)
        var actual = c0
        let matmul = try BF16Matmul(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k,
                                    lda: lda, ldb: ldb, ldc: ldc, accumulate: accumulate)
        try matmul.run(a: a, b: b, c: &actual)

        let what = "m \(m) n \(n) k \(k) \(transposeA ? "T" : "N")\(transposeB ? "T" : "N") \(accumulate ? "accumulate" : "overwrite") (\(matmul.implementation))"
        for i in 0..<m {
            for j in 0..<n {
                var magnitude = accumulate ? Double(abs(c0[i * ldc + j])) : 0
                for p in 0..<k {
                    let x = af[transposeA ? p * lda + i : i * lda + p], y = bf[transposeB ? j * ldb + p : p * ldb + j]
                    magnitude += Double(abs(x * y))
                }
                let bound = 2 * Double(k + 1) * pow(2, -24) * magnitude
                let e = expected[i * ldc + j], g = actual[i * ldc + j]
                if abs(Double(g) - Double(e)) > bound {
                    XCTFail("\(what): C[\(i),\(j)] is \(g), sgemm gives \(e) (bound \(bound))")
                    return
                }
            }
        }
        // The padding of C is never written.
        for i in 0..<m {
            for j in n..<ldc where actual[i * ldc + j] != c0[i * ldc + j] {
                XCTFail("\(what): the padding C[\(i),\(j)] was written")
                return
            }
        }
    }

    func testReportsTheInstructionSet() {
        let hardware = BFloat16.hardware
        XCTAssertFalse(hardware.isa.isEmpty)
        // The CPU's own flag (Linux): oneDNN's "native" must agree with it.
        if let flags = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8) {
            XCTAssertEqual(hardware.native, flags.contains(" avx512_bf16") || flags.contains(" amx_bf16"),
                           "oneDNN says \(hardware.isa)")
        }
    }
}
