// GGUFTokenizerTests: tokenizers read from GGUF metadata: SmolLM2's (ids from `tokenizers`
// with SmolLM2's tokenizer.json rebuilt on the GGUF's vocabulary, in the committed fixture) and
// llama.cpp's test vocabularies with their .inp/.out vectors. The files come from
// launch/fetch-test-assets; tests skip without them.
import Foundation
import SortedTestSupport
import XCTest
import SortedFormats
@testable import SortedData

final class GGUFTokenizerTests: XCTestCase {
    func requireFile(_ relative: String) throws -> URL {
        let url = vendorData.appendingPathComponent(relative)
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw XCTSkip("vendor-data/\(relative) is absent; run launch/fetch-test-assets")
        }
        return url
    }

    /// SmolLM2's tokenizer read two ways, from the GGUF and from its tokenizer.json, gives the
    /// ids of `tokenizers` with SmolLM2's tokenizer.json on every fixture string, whitespace runs
    /// before digits included: Digits splits first, so "  1 In" is ĠĠ|1|ĠIn (ids 256 33 533),
    /// not Ġ|Ġ1|ĠIn (216 216 33 533) as GPT-2's regex alone would split it.
    func testSmolLM2MatchesTokenizers() throws {
        let url = try requireFile("SmolLM2-135M-Instruct.Q4_1.gguf")
        let fromGGUF = try TokenizerLoader.load(url.path)
        XCTAssertEqual(fromGGUF.vocabularySize, 49152)
        XCTAssertEqual(fromGGUF.bosID, 1)
        XCTAssertEqual(fromGGUF.eosID, 2)
        XCTAssertFalse(fromGGUF.addsBOS)
        XCTAssertEqual(fromGGUF.id(forToken: "<|im_start|>"), 1)
        let expected = try loadJSON(tokenizerFixtures.appendingPathComponent("smollm2-expected.json"))
        let dir = try makeTemporaryDirectory("sortedtrain-smollm2")
        let jsonURL = dir.appendingPathComponent("tokenizer.json")
        try smolLM2TokenizerJSON(gguf: url, sections: expected["tokenizer_json"]!).write(to: jsonURL, atomically: true, encoding: .utf8)
        let fromJSON = try TokenizerLoader.load(jsonURL.path)
        XCTAssertEqual(fromJSON.vocabularySize, 49152)
        try checkSmolLM2(fromGGUF, "SmolLM2 GGUF", expected)
        try checkSmolLM2(fromJSON, "SmolLM2 tokenizer.json", expected)
    }

    /// SmolLM2's tokenizer.json: the fixture's copy without vocab and merges, filled in from the GGUF.
    func smolLM2TokenizerJSON(gguf url: URL, sections: JSONValue) throws -> String {
        let metadata = try GGUFFile(contentsOf: url).metadata
        let tokens = try XCTUnwrap(metadata["tokenizer.ggml.tokens"]?.strings)
        let merges = try XCTUnwrap(metadata["tokenizer.ggml.merges"]?.strings)
        var root = try XCTUnwrap(sections.object)
        var model = try XCTUnwrap(root["model"]?.object)
        var vocab: [String: JSONValue] = [:]
        for (id, token) in tokens.enumerated() { vocab[token] = .number(Double(id)) }
        model["vocab"] = .object(vocab)
        model["merges"] = .array(merges.map { .string($0) })
        root["model"] = .object(model)
        return JSONValue.object(root).serialized
    }

    func checkSmolLM2(_ t: Tokenizer, _ name: String, _ expected: JSONValue,
                      file: StaticString = #filePath, line: UInt = #line) throws {
        let strings = try fixtureStrings()
        let expectedIDs = expected["ids"]!.array!
        let decoded = expected["decoded"]!.array!
        XCTAssertEqual(expectedIDs.count, strings.count, file: file, line: line)
        var mismatches = 0
        for (i, s) in strings.enumerated() {
            let got = t.encode(s, addSpecialTokens: false)
            if got != ids(expectedIDs[i]) {
                mismatches += 1
                if mismatches <= 5 { XCTFail("\(name) #\(i) \(jsonQuoted(s)): got \(got), want \(ids(expectedIDs[i]))", file: file, line: line) }
            }
            XCTAssertEqual(t.decode(got, skipSpecialTokens: false), decoded[i].string ?? s, "\(name) #\(i) decode", file: file, line: line)
        }
        print("\(name): \(strings.count - mismatches)/\(strings.count) strings identical to tokenizers")
        XCTAssertEqual(mismatches, 0, "\(name): \(mismatches) of \(strings.count) strings differ", file: file, line: line)
    }

    /// llama.cpp's vectors: inputs separated by `__ggml_vocab_test__` lines, one line of
    /// space-separated ids per input (made with HF tokenizers, no special tokens added).
    func checkLlamaCppVectors(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let url = try requireFile("llama.cpp-vocab/\(name)")
        let t = try TokenizerLoader.load(url.path)
        let input = try String(contentsOf: URL(fileURLWithPath: url.path + ".inp"), encoding: .utf8)
        let output = try String(contentsOf: URL(fileURLWithPath: url.path + ".out"), encoding: .utf8)
        var texts = input.components(separatedBy: "\n__ggml_vocab_test__\n")
        if texts.last == "" { texts.removeLast() }
        var lines = output.components(separatedBy: "\n")
        if lines.last == "" { lines.removeLast() }
        XCTAssertEqual(texts.count, lines.count, name, file: file, line: line)
        var same = 0
        for (text, want) in zip(texts, lines) {
            let wantIDs = want.split(separator: " ").map { Int32($0)! }
            let got = t.encode(text, addSpecialTokens: false)
            if got == wantIDs { same += 1 } else { XCTFail("\(name) \(jsonQuoted(text)): got \(got), want \(wantIDs)", file: file, line: line) }
        }
        print("\(name): \(same)/\(texts.count) vectors identical")
    }

    func testLlamaSentencePieceVectors() throws { try checkLlamaCppVectors("ggml-vocab-llama-spm.gguf") }
    func testLlama3Vectors() throws { try checkLlamaCppVectors("ggml-vocab-llama-bpe.gguf") }
    func testGPT2Vectors() throws { try checkLlamaCppVectors("ggml-vocab-gpt-2.gguf") }

    func testLlamaSentencePieceBasics() throws {
        let url = try requireFile("llama.cpp-vocab/ggml-vocab-llama-spm.gguf")
        let t = try TokenizerLoader.load(url.path)
        XCTAssertEqual(t.bosID, 1)
        XCTAssertEqual(t.eosID, 2)
        XCTAssertTrue(t.addsBOS)
        let s = "Hello wörld 🦙 — 東京\n  two spaces"
        let encoded = t.encode(s, addSpecialTokens: true)
        XCTAssertEqual(encoded.first, 1)
        XCTAssertEqual(t.decode(encoded, skipSpecialTokens: true), s)
    }

    func testGGUFWithoutTokenizerIsAClearError() throws {
        let url = fixtures.appendingPathComponent("tokenizers/small.gguf")
        XCTAssertThrowsError(try TokenizerLoader.load(url.path)) { error in
            let message = String(describing: error)
            XCTAssertTrue(message.hasPrefix(url.path), message)
            XCTAssertTrue(message.contains("tokenizer.ggml.model"), message)
        }
    }
}
