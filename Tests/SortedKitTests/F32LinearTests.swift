// CQuant's cq_linear_f32 (float32 weights times a few activation rows) on every kernel path the
// CPU has: against a Double reference, the exactness it promises (a pair's result never depends
// on n, on the rows that come with it or on the row split; the SIMD paths agree bit for bit),
// and F32Weight.multiply, which uses it up to 16 rows and sgemm beyond, against sgemm.
import XCTest
import CQuant
@testable import SortedKit

final class F32LinearTests: XCTestCase {
    static let kernels = ["portable", "avx2", "avx512", "avx512-vnni"]
    static let simdKernels = ["avx2", "avx512", "avx512-vnni"]
    /// float32's unit roundoff.
    static let u = 0x1p-24

    /// The error bound of one result: a lane sums ⌈k/16⌉ products (fma: one rounding each; the
    /// portable path's multiply and add: two), the 16 lanes are summed by a 4-level tree and
    /// accumulate adds once more; each rounding is at most u times Σ|w·x| (+ |y₀|).
    static func tolerance(k: Int, magnitude: Double) -> Double {
        Double(2 * ((k + 15) / 16) + 6) * u * magnitude + 1e-30
    }

    /// y[i·ldy + r − r0] (= or +=) W row r · X row i, for r in rows.
    func linear(_ w: [Float], k: Int, rows: Range<Int>, _ x: UnsafePointer<Float>, n: Int, into y: UnsafeMutablePointer<Float>,
                ldy: Int, accumulate: Bool = false) {
        cq_linear_f32(w, Int64(k), Int64(k), Int64(rows.lowerBound), Int64(rows.upperBound), x, Int64(k), Int64(n), y,
                      Int64(ldy), accumulate ? 1 : 0)
    }

    func linear(_ w: [Float], k: Int, rows: Range<Int>, _ x: [Float], n: Int, into y: inout [Float], ldy: Int, accumulate: Bool = false) {
        x.withUnsafeBufferPointer { xs in
            y.withUnsafeMutableBufferPointer { ys in
                linear(w, k: k, rows: rows, xs.baseAddress!, n: n, into: ys.baseAddress!, ldy: ldy, accumulate: accumulate)
            }
        }
    }

    func testEveryKernelAgainstDouble() {
        for k in [32, 576, 100, 1536] {
            let rows = 37, nMax = 16
            let w = randomArray(rows * k, seed: UInt64(k)), x = randomArray(nMax * k, seed: UInt64(k + 1))
            var exact = [Double](repeating: 0, count: nMax * rows), magnitude = exact
            for i in 0..<nMax {
                for r in 0..<rows {
                    var sum = 0.0, mag = 0.0
                    for c in 0..<k {
                        let p = Double(w[r * k + c]) * Double(x[i * k + c])
                        sum += p
                        mag += abs(p)
                    }
                    exact[i * rows + r] = sum
                    magnitude[i * rows + r] = mag
                }
            }
            for kernel in Self.kernels where cq_select_kernel(kernel) == 1 {
                defer { cq_select_kernel(nil) }
                XCTAssertEqual(String(cString: cq_kernel_name()), kernel)
                for n in [1, 2, 3, 5, 8, 13, 16] {
                    for (range, accumulate) in [(0..<rows, false), (3..<(rows - 2), false), (5..<rows, true), (0..<1, true)] {
                        // A wider Y than the range: the extra columns must stay untouched.
                        let ldy = range.count + 3, y0: Float = accumulate ? 0.75 : -7
                        var y = [Float](repeating: y0, count: n * ldy)
                        linear(w, k: k, rows: range, x, n: n, into: &y, ldy: ldy, accumulate: accumulate)
                        for i in 0..<n {
                            for r in range {
                                let got = Double(y[i * ldy + r - range.lowerBound])
                                let want = exact[i * rows + r] + (accumulate ? Double(y0) : 0)
                                let mag = magnitude[i * rows + r] + (accumulate ? Double(abs(y0)) : 0)
                                XCTAssertLessThanOrEqual(abs(got - want), Self.tolerance(k: k, magnitude: mag),
                                                         "\(kernel) k \(k) n \(n) rows \(range) acc \(accumulate): (\(i), \(r))")
                            }
                            XCTAssertEqual(Array(y[(i * ldy + range.count)..<((i + 1) * ldy)]), [y0, y0, y0],
                                           "\(kernel) k \(k) n \(n) rows \(range): beyond the range")
                        }
                    }
                }
            }
        }
    }

