// CQuant's cq_linear and its pool, below the weight type: every kernel path the CPU has against
// the dequantized matrix times the quantized activations (in Double), the exactness cq_linear
// promises (a pair's result never depends on n, on the row split or on which SIMD path ran),
// the packed layout's round trip, the row-layout cq_matmul_* against it, and cq_parallel_for
// under many tasks, nesting and two callers.
import XCTest
import Dispatch
import CQuant
@testable import SortedKit

final class QuantizedKernelTests: XCTestCase {
    static let kernels = ["portable", "avx2", "avx512", "avx512-vnni"]
    static let simdKernels = ["avx2", "avx512", "avx512-vnni"]

    func randomFloats(_ count: Int, seed: UInt64, scale: Float = 1) -> [Float] {
        var rng = SplitMix64(seed: seed)
        // Varied magnitudes across blocks, so block scales differ.
        return (0..<count).map { i in Float(rng.nextNormal()) * scale * Float(1 + (i / 32) % 5) }
    }

    /// A packed matrix with its GGUF rows.
    struct Packed {
        let format: WeightFormat
        let rows: Int, k: Int
        let gguf: [UInt8]
        let packed: UnsafeMutableRawPointer
        var cq: Int32 { format.cqFormat }
        var rowBytes: Int { gguf.count / rows }

        init(_ format: WeightFormat, rows: Int, k: Int, seed: UInt64) {
            self.format = format
            self.rows = rows
            self.k = k
            var rng = SplitMix64(seed: seed)
            let values = (0..<(rows * k)).map { _ in Float(rng.nextNormal()) }
            gguf = values.withUnsafeBufferPointer { format.encodeBlocks($0, columns: k) }
            let bytes = cq_packed_bytes(format.cqFormat, Int64(k), Int64(rows))
            packed = .allocate(byteCount: bytes, alignment: 64)
            packed.initializeMemory(as: UInt8.self, repeating: 0, count: bytes)
            let rowBytes = gguf.count / rows
            gguf.withUnsafeBytes { raw in
                for r in 0..<rows { cq_pack_row(format.cqFormat, packed, Int64(k), Int64(r), raw.baseAddress! + r * rowBytes) }
            }
        }

        func free() { packed.deallocate() }

        /// Row r of W dequantized from its GGUF bytes.
        func dequantized(_ r: Int) -> [Float] {
            var out = [Float](repeating: 0, count: k)
            gguf.withUnsafeBytes { raw in
                let row = raw.baseAddress! + r * rowBytes
                switch format {
                case .q8_0: cq_dequantize_row_q8_0(row, &out, Int64(k))
                case .q4_0: cq_dequantize_row_q4_0(row, &out, Int64(k))
                default: cq_dequantize_row_q4_1(row, &out, Int64(k))
                }
            }
            return out
        }

        /// The activation row as the kernels see it: quantized as cq_quantize_row_q8_0 (Q8_0 and
        /// Q4_0 weights) or cq_quantize_row_q8_1 (Q4_1) does, then dequantized exactly.
        func quantizedActivations(_ x: ArraySlice<Float>) -> [Double] {
            let x = Array(x)
            var out = [Double](repeating: 0, count: k)
            if format == .q4_1 {
                var q = [UInt8](repeating: 0, count: Int(cq_row_bytes_q8_1(Int64(k))))
                cq_quantize_row_q8_1(x, &q, Int64(k))
                for b in 0..<(k / 32) {
                    let d = q.withUnsafeBytes { $0.load(fromByteOffset: 40 * b, as: Float.self) }
                    for j in 0..<32 { out[32 * b + j] = Double(d) * Double(Int8(bitPattern: q[40 * b + 8 + j])) }
                }
            } else {
                var q = [UInt8](repeating: 0, count: Int(cq_row_bytes_q8_0(Int64(k))))
                cq_quantize_row_q8_0(x, &q, Int64(k))
                var f = [Float](repeating: 0, count: k)
                cq_dequantize_row_q8_0(q, &f, Int64(k))
                out = f.map(Double.init)
            }
            return out
        }
    }

    func linear(_ w: Packed, _ x: [Float], n: Int, rows: Range<Int>, into y: inout [Float], ldy: Int, accumulate: Bool = false) {
        cq_linear(w.cq, w.packed, Int64(w.k), Int64(rows.lowerBound), Int64(rows.upperBound), x, Int64(w.k), Int64(n),
                  &y, Int64(ldy), accumulate ? 1 : 0)
    }

