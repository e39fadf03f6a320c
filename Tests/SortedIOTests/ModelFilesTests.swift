// Standalone model files: an exported depth reloads with the logits of that exit, as
// sortedtrain (HF and HDF5) and, when PyTorch is installed, as transformers LlamaForCausalLM.
import Foundation
import XCTest
import SortedKit
@testable import SortedIO

final class ModelFilesTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("sortedtrain-export-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: directory) }

    func model(tied: Bool) throws -> LlamaModel {
        let model = try LlamaModel(config: LlamaConfig(hiddenSize: 24, intermediateSize: 40, numHiddenLayers: 4,
                                                       numAttentionHeads: 4, numKeyValueHeads: 2, headDim: 8,
                                                       vocabSize: 50, rmsNormEps: 1e-5, ropeTheta: 50000,
                                                       tieWordEmbeddings: tied, maxPositionEmbeddings: 64))
        model.initializeRandomly(seed: tied ? 1 : 2, std: 0.3)
        return model
    }

    let batch = TokenBatch(batchSize: 2, sequenceLength: 6, tokens: [1, 5, 9, 2, 44, 3, 7, 7, 0, 49, 12, 30],
                           targets: [Int32](repeating: -100, count: 12))

    func testExportedDepthReloadsWithTheExitLogits() throws {
        for tied in [false, true] {
            let full = try model(tied: tied)
            let exitLogits = try SortedPass(model: full, batchSize: 2, sequenceLength: 6).logits(batch, depth: 2)
            let sub = try full.prefix(depth: 2)

            let hf = directory.appendingPathComponent("hf-\(tied)")
            try ModelFiles.writeHF(sub, to: hf)
            let fromHF = try ModelFiles.readHF(hf)
            XCTAssertEqual(fromHF.config, sub.config)
            XCTAssertEqual(fromHF.config.numHiddenLayers, 2)
            XCTAssertEqual(try SortedPass(model: fromHF, batchSize: 2, sequenceLength: 6).logits(batch, depth: 2), exitLogits)
            let stored = try SafetensorsFile(contentsOf: hf.appendingPathComponent("model.safetensors"))
            XCTAssertEqual(stored.entries["lm_head.weight"] == nil, tied, "tied embeddings are stored once")

            let h5 = directory.appendingPathComponent("model-\(tied).h5")
            try ModelFiles.writeHDF5(sub, to: h5)
            let fromH5 = try ModelFiles.readHDF5(h5)
            XCTAssertEqual(try SortedPass(model: fromH5, batchSize: 2, sequenceLength: 6).logits(batch, depth: 2), exitLogits)

            try checkWithTransformers(hf, logits: exitLogits, vocab: 50)
        }
    }

    func testMissingTensorsAndShapesAreClearErrors() throws {
        let hf = directory.appendingPathComponent("hf")
        try ModelFiles.writeHF(try model(tied: false).prefix(depth: 1), to: hf)
        var config = try JSONSerialization.jsonObject(with: Data(contentsOf: hf.appendingPathComponent("config.json"))) as! [String: Any]
        config["num_hidden_layers"] = 2
        try JSONSerialization.data(withJSONObject: config).write(to: hf.appendingPathComponent("config.json"))
        XCTAssertThrowsError(try ModelFiles.readHF(hf)) {
            XCTAssertTrue("\($0)".contains("has no tensor 'model.layers.1.input_layernorm.weight'"), "\($0)")
        }
        config["num_hidden_layers"] = 1
        config["intermediate_size"] = 41
        try JSONSerialization.data(withJSONObject: config).write(to: hf.appendingPathComponent("config.json"))
        XCTAssertThrowsError(try ModelFiles.readHF(hf)) { XCTAssertTrue("\($0)".contains("has shape [40, 24]"), "\($0)") }
        XCTAssertThrowsError(try ModelFiles.readHF(directory.appendingPathComponent("nowhere"))) {
            XCTAssertTrue("\($0)".contains("config.json"), "\($0)")
        }
    }

    /// Runs scripts/check_hf_export.py when python3 has torch and transformers.
    func checkWithTransformers(_ hf: URL, logits: [Float], vocab: Int) throws {
        let probe = Process()
        probe.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        probe.arguments = ["python3", "-c", "import torch, transformers, safetensors"]
        probe.standardError = FileHandle.nullDevice
        probe.standardOutput = FileHandle.nullDevice
        try probe.run()
        probe.waitUntilExit()
        guard probe.terminationStatus == 0 else {
            print("ModelFilesTests: transformers check skipped: python3 has no torch/transformers/safetensors")
            return
        }
        let expected = hf.appendingPathComponent("expected.safetensors")
        try writeExpected(ids: batch.tokens, logits: logits, vocab: vocab, to: expected)
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("scripts/check_hf_export.py")
        let check = Process()
        check.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        check.arguments = ["python3", script.path, hf.path, expected.path]
        let pipe = Pipe()
        check.standardOutput = pipe
        check.standardError = pipe
        try check.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        check.waitUntilExit()
        print(output.trimmingCharacters(in: .whitespacesAndNewlines))
        XCTAssertEqual(check.terminationStatus, 0, "transformers disagrees with the export: \(output)")
    }

    /// input_ids (I64) and logits (F32) as safetensors, for the Python side.
    func writeExpected(ids: [Int32], logits: [Float], vocab: Int, to url: URL) throws {
        let idBytes = ids.map { Int64($0) }.withUnsafeBytes { Data($0) }
        let logitBytes = logits.withUnsafeBytes { Data($0) }
        var header = "{\"input_ids\":{\"dtype\":\"I64\",\"shape\":[2,6],\"data_offsets\":[0,\(idBytes.count)]},"
        header += "\"logits\":{\"dtype\":\"F32\",\"shape\":[2,6,\(vocab)],\"data_offsets\":[\(idBytes.count),\(idBytes.count + logitBytes.count)]}}"
        while header.utf8.count % 8 != 0 { header += " " }
        var data = withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian) { Data($0) }
        data.append(contentsOf: Array(header.utf8))
        data.append(idBytes)
        data.append(logitBytes)
        try data.write(to: url)
    }
}