    /// A pair's bits never depend on n, on the activation rows that come with it, on the row
    /// split (tiles at every edge, one thread or the pool) or on which SIMD path ran.
    func testResultsAreExactAcrossRowsSplitsAndPaths() {
        for (rows, k) in [(37, 100), (53, 576), (301, 1536), (7, 13)] {
            let nMax = 16
            let w = randomArray(rows * k, seed: UInt64(rows * k)), x = randomArray(nMax * k, seed: 5)
            var simdResult: [Float]?
            for kernel in Self.kernels where cq_select_kernel(kernel) == 1 {
                defer { cq_select_kernel(nil) }
                var full = [Float](repeating: .nan, count: nMax * rows)
                linear(w, k: k, rows: 0..<rows, x, n: nMax, into: &full, ldy: rows)
                x.withUnsafeBufferPointer { xs in
                    // Each activation row alone, and every run of rows starting anywhere.
                    for (i0, n) in [(0, 1), (5, 1), (15, 1), (1, 2), (3, 3), (2, 5), (7, 8), (0, 13), (3, 13)] {
                        var y = [Float](repeating: .nan, count: n * rows)
                        linear(w, k: k, rows: 0..<rows, xs.baseAddress! + i0 * k, n: n, into: &y, ldy: rows)
                        XCTAssertEqual(y, Array(full[(i0 * rows)..<((i0 + n) * rows)]),
                                       "\(kernel) \(rows)x\(k): rows \(i0)..<\(i0 + n) against n 16")
                    }
                    // Every weight row alone, for one activation row.
                    for i in [0, 9] {
                        for r in 0..<rows {
                            var one: Float = .nan
                            linear(w, k: k, rows: r..<(r + 1), xs.baseAddress! + i * k, n: 1, into: &one, ldy: 1)
                            XCTAssertEqual(one, full[i * rows + r], "\(kernel) \(rows)x\(k): row \(r) alone, activation \(i)")
                        }
                    }
                }
                // Uneven row pieces, not on tile boundaries, into a wider Y.
                let ldy = rows + 2
                var split = [Float](repeating: -7, count: nMax * ldy)
                let cuts = [0, 1, 3, rows / 2, rows / 2 + 1, rows - 2, rows].filter { $0 <= rows }
                for (a, b) in zip(cuts, cuts.dropFirst()) where a < b {
                    x.withUnsafeBufferPointer { xs in
                        split.withUnsafeMutableBufferPointer { ys in
                            linear(w, k: k, rows: a..<b, xs.baseAddress!, n: nMax, into: ys.baseAddress! + a, ldy: ldy)
                        }
                    }
                }
                for i in 0..<nMax {
                    XCTAssertEqual(Array(split[(i * ldy)..<(i * ldy + rows)]), Array(full[(i * rows)..<((i + 1) * rows)]),
                                   "\(kernel) \(rows)x\(k): split rows, activation \(i)")
                    XCTAssertEqual(Array(split[(i * ldy + rows)..<((i + 1) * ldy)]), [-7, -7], "\(kernel): beyond the range")
                }
                // accumulate adds the same bits to what is there.
                var acc = [Float](repeating: 0.5, count: nMax * rows)
                linear(w, k: k, rows: 0..<rows, x, n: nMax, into: &acc, ldy: rows, accumulate: true)
                XCTAssertEqual(acc, full.map { 0.5 + $0 }, "\(kernel) \(rows)x\(k): accumulate")
                if Self.simdKernels.contains(kernel) {
                    if let simdResult { XCTAssertEqual(full, simdResult, "\(kernel) \(rows)x\(k) against the other SIMD paths") }
                    simdResult = full
                }
            }
        }
    }

    /// F32Weight.multiply (cq_linear_f32 up to 16 rows, sgemm beyond) against sgemm itself.
    func testF32WeightAgreesWithSgemmAcrossTheThreshold() {
        for (rows, k) in [(75, 576), (130, 100)] {
            let values = randomArray(rows * k, seed: 11), x = randomArray(20 * k, seed: 12)
            let storage = buffer(values)
            let weight = F32Weight(UnsafePointer(storage.pointer), rows: rows, columns: k, owner: storage)
            var magnitude = [Double](repeating: 0, count: 20 * rows)
            for i in 0..<20 {
                for r in 0..<rows {
                    var mag = 0.0
                    for c in 0..<k { mag += abs(Double(values[r * k + c]) * Double(x[i * k + c])) }
                    magnitude[i * rows + r] = mag
                }
            }
            // sgemm's summation order is its own: allow its k-term worst case plus ours.
            let tol = { (mag: Double) in Double(k) * Self.u * mag + Self.tolerance(k: k, magnitude: mag) }
            for n in 1...20 {
                for (range, accumulate) in [(0..<rows, false), (4..<(rows - 3), true)] {
                    let y0: Float = accumulate ? -0.25 : 0
                    var got = [Float](repeating: y0, count: n * range.count), want = got
                    weight.multiply(x, count: n, rows: range, into: &got, ldy: range.count, accumulate: accumulate)
                    values.withUnsafeBufferPointer { v in
                        BLAS.gemm(transposeA: false, transposeB: true, m: n, n: range.count, k: k, a: x, lda: k,
                                  b: v.baseAddress! + range.lowerBound * k, ldb: k, beta: accumulate ? 1 : 0, c: &want, ldc: range.count)
                    }
                    for i in 0..<n {
                        for r in range {
                            let e = i * range.count + r - range.lowerBound
                            XCTAssertLessThanOrEqual(abs(Double(got[e]) - Double(want[e])), tol(magnitude[i * rows + r] + Double(abs(y0))),
                                                     "\(rows)x\(k) n \(n) rows \(range): (\(i), \(r))")
                        }
                    }
                }
            }
        }
    }
}
