// TokenizerExactnessTests: Swift ids equal the HF `tokenizers` library's on the committed
// fixture (scripts/make_tokenizer_fixture.py), for byte-level and SentencePiece-style BPE.
import Foundation
import SortedFormats
import SortedTestSupport
import XCTest
@testable import SortedData

let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .appendingPathComponent("Fixtures")
let tokenizerFixtures = fixtures.appendingPathComponent("tokenizers")
let vendorData = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("vendor-data")

func loadJSON(_ url: URL) throws -> JSONValue { try JSONParser.parse(try Data(contentsOf: url)) }

func fixtureStrings() throws -> [String] {
    try loadJSON(tokenizerFixtures.appendingPathComponent("strings.json")).array!.map { $0.string! }
}

func ids(_ v: JSONValue) -> [Int32] { v.array!.map { Int32($0.int!) } }

final class TokenizerExactnessTests: XCTestCase {
    /// Compares every string; reports the first few mismatches and the match rate.
    func checkFixture(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let tokenizer = try TokenizerLoader.load(tokenizerFixtures.appendingPathComponent("\(name).json").path)
        let strings = try fixtureStrings()
        let expected = try loadJSON(tokenizerFixtures.appendingPathComponent("expected.json"))[name]!
        let expectedIDs = expected["ids"]!.array!
        let withSpecial = expected["with_special"]!.array!
        let decoded = expected["decoded"]!.array!
        XCTAssertEqual(expectedIDs.count, strings.count)
        var mismatches = 0
        for (i, s) in strings.enumerated() {
            let got = tokenizer.encode(s, addSpecialTokens: false)
            let want = ids(expectedIDs[i])
            if got != want {
                mismatches += 1
                if mismatches <= 5 { XCTFail("\(name) #\(i) \(jsonQuoted(s)): got \(got), want \(want)", file: file, line: line) }
            }
            if i < withSpecial.count {
                XCTAssertEqual(tokenizer.encode(s, addSpecialTokens: true), ids(withSpecial[i]), "\(name) #\(i) with special tokens", file: file, line: line)
            }
            // tokenizers' decode of the reference ids (null in the fixture: equal to the string).
            let wantDecoded = decoded[i].string ?? s
            XCTAssertEqual(tokenizer.decode(want, skipSpecialTokens: false), wantDecoded, "\(name) #\(i) decode", file: file, line: line)
        }
        print("\(name): \(strings.count - mismatches)/\(strings.count) strings identical to tokenizers")
        XCTAssertEqual(mismatches, 0, "\(name): \(mismatches) of \(strings.count) strings differ", file: file, line: line)
    }

    func testByteLevelLikeSmolLM2() throws { try checkFixture("bytelevel") }
    func testByteLevelLikeLlama3() throws { try checkFixture("llama3") }
    func testSentencePieceLegacy() throws {
        try checkFixture("spm-legacy")
        let t = try TokenizerLoader.load(tokenizerFixtures.appendingPathComponent("spm-legacy.json").path) as! BPETokenizer
        XCTAssertTrue(t.splitBeforeMetaspace, "the fixture exercises the word-split fast path")
    }
    func testSentencePieceMetaspace() throws { try checkFixture("spm-metaspace") }

    func testRoundTripWhereLossless() throws {
        let strings = try fixtureStrings()
        for name in ["bytelevel", "llama3", "spm-legacy"] {
            let tokenizer = try TokenizerLoader.load(tokenizerFixtures.appendingPathComponent("\(name).json").path)
            XCTAssertTrue(tokenizer.isLossless, name)
            for s in strings where !s.contains("\u{2581}") && !s.contains("<") {
                XCTAssertEqual(tokenizer.decode(tokenizer.encode(s, addSpecialTokens: false, parseSpecial: false)), s, "\(name): \(jsonQuoted(s))")
            }
        }
    }

    func testMalformedFieldsAreRefusedNotGuessed() throws {
        let source = try Data(contentsOf: tokenizerFixtures.appendingPathComponent("spm-metaspace.json"))
        let cases: [(String, (inout [String: Any]) -> Void)] = [
            ("model.type", { root in var m = root["model"] as! [String: Any]; m["type"] = 5; root["model"] = m }),
            // An empty replacement would silently drop every space.
            ("replacement", { root in var p = root["pre_tokenizer"] as! [String: Any]; p["replacement"] = ""; root["pre_tokenizer"] = p }),
        ]
        for (expected, damage) in cases {
            var root = try JSONSerialization.jsonObject(with: source) as! [String: Any]
            damage(&root)
            let file = FileManager.default.temporaryDirectory.appendingPathComponent("damaged-\(expected)-\(UUID().uuidString).json")
            try JSONSerialization.data(withJSONObject: root).write(to: file)
            defer { try? FileManager.default.removeItem(at: file) }
            XCTAssertThrowsError(try TokenizerLoader.load(file.path), expected) { XCTAssertTrue("\($0)".contains(expected), "\($0)") }
        }
    }

