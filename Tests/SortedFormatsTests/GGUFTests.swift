// GGUFTests: the GGUF reader against files written and dequantised by gguf-py
// (scripts/make_tokenizer_fixture.py), every truncation of a file, and the real SmolLM2 file.
import Foundation
import SortedTestSupport
import XCTest
@testable import SortedFormats

private let testsDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
private let ggufFixtures = testsDirectory.appendingPathComponent("Fixtures/tokenizers")
private let smolLM2 = testsDirectory.deletingLastPathComponent().appendingPathComponent("vendor-data/SmolLM2-135M-Instruct.Q4_1.gguf")

private func expectedJSON(_ name: String) throws -> [String: Any] {
    try JSONSerialization.jsonObject(with: Data(contentsOf: ggufFixtures.appendingPathComponent(name))) as! [String: Any]
}

final class GGUFTests: XCTestCase {
    func testMetadataOfEveryType() throws {
        let f = try GGUFFile(contentsOf: ggufFixtures.appendingPathComponent("small.gguf"))
        XCTAssertEqual(f.version, 3)
        XCTAssertEqual(f.metadata["general.architecture"]?.string, "llama")
        XCTAssertEqual(f.metadata["test.u8"], .uint8(200))
        XCTAssertEqual(f.metadata["test.i8"], .int8(-100))
        XCTAssertEqual(f.metadata["test.u16"], .uint16(60000))
        XCTAssertEqual(f.metadata["test.i16"], .int16(-30000))
        XCTAssertEqual(f.metadata["test.u32"], .uint32(4_000_000_000))
        XCTAssertEqual(f.metadata["test.i32"], .int32(-2_000_000_000))
        XCTAssertEqual(f.metadata["test.f32"], .float32(1.5))
        XCTAssertEqual(f.metadata["test.bool"], .bool(true))
        XCTAssertEqual(f.metadata["test.string"]?.string, "héllo wörld ✓")
        XCTAssertEqual(f.metadata["test.u64"], .uint64(1 << 63 + 5))
        XCTAssertNil(f.metadata["test.u64"]?.int, "a UInt64 above Int.max has no Int value")
        XCTAssertEqual(f.metadata["test.i64"], .int64(-(1 << 62)))
        XCTAssertEqual(f.metadata["test.f64"], .float64(2.718281828459045))
        XCTAssertEqual(f.metadata["test.array.ints"]?.ints, [1, 2, 3, -4])
        XCTAssertEqual(f.metadata["test.array.strings"]?.strings, ["a", "bc", "", "∂"])
        XCTAssertEqual(f.metadata["test.array.floats"]?.floats, [0.5, -1.25])
        XCTAssertEqual(f.metadataKeys.first, "general.architecture")
        XCTAssertEqual(f.metadataKeys.count, f.metadata.count)
    }

    func testTensorsDequantiseLikeGGUFPy() throws {
        let f = try GGUFFile(contentsOf: ggufFixtures.appendingPathComponent("small.gguf"))
        let expected = try expectedJSON("small-gguf-expected.json")
        XCTAssertEqual(f.tensors.map(\.name), ["t.f32", "t.f16", "t.bf16", "t.q8_0", "t.q4_0", "t.q4_1"])
        for (name, value) in expected {
            let e = value as! [String: Any]
            let t = try f.tensor(name)
            XCTAssertEqual(t.shape, e["shape"] as! [Int], name)
            XCTAssertEqual(t.type.description, e["type"] as! String, name)
            let want = (e["values"] as! [Double]).map(Float.init)
            let got = try f.floats(name)
            // gguf-py computes in float32 too: the values agree to the last bit or one ulp.
            XCTAssertEqual(got.count, want.count, name)
            for (g, w) in zip(got, want) {
                XCTAssertLessThanOrEqual(abs(g - w), 1e-6 + 1e-6 * abs(w), "\(name): \(g) vs \(w)")
            }
        }
        XCTAssertThrowsError(try f.floats("missing")) { XCTAssertTrue(String(describing: $0).contains("has no tensor 'missing'")) }
    }

