// Standalone model files: an exported depth reloads with the logits of that exit, as
// sortedtrain (HF and HDF5) and, when PyTorch is installed, as transformers LlamaForCausalLM.
import Foundation
import SortedFormats
import SortedTestSupport
import XCTest
import SortedKit
@testable import SortedIO

final class ModelFilesTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws { directory = try makeTemporaryDirectory("sortedtrain-export") }

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

    func testLoadersAcceptOnlyWhatTheEngineComputes() throws {
        let hf = directory.appendingPathComponent("hf")
        try ModelFiles.writeHF(try model(tied: false).prefix(depth: 2), to: hf)
        let configURL = hf.appendingPathComponent("config.json")
        let good = try JSONSerialization.jsonObject(with: Data(contentsOf: configURL)) as! [String: Any]
        func expect(_ key: String, _ value: Any, _ message: String, line: UInt = #line) throws {
            var config = good
            config[key] = value
            try JSONSerialization.data(withJSONObject: config).write(to: configURL)
            XCTAssertThrowsError(try ModelFiles.readHF(hf), line: line) {
                XCTAssertTrue("\($0)".contains(message), "\($0)", line: line)
            }
        }
        try expect("hidden_act", "gelu", "hidden_act: is 'gelu'")
        try expect("model_type", "qwen2", "model_type: is 'qwen2'")
        try expect("attention_bias", true, "attention_bias: is true")
        // Fewer layers than the file holds: the extra layer's tensors have no place.
        try expect("num_hidden_layers", 1, "has tensor 'model.layers.1.")
        // Sizes beyond the machine are refused with the figures, before any allocation.
        try expect("num_hidden_layers", 1_000_000_000, "this machine has")
        try expect("hidden_size", 1 << 40, "this machine has")
        try expect("intermediate_size", Int.max / 4, "more parameters than can be addressed")
    }

    func testSafetensorsHeadersAreUntrusted() throws {
        let url = directory.appendingPathComponent("t.safetensors")
        let values: [Float] = [1, 2, 3, 4, 5, 6]
        try values.withUnsafeBufferPointer {
            try SafetensorsWriter.write([.init(name: "a", shape: [2, 2], values: UnsafeBufferPointer(rebasing: $0[0..<4])),
                                         .init(name: "b", shape: [2], values: UnsafeBufferPointer(rebasing: $0[4..<6]))], to: url)
        }
        XCTAssertEqual(try SafetensorsFile(contentsOf: url).floats("b"), [5, 6])
        let good = try Data(contentsOf: url)
        let headerLength = Int(good.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        let header = String(decoding: good[8..<(8 + headerLength)], as: UTF8.self)
        let payload = good[(8 + headerLength)...]
        func file(header text: String, length: UInt64? = nil, payload data: Data? = nil) -> Data {
            var out = withUnsafeBytes(of: (length ?? UInt64(text.utf8.count)).littleEndian) { Data($0) }
            out.append(Data(text.utf8))
            out.append(data ?? Data(payload))
            return out
        }
        let cases: [(String, Data, String)] = [
            ("length 2^63", file(header: header, length: 1 << 63), "header length"),
            ("length one too long", file(header: header, length: UInt64(headerLength + 1)), "JSON"),
            ("shape overflow", file(header: header.replacingOccurrences(of: "[2,2]", with: "[4000000000000000,4000000000]")), "wrong byte size"),
            ("offsets reversed", file(header: header.replacingOccurrences(of: "[0,16]", with: "[16,0]")), "wrong byte size"),
            ("overlap", file(header: header.replacingOccurrences(of: "[16,24]", with: "[8,16]")), "overlap"),
            ("gap", file(header: header, payload: Data(payload) + Data(count: 4)), "cover"),
        ]
        for (name, data, message) in cases {
            try data.write(to: url)
            XCTAssertThrowsError(try SafetensorsFile(contentsOf: url), name) {
                XCTAssertTrue("\($0)".contains(message), "\(name): \($0)")
            }
        }
    }

    /// Runs scripts/check_hf_export.py when python3 has torch and transformers.
    func checkWithTransformers(_ hf: URL, logits: [Float], vocab: Int) throws {
        guard try python3Imports("torch, transformers, safetensors") else {
            print("ModelFilesTests: transformers check skipped: python3 has no torch/transformers/safetensors")
            return
        }
        let expected = hf.appendingPathComponent("expected.safetensors")
        try writeExpected(ids: batch.tokens, logits: logits, vocab: vocab, to: expected)
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("scripts/check_hf_export.py")
        let (status, output) = try runPython3([script.path, hf.path, expected.path])
        print(output.trimmingCharacters(in: .whitespacesAndNewlines))
        XCTAssertEqual(status, 0, "transformers disagrees with the export: \(output)")
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
