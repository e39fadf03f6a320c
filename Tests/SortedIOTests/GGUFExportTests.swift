// GGUFExportTests: ModelFiles.ggufWriter — a LlamaModel written as llama.cpp's GGUF and read
// back through ModelFiles.readGGUF (the path `train --init-from` takes) gives the same model:
// F32 exactly, F16 and Q8_0 within the measured tolerances stated below; tied and untied,
// GQA, and a head dimension other than hidden / heads.
import Foundation
import SortedFormats
import SortedTestSupport
import XCTest
@testable import SortedIO
import SortedKit

final class GGUFExportTests: XCTestCase {
    /// Tied GQA (Dh = D / H) and untied MHA with Dh ≠ D / H and F = 80 (not a multiple of 32).
    private let configs = [
        LlamaConfig(hiddenSize: 64, intermediateSize: 96, numHiddenLayers: 2, numAttentionHeads: 4, numKeyValueHeads: 2,
                    headDim: 16, vocabSize: 48, rmsNormEps: Double(Float(1e-5)), ropeTheta: 10000, tieWordEmbeddings: true,
                    maxPositionEmbeddings: 32),
        LlamaConfig(hiddenSize: 64, intermediateSize: 80, numHiddenLayers: 3, numAttentionHeads: 2, numKeyValueHeads: 2,
                    headDim: 16, vocabSize: 50, rmsNormEps: Double(Float(1e-6)), ropeTheta: 50000, tieWordEmbeddings: false,
                    maxPositionEmbeddings: 64),
    ]

    private func model(_ config: LlamaConfig, seed: UInt64) throws -> LlamaModel {
        let m = try LlamaModel(config: config)
        m.initializeRandomly(seed: seed, std: 0.2)
        return m
    }

    private func logits(_ model: LlamaModel, _ tokens: [Int32]) throws -> [Float] {
        let pass = try SortedPass(model: model, batchSize: 1, sequenceLength: tokens.count)
        let batch = TokenBatch(batchSize: 1, sequenceLength: tokens.count, tokens: tokens,
                               targets: [Int32](repeating: TokenBatch.ignoreIndex, count: tokens.count))
        return pass.logits(batch, depth: model.config.numHiddenLayers)
    }

    /// (max |Δ logit| / (max − min of the reference logits), the file, the model read back).
    private func export(_ m: LlamaModel, _ dtype: GGUFDType) throws -> (relative: Float, file: GGUFFile, back: LlamaModel, notes: [String]) {
        let (writer, notes) = ModelFiles.ggufWriter(m, name: "test", dtype: dtype)
        let url = try makeTemporaryDirectory("gguf-export").appendingPathComponent("m.gguf")
        try writer.write(to: url)
        let back = try ModelFiles.readGGUF(url)
        XCTAssertEqual(back.config, m.config)
        let tokens: [Int32] = (0..<12).map { Int32(($0 * 7 + 3) % m.config.vocabSize) }
        let want = try logits(m, tokens), got = try logits(back, tokens)
        let range = want.max()! - want.min()!
        let delta = zip(want, got).map { abs($0 - $1) }.max()!
        return (delta / range, try GGUFFile(contentsOf: url), back, notes)
    }

    func testF32RoundTripsExactly() throws {
        for (i, c) in configs.enumerated() {
            let m = try model(c, seed: UInt64(i + 1))
            let (relative, file, back, notes) = try export(m, .f32)
            XCTAssertEqual(notes, [])
            XCTAssertEqual(back.parameters.array(), m.parameters.array(), "the q/k permutation is undone exactly")
            XCTAssertLessThanOrEqual(relative, 1e-5)
            XCTAssertEqual(file.metadata["general.file_type"], .uint32(0))
            XCTAssertEqual(file.metadata["llama.block_count"]?.int, c.numHiddenLayers)
            XCTAssertEqual(file.metadata["llama.rope.dimension_count"]?.int, 16)
            XCTAssertEqual(file.metadata["llama.attention.key_length"]?.int, c.numAttentionHeads * 16 == c.hiddenSize ? nil : 16)
            XCTAssertEqual(file.tensors.contains { $0.name == "output.weight" }, !c.tieWordEmbeddings)
            XCTAssertTrue(file.tensors.allSatisfy { $0.type == .f32 })
        }
    }

    func testPermutationMatchesLlamaCpp() throws {
        // One head, Dh 4, one column: HF rows x0 x1 y0 y1 → GGUF x0 y0 x1 y1.
        let rows: [Float] = [10, 11, 20, 21]
        XCTAssertEqual(rows.withUnsafeBufferPointer { GGUFLlama.permuteRows($0, heads: 1, columns: 1) }, [10, 20, 11, 21])
    }