    /// Every prefix of a valid file fails with a FormatError naming the file, never a crash.
    func testEveryTruncationIsAClearError() throws {
        let url = ggufFixtures.appendingPathComponent("small.gguf")
        let bytes = try Data(contentsOf: url)
        let dir = try makeTemporaryDirectory("gguf")
        let cut = dir.appendingPathComponent("cut.gguf")
        // Bytes after the last tensor are alignment padding; every shorter prefix is damaged.
        let dataEnd = try GGUFFile(contentsOf: url).tensors.map { $0.fileOffset + $0.byteCount }.max()!
        XCTAssertLessThanOrEqual(bytes.count - dataEnd, 31)
        for length in 0..<dataEnd {
            try bytes.prefix(length).write(to: cut)
            XCTAssertThrowsError(try GGUFFile(contentsOf: cut), "length \(length)") { error in
                XCTAssertTrue(error is FormatError)
                XCTAssertTrue(String(describing: error).hasPrefix(cut.path))
            }
        }
    }

    /// Flipping any single header byte either still parses or fails cleanly.
    func testCorruptHeaderBytesNeverCrash() throws {
        let bytes = try Data(contentsOf: ggufFixtures.appendingPathComponent("small.gguf"))
        let dir = try makeTemporaryDirectory("gguf")
        let bad = dir.appendingPathComponent("bad.gguf")
        var failures = 0
        for position in 0..<min(bytes.count, 900) {
            for value: UInt8 in [0xFF, 0x7F, 0x00] where bytes[position] != value {
                var copy = bytes
                copy[position] = value
                try copy.write(to: bad)
                do {
                    let f = try GGUFFile(contentsOf: bad)
                    for t in f.tensors where t.type.isDequantizable { _ = try f.floats(t.name) }
                } catch let e as FormatError {
                    failures += 1
                    XCTAssertFalse(e.description.contains("\n"))
                }
            }
        }
        XCTAssertGreaterThan(failures, 100)
    }

    func testNotGGUF() throws {
        let url = ggufFixtures.appendingPathComponent("strings.json")
        XCTAssertThrowsError(try GGUFFile(contentsOf: url)) {
            XCTAssertTrue(String(describing: $0).contains("is not a GGUF file"))
        }
    }

    func testSmolLM2() throws {
        guard FileManager.default.fileExists(atPath: smolLM2.path) else {
            throw XCTSkip("vendor-data/SmolLM2-135M-Instruct.Q4_1.gguf is absent; run launch/fetch-test-assets")
        }
        let f = try GGUFFile(contentsOf: smolLM2)
        let expected = try expectedJSON("smollm2-expected.json")
        XCTAssertEqual(f.tensors.count, expected["tensor_count"] as! Int)
        XCTAssertEqual(f.metadata["llama.block_count"]?.int, 30)
        XCTAssertEqual(f.metadata["llama.embedding_length"]?.int, 576)
        XCTAssertEqual(f.metadata["llama.rope.freq_base"]?.double, 100000)
        XCTAssertEqual(f.metadata["tokenizer.ggml.tokens"]?.strings?.count, 49152)
        for (name, value) in expected["tensors"] as! [String: [String: Any]] {
            let t = try f.tensor(name)
            XCTAssertEqual(t.shape, value["shape"] as! [Int], name)
            XCTAssertEqual(t.type.description, value["type"] as! String, name)
            let got = try f.floats(name)
            let first = (value["first"] as! [Double]).map(Float.init)
            let last = (value["last"] as! [Double]).map(Float.init)
            XCTAssertEqual(Array(got.prefix(16)), first, name)
            XCTAssertEqual(Array(got.suffix(16)), last, name)
            let sum = got.reduce(0.0) { $0 + Double($1) }
            let sumAbs = got.reduce(0.0) { $0 + abs(Double($1)) }
            XCTAssertEqual(sum, value["sum"] as! Double, accuracy: 1e-6 * (value["sum_abs"] as! Double), name)
            XCTAssertEqual(sumAbs, value["sum_abs"] as! Double, accuracy: 1e-9 * (value["sum_abs"] as! Double), name)
        }
    }
}