    func testSpecialTokensAreParsedOnlyWhenAsked() throws {
        let t = try TokenizerLoader.load(tokenizerFixtures.appendingPathComponent("bytelevel.json").path)
        let start = t.id(forToken: "<|im_start|>")!
        XCTAssertEqual(t.encode("<|im_start|>", addSpecialTokens: false, parseSpecial: true), [start])
        let plain = t.encode("<|im_start|>", addSpecialTokens: false, parseSpecial: false)
        XCTAssertFalse(plain.contains(start))
        XCTAssertEqual(t.decode(plain), "<|im_start|>")
        XCTAssertEqual(t.decode([start, 65 - 32], skipSpecialTokens: true), t.decode([65 - 32]))
    }

    func testSpecialIDsFromTheFiles() throws {
        let spm = try TokenizerLoader.load(tokenizerFixtures.appendingPathComponent("spm-legacy.json").path)
        XCTAssertEqual(spm.bosID, 1)
        XCTAssertEqual(spm.eosID, 2)
        XCTAssertTrue(spm.addsBOS)
        XCTAssertEqual(spm.encode("hi", addSpecialTokens: true).first, 1)
        let bl = try TokenizerLoader.load(tokenizerFixtures.appendingPathComponent("bytelevel.json").path)
        XCTAssertEqual(bl.eosID, bl.id(forToken: "<|endoftext|>"))
        XCTAssertFalse(bl.addsBOS)
    }

    /// The heap merge (long words) and the scan merge (short words) agree on every word.
    func testHeapAndScanMergesAgree() throws {
        let url = tokenizerFixtures.appendingPathComponent("bytelevel.json")
        let definition = try BPETokenizer.Definition(tokenizerJSON: try loadJSON(url), config: nil)
        var rng = SystemRandomNumberGenerator()
        let corpus = try String(contentsOf: tokenizerFixtures.appendingPathComponent("corpus.txt"), encoding: .utf8)
        let words = corpus.split(whereSeparator: { $0 == " " || $0 == "\n" }).map { " " + $0 }
        for _ in 0..<500 {
            let w = Array(words.randomElement(using: &rng)!.utf8) + Array(words.randomElement(using: &rng)!.utf8)
            XCTAssertEqual(definition.model.encodeWordWithHeap(w), definition.model.encodeWordWithScan(w), String(decoding: w, as: UTF8.self))
        }
    }

    func testBadTokenizerFilesGiveOneLineErrors() throws {
        let dir = try makeTemporaryDirectory("sortedtrain-tok")
        func expectError(_ text: String, contains needle: String, line: UInt = #line) {
            let url = dir.appendingPathComponent("tokenizer.json")
            try! Data(text.utf8).write(to: url)
            XCTAssertThrowsError(try TokenizerLoader.load(url.path), line: line) { error in
                let message = String(describing: error)
                XCTAssertTrue(message.contains(url.path), "\(message) should name the file", line: line)
                XCTAssertTrue(message.contains(needle), "\(message) should contain \(needle)", line: line)
                XCTAssertFalse(message.contains("\n"), line: line)
            }
        }
        expectError("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \n \"merges\": [\"a b\"]", contains: ":2:")
        expectError("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0, \"b\": 1}, \"merges\": [\"a b\"]}}", contains: "merges[0]")
        expectError("{\"model\": {\"type\": \"WordPiece\", \"vocab\": {}}}", contains: "WordPiece")
        expectError("{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": 0}, \"merges\": []}, \"pre_tokenizer\": {\"type\": \"Nope\"}}", contains: "Nope")
        expectError("[1, 2]", contains: "model")
        XCTAssertThrowsError(try TokenizerLoader.load(dir.appendingPathComponent("missing.json").path)) { error in
            XCTAssertTrue(String(describing: error).contains("does not exist"))
        }
    }

    func testByteTokenizer() {
        let t = ByteTokenizer()
        let s = "héllo 🦙\n"
        let ids = t.encode(s, addSpecialTokens: true)
        XCTAssertEqual(ids.first, ByteTokenizer.bos)
        XCTAssertEqual(ids.count, s.utf8.count + 1)
        XCTAssertEqual(t.decode(ids, skipSpecialTokens: true), s)
        XCTAssertEqual(t.decode([104, ByteTokenizer.eos], skipSpecialTokens: false), "h<eos>")
        XCTAssertEqual(t.decode([0xF0, 0x9F]), "\u{FFFD}")
        XCTAssertEqual(t.id(forToken: "<0x41>"), 65)
        XCTAssertEqual(t.token(forID: 10), "<0x0A>")
        XCTAssertEqual(t.vocabularySize, 259)
    }
}
