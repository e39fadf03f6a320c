// GGUFTokenizerTests: tokenizers read from GGUF metadata: SmolLM2's (ids from `tokenizers`
// with the same vocabulary, in the committed fixture) and llama.cpp's test vocabularies with
// their .inp/.out vectors. The files come from launch/fetch-test-assets; tests skip without them.
import Foundation
import XCTest
@testable import SortedData

final class GGUFTokenizerTests: XCTestCase {
    func requireFile(_ relative: String) throws -> URL {
        let url = vendorData.appendingPathComponent(relative)
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw XCTSkip("vendor-data/\(relative) is absent; run launch/fetch-test-assets")
        }
        return url
    }

    func testSmolLM2MatchesTokenizers() throws {
        let url = try requireFile("SmolLM2-135M-Instruct.Q4_1.gguf")
        let t = try TokenizerLoader.load(url.path)
        XCTAssertEqual(t.vocabularySize, 49152)
        XCTAssertEqual(t.bosID, 1)
        XCTAssertEqual(t.eosID, 2)
        XCTAssertFalse(t.addsBOS)
        XCTAssertEqual(t.id(forToken: "<|im_start|>"), 1)
        let strings = try fixtureStrings()
        let expected = try loadJSON(tokenizerFixtures.appendingPathComponent("smollm2-expected.json"))
        let expectedIDs = expected["ids"]!.array!
        let decoded = expected["decoded"]!.array!
        var same = 0
        for (i, s) in strings.enumerated() {
            let got = t.encode(s, addSpecialTokens: false)
            if got == ids(expectedIDs[i]) { same += 1 } else { XCTFail("#\(i) \(jsonQuoted(s)): got \(got), want \(ids(expectedIDs[i]))") }
            XCTAssertEqual(t.decode(got, skipSpecialTokens: false), decoded[i].string ?? s)
        }
        print("SmolLM2 GGUF: \(same)/\(strings.count) strings identical to tokenizers")
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
