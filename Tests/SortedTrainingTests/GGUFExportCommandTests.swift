// GGUFExportCommandTests: ModelExporter.export(format: .gguf) from a checkpoint — the file
// re-imports through ModelFiles.readGGUF with exit k's logits, and carries the run's tokenizer
// (same ids) and chat template.
import Foundation
import SortedTestSupport
import XCTest
import SortedData
import SortedDistributed
import SortedFormats
import SortedIO
import SortedKit
@testable import SortedTraining

final class GGUFExportCommandTests: XCTestCase {
    private let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fixtures/tokenizers")

    /// A checkpoint of a 3-layer run with exits [2, 3] whose stored config names `tokenizer`.
    private func checkpoint(in directory: URL, tokenizer: String, vocab: Int, tied: Bool) throws -> (Trainer, String) {
        var config = try smallRunConfig(in: directory, exits: "[2, 3]", tied: tied, vocab: vocab)
        var root = try JSONSerialization.jsonObject(with: Data(config.json.utf8)) as! [String: Any]
        root["data"] = ["tokenizer": tokenizer]
        config.json = String(decoding: try JSONSerialization.data(withJSONObject: root), as: UTF8.self)
        let t = try smallTrainer(config)
        try CheckpointManager(root: config.checkpoint.directory, keep: 2, communicator: SingleProcessCommunicator()).save(t, asStep: 1)
        return (t, config.checkpoint.directory)
    }

    private func logits(_ model: LlamaModel, depth: Int) throws -> [Float] {
        let tokens: [Int32] = (0..<8).map { Int32(($0 * 5 + 1) % 30) }
        let pass = try SortedPass(model: model, batchSize: 1, sequenceLength: 8)
        return pass.logits(TokenBatch(batchSize: 1, sequenceLength: 8, tokens: tokens,
                                      targets: [Int32](repeating: TokenBatch.ignoreIndex, count: 8)), depth: depth)
    }

    private func relativeDifference(_ want: [Float], _ got: [Float]) -> Float {
        zip(want, got).map { abs($0 - $1) }.max()! / (want.max()! - want.min()!)
    }

    func testExportedDepthReimportsWithItsLogitsAndTokenizer() throws {
        let directory = try makeTemporaryDirectory("gguf-export-run")
        let tokenizerFolder = directory.appendingPathComponent("tok")
        try FileManager.default.createDirectory(at: tokenizerFolder, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: fixtures.appendingPathComponent("bytelevel.json"), to: tokenizerFolder.appendingPathComponent("tokenizer.json"))
        let template = "{% for m in messages %}<|im_start|>{{ m.content }}<|im_end|>{% endfor %}"
        try Data(template.utf8).write(to: tokenizerFolder.appendingPathComponent("chat_template.jinja"))
        let (t, root) = try checkpoint(in: directory, tokenizer: tokenizerFolder.path, vocab: 1200, tied: false)

        let out = directory.appendingPathComponent("d2.gguf")
        let (sub, _, notes) = try ModelExporter.export(checkpoint: root, depth: 2, format: .gguf, output: out, force: false)
        XCTAssertEqual(notes, [])
        XCTAssertEqual(sub.config.numHiddenLayers, 2)
        let back = try ModelFiles.readGGUF(out)
        // GGUF holds rms_norm_eps as float32 (llama.cpp reads no other type): 1e-6 comes back as Float(1e-6).
        var rounded = sub.config
        rounded.rmsNormEps = Double(Float(rounded.rmsNormEps))
        XCTAssertEqual(back.config, rounded)
        XCTAssertLessThanOrEqual(relativeDifference(try logits(t.model, depth: 2), try logits(back, depth: 2)), 1e-5)

        let file = try GGUFFile(contentsOf: out)
        XCTAssertEqual(file.metadata["tokenizer.chat_template"]?.string, template)
        XCTAssertEqual(file.metadata["llama.block_count"]?.int, 2)
        // inspect reads back the depth, the exits it keeps, the dtype, tokenizer and template.
        let inspection = try ModelInspector.inspect(out.path)
        XCTAssertEqual(inspection.kind, "gguf")
        XCTAssertEqual(inspection.config.numHiddenLayers, 2)
        XCTAssertEqual(inspection.exits, [2])
        XCTAssertEqual(inspection.dtype, "F32")
        XCTAssertEqual(inspection.chatTemplate, "\(template.count) characters")
        XCTAssertNotNil(inspection.tokenizer)
        let original = try TokenizerLoader.load(tokenizerFolder.path)
        let fromGGUF = try BPETokenizer.load(gguf: out)
        for s in ["Hello, world!  123 <|im_start|>x", "naïve café — 42", "\n\n  \t a"] {
            XCTAssertEqual(fromGGUF.encode(s, addSpecialTokens: true), original.encode(s, addSpecialTokens: true), s)
        }
    }

    func testByteTokenizerRunAsQ8_0() throws {
        let directory = try makeTemporaryDirectory("gguf-export-byte")
        let (t, root) = try checkpoint(in: directory, tokenizer: "byte", vocab: 259, tied: true)
        let out = directory.appendingPathComponent("d3.gguf")
        let (_, _, notes) = try ModelExporter.export(checkpoint: root, depth: 3, format: .gguf, output: out, force: false, dtype: .q8_0)
        // Rows of 16 and 24 values are not Q8_0 blocks: every matrix is F16, and each says so.
        XCTAssertEqual(notes.filter { $0.contains("instead of Q8_0") }.count, 1 + 3 * 7, "\(notes)")
        let back = try ModelFiles.readGGUF(out)
        XCTAssertTrue(back.config.tieWordEmbeddings)
        // Measured 3.6e-4 (F16 weights); 3e-3 as in SortedIOTests' F16 bound.
        let relative = relativeDifference(try logits(t.model, depth: 3), try logits(back, depth: 3))
        print("GGUFExportCommand byte/q8_0(→f16): max |Δ logit| / range \(relative)")
        XCTAssertLessThanOrEqual(relative, 3e-3)
        let fromGGUF = try BPETokenizer.load(gguf: out)
        XCTAssertEqual(fromGGUF.encode("héllo", addSpecialTokens: true), ByteTokenizer().encode("héllo", addSpecialTokens: true))
    }

    func testTokenizerLargerThanTheModelIsOneError() throws {
        let directory = try makeTemporaryDirectory("gguf-export-small")
        let (_, root) = try checkpoint(in: directory, tokenizer: "byte", vocab: 30, tied: false)
        XCTAssertThrowsError(try ModelExporter.export(checkpoint: root, depth: 2, format: .gguf,
                                                      output: directory.appendingPathComponent("x.gguf"), force: false)) {
            XCTAssertEqual("\($0)", "byte: has 259 ids, more than the model's 30 embedding rows")
        }
    }
}
