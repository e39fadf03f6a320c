// GGUFTokenizerMetadataTests: a tokenizer written as tokenizer.ggml.* metadata (what
// `export --format gguf` stores) and read back with BPETokenizer.load(gguf:) gives the same ids
// as the original on the exactness fixture: byte-level BPE (SmolLM2-like, LLaMA-3-like),
// SentencePiece-style BPE with byte fallback, and the built-in byte tokenizer.
import Foundation
import SortedFormats
import SortedTestSupport
import XCTest
@testable import SortedData

final class GGUFTokenizerMetadataTests: XCTestCase {
    private func writeBack(_ tokenizer: Tokenizer, vocabularySize: Int, chatTemplate: String? = nil) throws -> (BPETokenizer, GGUFFile, [String]) {
        let (metadata, notes) = try GGUFTokenizerMetadata.metadata(of: tokenizer, source: "test", vocabularySize: vocabularySize,
                                                                   chatTemplate: chatTemplate)
        var writer = GGUFWriter()
        for (k, v) in metadata { writer.set(k, v) }
        let url = try makeTemporaryDirectory("gguf-tokenizer").appendingPathComponent("t.gguf")
        try writer.write(to: url)
        return (try BPETokenizer.load(gguf: url), try GGUFFile(contentsOf: url), notes)
    }

    private func assertSameIDs(_ a: Tokenizer, _ b: Tokenizer, _ name: String, skip: (String) -> Bool = { _ in false },
                               line: UInt = #line) throws {
        var compared = 0, differ = 0
        for s in try fixtureStrings() + [String(decoding: try Data(contentsOf: tokenizerFixtures.appendingPathComponent("corpus.txt")).prefix(20000), as: UTF8.self)]
            where !skip(s) {
            for special in [false, true] {
                let want = a.encode(s, addSpecialTokens: special), got = b.encode(s, addSpecialTokens: special)
                if want != got {
                    differ += 1
                    if differ <= 3 { XCTFail("\(name) \(jsonQuoted(s)) special \(special): GGUF \(got), original \(want)", line: line) }
                }
            }
            compared += 1
        }
        print("GGUFTokenizerMetadata \(name): \(compared - differ / 2)/\(compared) strings identical")
        XCTAssertGreaterThan(compared, 100, line: line)
        XCTAssertEqual(differ, 0, "\(name): \(differ) encodings differ", line: line)
        XCTAssertEqual(a.bosID, b.bosID, line: line)
        XCTAssertEqual(a.eosID, b.eosID, line: line)
        XCTAssertEqual(a.padID, b.padID, line: line)
        XCTAssertEqual(a.addsBOS, b.addsBOS, line: line)
    }

    func testByteLevelFixturesReadBackWithTheSameIDs() throws {
        for (name, pre) in [("bytelevel", "smollm"), ("llama3", "llama-bpe")] {
            let original = try TokenizerLoader.load(tokenizerFixtures.appendingPathComponent("\(name).json").path)
            // Model rows past the vocabulary become unused [PAD<id>] tokens, as llama.cpp's converter writes.
            let (back, file, notes) = try writeBack(original, vocabularySize: original.vocabularySize + 3, chatTemplate: "{{ x }}")
            XCTAssertEqual(notes, [])
            XCTAssertEqual(file.metadata["tokenizer.ggml.model"]?.string, "gpt2")
            XCTAssertEqual(file.metadata["tokenizer.ggml.pre"]?.string, pre)
            XCTAssertEqual(file.metadata["tokenizer.chat_template"]?.string, "{{ x }}")
            XCTAssertEqual(back.vocabularySize, original.vocabularySize + 3)
            XCTAssertEqual(back.token(forID: Int32(original.vocabularySize)), "[PAD\(original.vocabularySize)]")
            XCTAssertEqual(file.metadata["tokenizer.ggml.token_type"]?.ints?.last, 5)
            for id in 0..<Int32(original.vocabularySize) { XCTAssertEqual(back.token(forID: id), original.token(forID: id)) }
            try assertSameIDs(original, back, name)
        }
    }

    func testSentencePieceFixtureReadsBackWithTheSameIDs() throws {
        let original = try TokenizerLoader.load(tokenizerFixtures.appendingPathComponent("spm-legacy.json").path)
        let (back, file, _) = try writeBack(original, vocabularySize: original.vocabularySize)
        XCTAssertEqual(file.metadata["tokenizer.ggml.model"]?.string, "llama")
        let types = file.metadata["tokenizer.ggml.token_type"]!.ints!
        XCTAssertEqual(types.filter { $0 == 6 }.count, 256, "<0x00>…<0xFF> are byte tokens")
        XCTAssertEqual(types[0], 2, "<unk>")
        XCTAssertEqual(file.metadata["tokenizer.ggml.unknown_token_id"]?.int, 0)
        try assertSameIDs(original, back, "spm-legacy")
    }

    func testMetaspacePreTokenizerIsRefusedInOneLine() throws {
        let original = try TokenizerLoader.load(tokenizerFixtures.appendingPathComponent("spm-metaspace.json").path)
        XCTAssertThrowsError(try writeBack(original, vocabularySize: original.vocabularySize)) { error in
            XCTAssertTrue(error is DataError)
            XCTAssertTrue("\(error)".hasPrefix("test: "), "\(error)")
            XCTAssertFalse("\(error)".contains("\n"))
        }
    }

    func testByteTokenizerReadsBackWithTheSameIDs() throws {
        let original = ByteTokenizer()
        let (back, file, notes) = try writeBack(original, vocabularySize: 300)
        XCTAssertEqual(file.metadata["tokenizer.ggml.bos_token_id"]?.int, 256)
        XCTAssertEqual(file.metadata["tokenizer.ggml.merges"]?.array, [])
        XCTAssertEqual(notes.count, 1, "control tokens are matched in text by llama.cpp")
        // The byte tokenizer never reads "<bos>" from text; the GGUF one, like llama.cpp, does.
        try assertSameIDs(original, back, "byte", skip: { $0.contains("<bos>") || $0.contains("<eos>") || $0.contains("<pad>") })
        XCTAssertEqual(back.decode(back.encode("héllo ✓ 12")), "héllo ✓ 12")
    }

    func testTokenizerLargerThanTheModelIsRefused() throws {
        XCTAssertThrowsError(try GGUFTokenizerMetadata.metadata(of: ByteTokenizer(), source: "byte", vocabularySize: 30, chatTemplate: nil)) {
            XCTAssertEqual("\($0)", "byte: has 259 ids, more than the model's 30 embedding rows")
        }
    }
}
