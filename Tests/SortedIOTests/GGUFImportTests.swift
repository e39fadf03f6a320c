// GGUFImportTests: ModelFiles.readGGUF — the q/k un-permutation, config and tensor mapping and
// its errors on tiny GGUF files written here (with SortedFormats' GGUFWriter), and the real SmolLM2 GGUF against transformers
// (Tests/Fixtures/smollm2-gguf-reference.safetensors, made by scripts/make_gguf_fixture.py).
import Foundation
import SortedFormats
import SortedTestSupport
import XCTest
@testable import SortedIO
import SortedKit

private let testsDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
private let referenceFixture = testsDirectory.appendingPathComponent("Fixtures/smollm2-gguf-reference.safetensors")
private let smolLM2 = testsDirectory.deletingLastPathComponent().appendingPathComponent("vendor-data/SmolLM2-135M-Instruct.Q4_1.gguf")

/// llama.cpp's `LlamaModel.permute` (convert_hf_to_gguf.py), written from its numpy form
/// `w.reshape(heads, 2, Dh/2, C).swapaxes(1, 2).reshape(w.shape)`: output index (h, d, j)
/// takes input index (h, j, d).
private func llamaCppPermute(_ w: [Float], heads: Int, columns: Int) -> [Float] {
    let rows = w.count / columns, half = rows / heads / 2
    var out = [Float](repeating: .nan, count: w.count)
    for h in 0..<heads {
        for d in 0..<half {
            for j in 0..<2 {
                let to = (h * half + d) * 2 + j           // [heads, Dh/2, 2] flattened
                let from = (h * 2 + j) * half + d         // [heads, 2, Dh/2] flattened
                for c in 0..<columns { out[to * columns + c] = w[from * columns + c] }
            }
        }
    }
    return out
}

/// A tiny GQA llama (D 8, F 32, L 2, H 2, Hkv 1, Dh 4, V 10) with random HF weights, and
/// the GGUF llama.cpp's converter would write for it.
private struct TinyLlama {
    let config: LlamaConfig
    var weights: [String: [Float]] = [:]   // HF name → values
    var gguf = GGUFWriter()

    /// Tied: the file has no output.weight, as llama.cpp writes tied models.
    init(tied: Bool) {
        config = LlamaConfig(hiddenSize: 8, intermediateSize: 32, numHiddenLayers: 2, numAttentionHeads: 2,
                             numKeyValueHeads: 1, headDim: 4, vocabSize: 10, rmsNormEps: Double(Float(1e-5)),
                             ropeTheta: 50000, tieWordEmbeddings: tied, maxPositionEmbeddings: 64)
        var rng = SplitMix64(seed: tied ? 7 : 8)
        let layout = ParameterLayout(config: config)
        gguf.set("general.architecture", .string("llama"))
        gguf.set("general.name", .string("tiny"))
        gguf.set("llama.block_count", .uint32(2))
        gguf.set("llama.context_length", .uint32(64))
        gguf.set("llama.embedding_length", .uint32(8))
        gguf.set("llama.feed_forward_length", .uint32(32))
        gguf.set("llama.attention.head_count", .uint32(2))
        gguf.set("llama.attention.head_count_kv", .uint32(1))
        gguf.set("llama.attention.key_length", .uint32(4))
        gguf.set("llama.rope.freq_base", .float32(50000))
        gguf.set("llama.attention.layer_norm_rms_epsilon", .float32(1e-5))
        gguf.set("tokenizer.ggml.tokens", .array((0..<10).map { .string("t\($0)") }))
        for spec in layout.tensors {
            let values = (0..<spec.count).map { _ in Float(rng.nextNormal()) }
            weights[spec.name] = values
            let name = GGUFLlama.ggufName(forHF: spec.name)
            var stored = values
            if name.hasSuffix("attn_q.weight") { stored = llamaCppPermute(values, heads: 2, columns: spec.shape[1]) }
            if name.hasSuffix("attn_k.weight") { stored = llamaCppPermute(values, heads: 1, columns: spec.shape[1]) }
            gguf.addTensor(name, shape: spec.shape, values: stored, type: .f32)
        }
    }
}