    func testPackedRowsRoundTrip() {
        for format in [WeightFormat.q8_0, .q4_0, .q4_1] {
            let w = Packed(format, rows: 37, k: 96, seed: 1)
            defer { w.free() }
            XCTAssertEqual(cq_packed_bytes(w.cq, 96, 37), 48 * w.rowBytes, "\(format): 3 panels of 16 rows")
            var row = [UInt8](repeating: 0, count: w.rowBytes), floats = [Float](repeating: 0, count: 96)
            for r in 0..<w.rows {
                cq_unpack_row(w.cq, w.packed, 96, Int64(r), &row)
                XCTAssertEqual(row, Array(w.gguf[(r * w.rowBytes)..<((r + 1) * w.rowBytes)]), "\(format) row \(r)")
                cq_dequantize_packed_row(w.cq, w.packed, 96, Int64(r), &floats)
                XCTAssertEqual(floats, w.dequantized(r), "\(format) row \(r)")
            }
        }
    }

    /// Every path this CPU has against Double, at many n and at row counts that are not
    /// multiples of the 16-row panel; and the exactness contract.
    func testEveryKernelAgainstTheDequantizedMatrix() {
        for format in [WeightFormat.q8_0, .q4_0, .q4_1] {
            for (rows, k) in [(37, 96), (53, 576), (21, 1536)] {
                let w = Packed(format, rows: rows, k: k, seed: UInt64(rows * k))
                defer { w.free() }
                let nMax = 130
                let x = randomFloats(nMax * k, seed: UInt64(k + rows))
                // Double reference for every activation row, and the scale of its terms.
                var expected = [Double](repeating: 0, count: nMax * rows), magnitude = expected
                let wd = (0..<rows).map { w.dequantized($0).map(Double.init) }
                for i in 0..<nMax {
                    let xq = w.quantizedActivations(x[(i * k)..<((i + 1) * k)])
                    for r in 0..<rows {
                        var sum = 0.0, mag = 0.0
                        for c in 0..<k { sum += wd[r][c] * xq[c]; mag += abs(wd[r][c] * xq[c]) }
                        expected[i * rows + r] = sum
                        magnitude[i * rows + r] = mag
                    }
                }
                var simdResult: [Float]?
                for kernel in Self.kernels where cq_select_kernel(kernel) == 1 {
                    defer { cq_select_kernel(nil) }
                    XCTAssertEqual(String(cString: cq_kernel_name()), kernel)
                    var full = [Float](repeating: 0, count: nMax * rows)
                    linear(w, x, n: nMax, rows: 0..<rows, into: &full, ldy: rows)
                    for n in [1, 3, 4, 5, 17, 64, 130] {
                        var y = [Float](repeating: .nan, count: n * rows)
                        linear(w, x, n: n, rows: 0..<rows, into: &y, ldy: rows)
                        for e in y.indices {
                            // Float rounding only: two roundings per block (the portable path's
                            // multiply and add; a SIMD path's scale product and fma) of at most
                            // the terms' scale, over k / 32 blocks.
                            XCTAssertLessThanOrEqual(abs(Double(y[e]) - expected[e]), Double(k / 32 + 2) * 1.2e-7 * magnitude[e] + 1e-30,
                                                     "\(format) \(kernel) \(rows)x\(k) n \(n) element \(e)")
                        }
                        // Row i's result is the same bits whatever n.
                        XCTAssertEqual(y, Array(full[0..<(n * rows)]), "\(format) \(kernel) \(rows)x\(k): n \(n) against n 130")
                    }
                    // Split row ranges (not on panel boundaries), written into a wider Y, give the same bits.
                    let ldy = rows + 3
                    var split = [Float](repeating: -7, count: nMax * ldy)
                    let cuts = [0, 5, rows / 2, rows / 2 + 1, rows - 2, rows]
                    for (a, b) in zip(cuts, cuts.dropFirst()) where a < b {
                        split.withUnsafeMutableBufferPointer { buffer in
                            cq_linear(w.cq, w.packed, Int64(k), Int64(a), Int64(b), x, Int64(k), Int64(nMax), buffer.baseAddress! + a,
                                      Int64(ldy), 0)
                        }
                    }
                    for i in 0..<nMax {
                        XCTAssertEqual(Array(split[(i * ldy)..<(i * ldy + rows)]), Array(full[(i * rows)..<((i + 1) * rows)]),
                                       "\(format) \(kernel): split ranges, row \(i)")
                        XCTAssertEqual(Array(split[(i * ldy + rows)..<((i + 1) * ldy)]), [-7, -7, -7], "\(format) \(kernel): beyond the range")
                    }
                    // accumulate adds the same bits to what is there.
                    var acc = [Float](repeating: 0.5, count: nMax * rows)
                    linear(w, x, n: nMax, rows: 0..<rows, into: &acc, ldy: rows, accumulate: true)
                    XCTAssertEqual(acc, full.map { 0.5 + $0 }, "\(format) \(kernel): accumulate")
                    // The SIMD paths perform the same float operations per pair.
                    if Self.simdKernels.contains(kernel) {
                        if let simdResult { XCTAssertEqual(full, simdResult, "\(format) \(kernel) against the other SIMD paths") }
                        simdResult = full
                    }
                }
            }
        }
    }