    /// Measured with these seeds and weights of std 0.2 (12 tokens, every position's logits):
    /// max |Δ logit| / logit range is F16 9.7e-4 and 1.2e-3, Q8_0 2.3e-2 and 3.2e-2 for the two
    /// configs — about what per-weight rounding predicts (f16 keeps 11 bits, Q8_0 ~7 per block
    /// scale), grown through 2–3 layers of an untrained model. The bounds leave 2.5× margin.
    /// The 4-bit types (16 levels a block) measured Q4_0 0.33 and 0.38, Q4_1 0.27 and 0.28: as
    /// far from float as 4 bits make an untrained model; the bounds (1.5×) catch a wrong layout.
    func testF16AndBlockTypesStayCloseAndKeepNormsF32() throws {
        for (i, c) in configs.enumerated() {
            let m = try model(c, seed: UInt64(i + 1))
            let f16 = try export(m, .f16)
            let q8 = try export(m, .q8_0)
            let q4_0 = try export(m, .q4_0), q4_1 = try export(m, .q4_1)
            print("GGUFExport config \(i): max |Δ logit| / range: f16 \(f16.relative), q8_0 \(q8.relative), q4_0 \(q4_0.relative), q4_1 \(q4_1.relative)")
            XCTAssertLessThanOrEqual(f16.relative, 3e-3)
            XCTAssertLessThanOrEqual(q8.relative, 8e-2)
            XCTAssertLessThanOrEqual(q4_0.relative, 0.6)
            XCTAssertLessThanOrEqual(q4_1.relative, 0.45)
            XCTAssertEqual(q4_0.file.metadata["general.file_type"], .uint32(2))
            XCTAssertEqual(q4_1.file.metadata["general.file_type"], .uint32(3))
            for (export, type) in [(q4_0, GGUFFile.TensorType.q4_0), (q4_1, .q4_1)] {
                for t in export.file.tensors {
                    XCTAssertEqual(t.type, t.dimensions.count == 1 ? .f32 : (t.dimensions[0] % 32 == 0 ? type : .f16), t.name)
                }
            }
            XCTAssertEqual(f16.file.metadata["general.file_type"], .uint32(1))
            XCTAssertEqual(q8.file.metadata["general.file_type"], .uint32(7))
            for t in q8.file.tensors {
                let want: GGUFFile.TensorType = t.dimensions.count == 1 ? .f32 : (t.dimensions[0] % 32 == 0 ? .q8_0 : .f16)
                XCTAssertEqual(t.type, want, t.name)
                XCTAssertEqual(f16.file.tensors.first { $0.name == t.name }?.type, t.dimensions.count == 1 ? .f32 : .f16, t.name)
            }
            // F = 80: ffn_down rows are 80 long, so Q8_0 falls back to F16 there, and says so.
            XCTAssertEqual(q8.notes.count, c.intermediateSize % 32 == 0 ? 0 : c.numHiddenLayers, "\(q8.notes)")
            XCTAssertTrue(q8.notes.allSatisfy { $0.contains("ffn_down.weight") && $0.contains("F16") })
        }
    }

    /// scripts/check_gguf.py (when python3 has the gguf package): llama.cpp's required keys,
    /// names, shapes and types, and a numpy forward pass with llama.cpp's RoPE on the tensors
    /// as stored, against sortedtrain's logits of the same file (same dequantised weights, so
    /// within 1e-4 of the logit range in every dtype). transformers is left to inference.sh.
    func testCheckGGUFScriptAgrees() throws {
        guard try python3Imports("gguf") else { throw XCTSkip("python3 has no gguf package (pip install gguf)") }
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("scripts/check_gguf.py")
        let directory = try makeTemporaryDirectory("gguf-check")
        for (i, dtype) in [(0, GGUFDType.q8_0), (1, .f32), (0, .q4_0), (1, .q4_1)] {
            let m = try model(configs[i], seed: 9)
            let url = directory.appendingPathComponent("\(dtype.rawValue).gguf")
            var (writer, _) = ModelFiles.ggufWriter(m, name: "check", dtype: dtype)
            writer.set("tokenizer.ggml.model", .string("gpt2"))
            writer.set("tokenizer.ggml.pre", .string("gpt-2"))
            writer.set("tokenizer.ggml.tokens", .array((0..<m.config.vocabSize).map { .string("t\($0)") }))
            writer.set("tokenizer.ggml.token_type", .array((0..<m.config.vocabSize).map { _ in .int32(1) }))
            writer.set("tokenizer.ggml.merges", .array([]))
            try writer.write(to: url)
            let tokens: [Int32] = (0..<10).map { Int32(($0 * 11 + 2) % m.config.vocabSize) }
            let rows = try logits(try ModelFiles.readGGUF(url), tokens)
            let V = m.config.vocabSize
            let expected: [String: Any] = ["input_ids": tokens.map(Int.init), "tolerance": 1e-4,
                                           "logits": (0..<tokens.count).map { Array(rows[($0 * V)..<(($0 + 1) * V)]).map(Double.init) }]
            let json = directory.appendingPathComponent("\(dtype.rawValue).json")
            try JSONSerialization.data(withJSONObject: expected).write(to: json)
            let (status, output) = try runPython3([script.path, url.path, "--expected", json.path, "--no-transformers"])
            print(output.split(separator: "\n").filter { $0.contains("logits") || $0.contains("FAIL") || $0.contains("check_gguf") }.joined(separator: "\n"))
            XCTAssertEqual(status, 0, "check_gguf.py on \(dtype.rawValue): \(output)")
        }
    }
}
