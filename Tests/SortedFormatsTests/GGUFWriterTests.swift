// GGUFWriterTests: GGUFWriter's files read back through GGUFFile — every metadata value type,
// F32/F16/Q8_0 tensors, alignment and dimension order — and Q8_0 against a hand-computed block.
import Foundation
import SortedTestSupport
import XCTest
@testable import SortedFormats

final class GGUFWriterTests: XCTestCase {
    private func roundTrip(_ writer: GGUFWriter) throws -> GGUFFile {
        let url = try makeTemporaryDirectory("gguf-writer").appendingPathComponent("w.gguf")
        try writer.write(to: url)
        return try GGUFFile(contentsOf: url)
    }

    func testMetadataOfEveryTypeRoundTrips() throws {
        let values: [(String, GGUFFile.Value)] = [
            ("t.u8", .uint8(200)), ("t.i8", .int8(-100)), ("t.u16", .uint16(60000)), ("t.i16", .int16(-30000)),
            ("t.u32", .uint32(4_000_000_000)), ("t.i32", .int32(-2_000_000_000)), ("t.f32", .float32(1.5)),
            ("t.bool", .bool(true)), ("t.false", .bool(false)), ("t.string", .string("héllo wörld ✓")), ("t.empty", .string("")),
            ("t.u64", .uint64(1 << 63 + 5)), ("t.i64", .int64(-(1 << 62))), ("t.f64", .float64(2.718281828459045)),
            ("t.strings", .array([.string("a"), .string("bc"), .string(""), .string("∂")])),
            ("t.ints", .array([.int32(1), .int32(2), .int32(-4)])),
            ("t.floats", .array([.float32(0.5), .float32(-1.25)])),
            ("t.bools", .array([.bool(true), .bool(false)])),
            ("t.u64s", .array([.uint64(7)])),
            ("t.nested", .array([.array([.uint8(1), .uint8(2)]), .array([.uint8(3)])])),
            ("t.none", .array([])),
        ]
        var w = GGUFWriter()
        for (k, v) in values { w.set(k, v) }
        w.set("t.u8", .uint8(201))   // replaced in place, order kept
        let f = try roundTrip(w)
        XCTAssertEqual(f.version, 3)
        XCTAssertEqual(f.alignment, 32)
        XCTAssertEqual(f.metadataKeys, ["general.alignment"] + values.map(\.0))
        XCTAssertEqual(f.metadata["general.alignment"], .uint32(32))
        XCTAssertEqual(f.metadata["t.u8"], .uint8(201))
        for (k, v) in values.dropFirst() { XCTAssertEqual(f.metadata[k], v, k) }
    }

    func testTensorsRoundTripAlignedInGGMLOrder() throws {
        var w = GGUFWriter()
        let a: [Float] = (0..<15).map { Float($0) * 0.25 - 1 }          // [3, 5], 60 bytes: padded to 64
        let b: [Float] = (0..<7).map { Float($0) - 3 }                   // 1-D, exact in f16
        let q: [Float] = (0..<64).map { sin(Float($0)) }                 // [2, 32]: 2 Q8_0 blocks
        w.addTensor("a", shape: [3, 5], values: a, type: .f32)
        w.addTensor("b", shape: [7], values: b, type: .f16)
        w.addTensor("q", shape: [2, 32], values: q, type: .q8_0)
        let f = try roundTrip(w)
        XCTAssertEqual(f.tensors.map(\.name), ["a", "b", "q"])
        XCTAssertEqual(try f.tensor("a").dimensions, [5, 3], "ne[0] is the innermost (row length)")
        XCTAssertEqual(try f.tensor("a").shape, [3, 5])
        XCTAssertEqual(try f.tensor("q").byteCount, 68)
        XCTAssertEqual(try f.tensor("b").type, .f16)
        for t in f.tensors { XCTAssertEqual(t.fileOffset % 32, 0, t.name) }
        XCTAssertEqual(try f.floats("a"), a)
        XCTAssertEqual(try f.floats("b"), b)
        let back = try f.floats("q")
        for (x, y) in zip(q, back) { XCTAssertEqual(x, y, accuracy: 1 / 127 * 0.5 * 1.01 + 1e-3) }
    }

    /// ggml's quantize_row_q8_0_ref: d = max|x| / 127 (f16), q = roundf(x / d), half away from zero.
    func testQ8_0BlockByHand() {
        // max|x| = 127, so d = 1 (f16 0x3C00) and q is x rounded half away from zero.
        var x: [Float] = [-127, 2.5, -2.5, 1.5, 0.4, 126.6, -0.5, 0.5]
        x += (8..<32).map(Float.init)
        let zeros = [Float](repeating: 0, count: 32)
        let bytes = (x + zeros).withUnsafeBufferPointer { GGUFWriter.encodeQ8_0($0) }
        var want: [UInt8] = [0x00, 0x3C]
        want += ([-127, 3, -3, 2, 0, 127, -1, 1] + (8..<32).map { Int8($0) }).map { UInt8(bitPattern: $0) }
        want += [UInt8](repeating: 0, count: 34)    // an all-zero block: d = 0, q = 0
        XCTAssertEqual(bytes, want)

        // A scale that is not a power of two: x = j − 16, d = 16/127 → f16 0x3008 (0.1259765625),
        // q = round(x · 127/16).
        let ramp = (0..<32).map { Float($0 - 16) }
        let block = ramp.withUnsafeBufferPointer { GGUFWriter.encodeQ8_0($0) }
        XCTAssertEqual(Array(block[0..<2]), [0x08, 0x30])
        XCTAssertEqual(Array(block[2..<7]).map { Int8(bitPattern: $0) }, [-127, -119, -111, -103, -95])
        XCTAssertEqual(Array(block[31..<34]).map { Int8(bitPattern: $0) }, [103, 111, 119])
    }
}