    /// BlockQuantizedWeight's multiply is cq_linear: a row range and one row at a time give the
    /// same bits as the whole matrix at once (what exact speculative verification needs).
    func testWeightMultiplyIsExactAcrossRowsAndRanges() throws {
        for format in [WeightFormat.q8_0, .q4_0, .q4_1] {
            let (rows, k, n) = (75, 192, 70)
            let values = randomFloats(rows * k, seed: 9)
            let weight = try InferenceModel.weight([.floats(values, rows: rows, columns: k)], format: format, name: "w") as! BlockQuantizedWeight
            let x = randomFloats(n * k, seed: 10)
            var all = [Float](repeating: 0, count: n * rows)
            weight.multiply(x, count: n, into: &all, ldy: rows, accumulate: false)
            for i in [0, 1, 33, 69] {
                var one = [Float](repeating: 0, count: rows)
                x.withUnsafeBufferPointer { weight.multiply($0.baseAddress! + i * k, count: 1, into: &one, ldy: rows, accumulate: false) }
                XCTAssertEqual(one, Array(all[(i * rows)..<((i + 1) * rows)]), "\(format) row \(i)")
            }
            let part = 7..<50
            var sub = [Float](repeating: 0, count: n * part.count)
            weight.multiply(x, count: n, rows: part, into: &sub, ldy: part.count, accumulate: false)
            for i in 0..<n {
                XCTAssertEqual(Array(sub[(i * part.count)..<((i + 1) * part.count)]),
                               Array(all[(i * rows + part.lowerBound)..<(i * rows + part.upperBound)]), "\(format) rows \(part), row \(i)")
            }
            var row = [Float](repeating: 0, count: k)
            weight.dequantize(row: 74, into: &row)
            let original = Array(values[(74 * k)..<(75 * k)])
            XCTAssertLessThan(zip(row, original).map { abs($0 - $1) }.max()!, original.map(abs).max()! / 6, "\(format): the last, padded panel")
        }
    }

    /// The row-layout matmuls (cq_matmul_*, on GGUF rows and pre-quantized activations) and
    /// cq_linear compute the same products, up to float rounding.
    func testRowLayoutMatmulsAgreeWithLinear() {
        for format in [WeightFormat.q8_0, .q4_0, .q4_1] {
            let (rows, k, n) = (37, 576, 5)
            let w = Packed(format, rows: rows, k: k, seed: 21)
            defer { w.free() }
            let x = randomFloats(n * k, seed: 22)
            let xBytes = Int(format == .q4_1 ? cq_row_bytes_q8_1(Int64(k)) : cq_row_bytes_q8_0(Int64(k)))
            var xq = [UInt8](repeating: 0, count: n * xBytes)
            xq.withUnsafeMutableBytes { q in
                for i in 0..<n {
                    let row = Array(x[(i * k)..<((i + 1) * k)]), out = q.baseAddress! + i * xBytes
                    if format == .q4_1 { cq_quantize_row_q8_1(row, out, Int64(k)) } else { cq_quantize_row_q8_0(row, out, Int64(k)) }
                }
            }
            for kernel in Self.kernels where cq_select_kernel(kernel) == 1 {
                defer { cq_select_kernel(nil) }
                var viaLinear = [Float](repeating: 0, count: n * rows), viaRows = viaLinear
                linear(w, x, n: n, rows: 0..<rows, into: &viaLinear, ldy: rows)
                w.gguf.withUnsafeBytes { g in
                    xq.withUnsafeBytes { q in
                        let (W, X) = (g.baseAddress!, q.baseAddress!)
                        switch format {
                        case .q8_0: cq_matmul_q8_0(W, X, &viaRows, Int64(k), Int64(rows), Int64(n), Int64(rows), 0)
                        case .q4_0: cq_matmul_q4_0(W, X, &viaRows, Int64(k), Int64(rows), Int64(n), Int64(rows), 0)
                        default: cq_matmul_q4_1(W, X, &viaRows, Int64(k), Int64(rows), Int64(n), Int64(rows), 0)
                        }
                    }
                }
                // Terms of a few units over 576 values: float rounding stays far below 1e-2.
                for e in viaLinear.indices {
                    XCTAssertEqual(viaLinear[e], viaRows[e], accuracy: 1e-2, "\(format) \(kernel) element \(e)")
                }
            }
        }
    }