final class GGUFImportTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws { directory = try makeTemporaryDirectory("gguf-import") }

    private func write(_ writer: GGUFWriter, _ name: String = "model.gguf") throws -> URL {
        let url = directory.appendingPathComponent(name)
        try writer.data().write(to: url)
        return url
    }

    /// Asserts that reading `url` fails with one FormatError line that names the file and
    /// contains every one of `parts`.
    private func assertImportFails(_ url: URL, mentioning parts: [String], line: UInt = #line) {
        XCTAssertThrowsError(try ModelFiles.readGGUF(url), line: line) { error in
            XCTAssertTrue(error is FormatError, "\(error)", line: line)
            let text = String(describing: error)
            XCTAssertTrue(text.hasPrefix(url.path), text, line: line)
            XCTAssertFalse(text.contains("\n"), text, line: line)
            for part in parts { XCTAssertTrue(text.contains(part), "'\(part)' not in: \(text)", line: line) }
        }
    }

    // MARK: - Un-permutation

    func testUnpermuteInvertsLlamaCppPermute() {
        var rng = SplitMix64(seed: 3)
        for (heads, headDim, columns) in [(1, 2, 1), (2, 4, 3), (9, 64, 5), (3, 8, 1)] {
            let w = (0..<(heads * headDim * columns)).map { _ in Float(rng.nextNormal()) }
            let permuted = llamaCppPermute(w, heads: heads, columns: columns)
            if headDim > 2 { XCTAssertNotEqual(permuted, w, "the permutation is not the identity") }
            var back = [Float](repeating: .nan, count: w.count)
            back.withUnsafeMutableBufferPointer {
                GGUFLlama.unpermuteRows(permuted, heads: heads, columns: columns, into: $0.baseAddress!)
            }
            XCTAssertEqual(back, w, "heads \(heads), Dh \(headDim), columns \(columns)")
        }
        // The layout itself, for one head of Dh 4: GGUF rows x0 y0 x1 y1 → HF x0 x1 y0 y1.
        var back = [Float](repeating: 0, count: 4)
        back.withUnsafeMutableBufferPointer { GGUFLlama.unpermuteRows([10, 20, 11, 21], heads: 1, columns: 1, into: $0.baseAddress!) }
        XCTAssertEqual(back, [10, 11, 20, 21])
    }

    // MARK: - Tiny files

    func testTinyUntiedModelImportsExactly() throws {
        let tiny = TinyLlama(tied: false)
        let model = try ModelFiles.readGGUF(try write(tiny.gguf))
        XCTAssertEqual(model.config, tiny.config)
        XCTAssertEqual(model.layout.tensors.count, 1 + 2 * 9 + 2)
        for spec in model.layout.tensors {
            XCTAssertEqual(model.parameters.array(offset: spec.offset, count: spec.count), tiny.weights[spec.name], spec.name)
        }
    }

    func testTinyTiedModelHasNoHead() throws {
        let tiny = TinyLlama(tied: true)
        XCTAssertFalse(tiny.gguf.tensors.contains { $0.name == "output.weight" })
        let model = try ModelFiles.readGGUF(try write(tiny.gguf))
        XCTAssertEqual(model.config, tiny.config)
        XCTAssertTrue(model.config.tieWordEmbeddings)
        XCTAssertNil(model.layout.tensor(named: "lm_head.weight"))
        for spec in model.layout.tensors {
            XCTAssertEqual(model.parameters.array(offset: spec.offset, count: spec.count), tiny.weights[spec.name], spec.name)
        }
    }

    func testDefaultsWhenOptionalKeysAreAbsent() throws {
        var tiny = TinyLlama(tied: false)
        // Without key_length, Dh = D / H = 4; without head_count_kv, Hkv = H — so k has 8 rows,
        // and the file's 4-row attn_k is then a shape error naming the tensor.
        for key in ["llama.attention.key_length", "llama.rope.freq_base", "llama.context_length", "tokenizer.ggml.tokens"] { tiny.gguf.removeValue(forKey: key) }
        let model = try ModelFiles.readGGUF(try write(tiny.gguf, "defaults.gguf"))
        XCTAssertEqual(model.config.headDim, 4)
        XCTAssertEqual(model.config.ropeTheta, 10000)
        XCTAssertEqual(model.config.maxPositionEmbeddings, 2048)
        XCTAssertEqual(model.config.vocabSize, 10, "from token_embd.weight")
        tiny.gguf.removeValue(forKey: "llama.attention.head_count_kv")
        assertImportFails(try write(tiny.gguf, "mha.gguf"), mentioning: ["'blk.0.attn_k.weight'", "[4, 8]", "[8, 8]"])
    }

    func testOtherArchitectureIsOneClearError() throws {
        var tiny = TinyLlama(tied: false)
        tiny.gguf.set("general.architecture", .string("qwen2"))
        assertImportFails(try write(tiny.gguf), mentioning: ["architecture 'qwen2'", "only 'llama'"])
        tiny.gguf.removeValue(forKey: "general.architecture")
        assertImportFails(try write(tiny.gguf), mentioning: ["general.architecture"])
    }

    func testMissingTensorIsOneClearError() throws {
        var tiny = TinyLlama(tied: false)
        tiny.gguf.removeTensor("blk.1.ffn_down.weight")
        assertImportFails(try write(tiny.gguf), mentioning: ["'blk.1.ffn_down.weight'", "model.layers.1.mlp.down_proj.weight"])
    }

    func testWrongShapeIsOneClearError() throws {
        var tiny = TinyLlama(tied: false)
        tiny.gguf.removeTensor("blk.0.ffn_gate.weight")
        tiny.gguf.addTensor("blk.0.ffn_gate.weight", shape: [16, 8], values: [Float](repeating: 0, count: 128), type: .f32)
        assertImportFails(try write(tiny.gguf), mentioning: ["'blk.0.ffn_gate.weight'", "[16, 8]", "[32, 8]"])
    }

    func testMissingOrBadMetadataIsOneClearError() throws {
        var tiny = TinyLlama(tied: false)
        tiny.gguf.removeValue(forKey: "llama.block_count")
        assertImportFails(try write(tiny.gguf, "a.gguf"), mentioning: ["llama.block_count"])
        tiny = TinyLlama(tied: false)
        tiny.gguf.set("llama.feed_forward_length", .string("32"))
        assertImportFails(try write(tiny.gguf, "b.gguf"), mentioning: ["llama.feed_forward_length", "expected an integer"])
        tiny = TinyLlama(tied: false)
        tiny.gguf.set("llama.attention.head_count_kv", .uint32(3))
        assertImportFails(try write(tiny.gguf, "c.gguf"), mentioning: ["llama.attention.head_count_kv"])
        tiny = TinyLlama(tied: false)
        tiny.gguf.set("llama.rope.scaling.type", .string("yarn"))
        assertImportFails(try write(tiny.gguf, "d.gguf"), mentioning: ["RoPE scaling 'yarn'"])
    }

    func testUnsupportedTensorTypeNamesTheType() throws {
        var tiny = TinyLlama(tied: false)
        // ffn_down is [D 8, F 32]: one Q5_0 block (32 values, 22 bytes) per row.
        tiny.gguf.removeTensor("blk.0.ffn_down.weight")
        tiny.gguf.addTensor("blk.0.ffn_down.weight", shape: [8, 32], type: .init(rawValue: 6), bytes: [UInt8](repeating: 0, count: 8 * 22))
        assertImportFails(try write(tiny.gguf), mentioning: ["'blk.0.ffn_down.weight'", "Q5_0"])
    }

    func testUnexpectedTensorIsRefused() throws {
        var tiny = TinyLlama(tied: false)
        tiny.gguf.addTensor("blk.0.attn_q.bias", shape: [8], values: [Float](repeating: 0, count: 8), type: .f32)
        assertImportFails(try write(tiny.gguf), mentioning: ["'blk.0.attn_q.bias'"])
    }

    func testAbsurdSizesAreRefusedBeforeAllocating() throws {
        // Sizes no machine holds: one line with the figures, never a failed allocation.
        for (key, value) in [("llama.block_count", UInt64(1_000_000_000)), ("llama.embedding_length", 1 << 40),
                             ("llama.feed_forward_length", UInt64(Int.max / 2))] {
            var tiny = TinyLlama(tied: true)
            tiny.gguf.set(key, .uint64(value))
            if key == "llama.embedding_length" { tiny.gguf.set("llama.attention.key_length", .uint32(4)) }
            assertImportFails(try write(tiny.gguf), mentioning: ["model size"])
        }
    }

    func testOverlappingTensorDataIsRefused() throws {
        let tiny = TinyLlama(tied: true)
        var data = tiny.gguf.data()
        // Point the last tensor's offset (the u64 after its type) at the first tensor's bytes.
        let last = tiny.gguf.tensors.last!
        let name = Data(last.name.utf8)
        let at = data.range(of: name, options: .backwards)!.upperBound + 4 + 8 * last.shape.count + 4
        data.replaceSubrange(at..<(at + 8), with: [UInt8](repeating: 0, count: 8))
        let url = directory.appendingPathComponent("overlap.gguf")
        try data.write(to: url)
        assertImportFails(url, mentioning: ["overlap"])
    }

    // MARK: - The real SmolLM2 file against transformers

    /// Both sides use the same dequantised float32 weights (transformers dequantises with
    /// gguf-py, which agrees with GGUFFile to the last bit, GGUFTests), so what differs is only
    /// float32 summation order (OpenBLAS vs PyTorch GEMMs, softmax, RMSNorm) through 30 layers.
    /// Measured here: max |Δ| ≤ 4e-5 on logits of magnitude up to 34. atol 1e-3 leaves 25×
    /// margin for other BLAS builds and thread counts, and is still far below what a real import
    /// error does: without the q/k un-permutation the logits move by 2–8 units (and the argmax
    /// alone would have caught only one prompt in four — hence the logit checks).
    func testSmolLM2MatchesTransformers() throws {
        guard FileManager.default.fileExists(atPath: smolLM2.path) else {
            throw XCTSkip("vendor-data/SmolLM2-135M-Instruct.Q4_1.gguf is absent; run launch/fetch-test-assets")
        }
        let reference = try SafetensorsFile(contentsOf: referenceFixture)
        let bytes = try FileManager.default.attributesOfItem(atPath: smolLM2.path)[.size] as! Int
        XCTAssertEqual(String(bytes), reference.metadata["gguf_bytes"],
                       "the fixture was made from another GGUF file; rerun scripts/make_gguf_fixture.py")
        let prompts = try JSONDecoder().decode([String].self, from: Data(reference.metadata["prompts"]!.utf8))
        let stride = Int(reference.metadata["sample_stride"]!)!
        let atol: Float = 1e-3

        let model = try ModelFiles.readGGUF(smolLM2)
        let c = model.config
        XCTAssertEqual([c.numHiddenLayers, c.hiddenSize, c.intermediateSize, c.numAttentionHeads, c.numKeyValueHeads, c.headDim, c.vocabSize],
                       [30, 576, 1536, 9, 3, 64, 49152])
        XCTAssertTrue(c.tieWordEmbeddings)
        XCTAssertEqual(c.ropeTheta, 100000)
        XCTAssertEqual(c.maxPositionEmbeddings, 8192)
        XCTAssertEqual(c.rmsNormEps, 1e-5, accuracy: 1e-12)
        let V = c.vocabSize

        for (i, text) in prompts.enumerated() {
            let ids = try reference.integers("prompt.\(i).input_ids").map { Int32($0) }
            let T = ids.count
            let pass = try SortedPass(model: model, batchSize: 1, sequenceLength: T)
            let batch = TokenBatch(batchSize: 1, sequenceLength: T, tokens: ids,
                                   targets: [Int32](repeating: TokenBatch.ignoreIndex, count: T))
            let last = Array(pass.logits(batch, depth: c.numHiddenLayers)[((T - 1) * V)..<(T * V)])

            let wantIDs = try reference.integers("prompt.\(i).top_ids").map(Int.init)
            let wantLogits = try reference.floats("prompt.\(i).top_logits")
            let gotIDs = Array(last.indices.sorted { last[$0] > last[$1] }.prefix(wantIDs.count))
            let what = "prompt \(i) \(text.debugDescription)"
            XCTAssertEqual(gotIDs.first, wantIDs.first, "\(what): argmax")
            XCTAssertEqual(Set(gotIDs), Set(wantIDs), "\(what): top-\(wantIDs.count) sets")

            // The worst element per check, so a broken import fails in a few lines, not thousands.
            func worst(_ ids: [Int], _ want: [Float]) -> (delta: Float, id: Int) {
                zip(ids, want).map { (abs(last[$0] - $1), $0) }.max { $0.0 < $1.0 } ?? (0, -1)
            }
            let top = worst(wantIDs, wantLogits)
            XCTAssertLessThanOrEqual(top.delta, atol, "\(what): top-\(wantIDs.count) logit of token \(top.id)")
            let sampled = try reference.floats("prompt.\(i).sampled_logits")
            let spread = worst(sampled.indices.map { $0 * stride }, sampled)
            XCTAssertLessThanOrEqual(spread.delta, atol, "\(what): logit of token \(spread.id) (every \(stride)th id)")
            let peak = last.max()!
            let logSumExp = peak + Float(log(last.reduce(0.0) { $0 + exp(Double($1 - peak)) }))
            let wantLSE = try reference.floats("prompt.\(i).logsumexp")[0]
            XCTAssertEqual(logSumExp, wantLSE, accuracy: atol, "\(what): logsumexp")
            print("GGUFImport prompt \(i): \(T) tokens, argmax \(gotIDs[0]) (transformers \(wantIDs[0])), "
                  + "top-\(wantIDs.count) \(Set(gotIDs) == Set(wantIDs) ? "same set" : "DIFFERENT")"
                  + "\(gotIDs == wantIDs ? ", same order" : ", order differs"), "
                  + "max |Δ| top \(top.delta), sampled(\(sampled.count)) \(spread.delta), "
                  + "logsumexp \(abs(logSumExp - wantLSE))")
        }
    }
}