    // MARK: the pool

    /// Each task adds its index + 1 to its own slot: every task runs exactly once.
    static let countTask: @convention(c) (UnsafeMutableRawPointer?, Int32) -> Void = { ctx, task in
        let slots = ctx!.assumingMemoryBound(to: Int.self)
        slots[Int(task)] += Int(task) + 1
    }

    func runCounting(_ tasks: Int) -> [Int] {
        var slots = [Int](repeating: 0, count: tasks)
        slots.withUnsafeMutableBufferPointer { cq_parallel_for(Int32(tasks), Self.countTask, $0.baseAddress!) }
        return slots
    }

    func testPoolRunsEveryTaskOnce() {
        XCTAssertGreaterThanOrEqual(cq_threads(), 1)
        for tasks in [0, 1, 2, 3, 17, 1000, 100_000] {
            XCTAssertEqual(runCounting(tasks), (0..<tasks).map { $0 + 1 }, "\(tasks) tasks")
        }
        // Resizing between jobs, down to the caller alone and back.
        let threads = cq_threads()
        defer { cq_set_threads(Int32(threads)) }
        for n in [1, 3, 2] {
            cq_set_threads(Int32(n))
            XCTAssertEqual(cq_threads(), Int32(n))
            XCTAssertEqual(runCounting(500), (0..<500).map { $0 + 1 }, "\(n) threads")
        }
    }

    /// A task that itself calls cq_parallel_for: the inner job runs serially on that thread.
    static let nestedTask: @convention(c) (UnsafeMutableRawPointer?, Int32) -> Void = { ctx, task in
        let rows = ctx!.assumingMemoryBound(to: Int.self)
        cq_parallel_for(8, QuantizedKernelTests.countTask, rows + Int(task) * 8)
    }

    func testPoolNestedCallsRunSerially() {
        var slots = [Int](repeating: 0, count: 64 * 8)
        slots.withUnsafeMutableBufferPointer { cq_parallel_for(64, Self.nestedTask, $0.baseAddress!) }
        XCTAssertEqual(slots, (0..<(64 * 8)).map { $0 % 8 + 1 })
    }

    /// Two threads calling at once (jobs of cq_linear and plain counting) get what one caller gets.
    func testPoolWithConcurrentCallers() {
        let w = Packed(.q8_0, rows: 300, k: 576, seed: 4)
        defer { w.free() }
        let n = 9
        let x = randomFloats(n * 576, seed: 5)
        var serial = [Float](repeating: 0, count: n * 300)
        linear(w, x, n: n, rows: 0..<300, into: &serial, ldy: 300)
        let rounds = 200
        let failures = UnsafeMutablePointer<Int>.allocate(capacity: 2)
        failures.initialize(repeating: 0, count: 2)
        defer { failures.deallocate() }
        DispatchQueue.concurrentPerform(iterations: 2) { caller in
            for round in 0..<rounds {
                if caller == 0 {
                    var y = [Float](repeating: 0, count: n * 300)
                    cq_linear(w.cq, w.packed, 576, 0, 300, x, 576, Int64(n), &y, 300, 0)
                    if y != serial { failures[caller] += 1 }
                } else {
                    let tasks = 50 + round % 7
                    if runCounting(tasks) != (0..<tasks).map({ $0 + 1 }) { failures[caller] += 1 }
                }
            }
        }
        XCTAssertEqual(failures[0], 0, "cq_linear beside another caller")
        XCTAssertEqual(failures[1], 0, "counting beside another caller")
    }
}
