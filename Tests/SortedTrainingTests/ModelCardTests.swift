// What an HF export says about itself: the model card's front matter, exits and evaluation
// table, generation_config.json's stop ids, config.json's exits, and inspect reading them back.
import Foundation
import XCTest
import SortedData
import SortedDistributed
import SortedFormats
import SortedInference
import SortedKit
import SortedTestSupport
@testable import SortedTraining

final class ModelCardTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws { directory = try makeTemporaryDirectory("sortedtrain-card") }

    let chatTemplate = "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"

    /// bytelevel.json in a folder of its own, beside a chat_template.jinja.
    var tokenizer: String {
        let folder = directory.appendingPathComponent("tokenizer")
        if !FileManager.default.fileExists(atPath: folder.path) {
            try! FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
            try! FileManager.default.copyItem(at: URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
                .appendingPathComponent("Fixtures/tokenizers/bytelevel.json"), to: folder.appendingPathComponent("tokenizer.json"))
            try! Data(chatTemplate.utf8).write(to: folder.appendingPathComponent("chat_template.jinja"))
        }
        return folder.appendingPathComponent("tokenizer.json").path
    }

    /// A saved run of 3 layers with exits 1…3, a ChatML template and `bytelevel.json`, started
    /// from an HF folder whose README names its base model and license.
    func savedRun() throws -> String {
        var base = try smallRunConfig(in: directory)
        var root = try JSONSerialization.jsonObject(with: Data(base.json.utf8)) as! [String: Any]
        root["data"] = ["tokenizer": tokenizer, "template": "chatml", "train": ["corpus/train.jsonl"]]
        base.json = String(decoding: try JSONSerialization.data(withJSONObject: root), as: UTF8.self)
        let source = directory.appendingPathComponent("base-model")
        try FileManager.default.createDirectory(at: source, withIntermediateDirectories: true)
        try Data("{\"hidden_size\": 16}".utf8).write(to: source.appendingPathComponent("config.json"))
        try Data("---\nlicense: apache-2.0\nbase_model: Org/Base-1B\ntags:\n- x\n---\n# Base\n".utf8)
            .write(to: source.appendingPathComponent("README.md"))
        let trainer = try smallTrainer(base)
        _ = try trainer.run(until: 2)
        let manager = CheckpointManager(root: base.checkpoint.directory, keep: 2, communicator: SingleProcessCommunicator())
        manager.initialWeights = source.path
        return try manager.save(trainer)
    }

    func report(_ depths: [Int]) -> EvaluationReport {
        EvaluationReport(model: "checkpoint x", exits: depths.map {
            ExitReport(depth: $0, loss: 2.5 / Double($0), perplexity: 3, lossTokens: 10, accuracy: 0.5, agreement: 0.75,
                       klFromDeepest: 0.1, exactMatch: 0.25, answered: 8, generationTokensPerSecond: nil)
        })
    }

    func testHFExportCarriesCardGenerationConfigAndExits() throws {
        let checkpoint = try savedRun()
        let out = directory.appendingPathComponent("exit-2")
        try ModelExporter.export(checkpoint: checkpoint, depth: 2, format: .hf, output: out, force: false, evaluation: report([1, 2, 3]))

        let card = try String(contentsOf: out.appendingPathComponent("README.md"), encoding: .utf8)
        let front = ModelCard.frontMatter(card)
        XCTAssertEqual(front["base_model"], "Org/Base-1B")
        XCTAssertEqual(front["license"], "apache-2.0")
        XCTAssertEqual(front["library_name"], "transformers")
        XCTAssertTrue(card.contains("- sorted-fine-tuning\n"), card)
        XCTAssertTrue(card.contains("Trained exits: 1, 2, 3 of 3 layers; usable in this export: 1, 2"), card)
        XCTAssertTrue(card.contains("Steps: 2, tokens: 32"), card)                 // 2 steps × 2 sequences × 8 tokens
        XCTAssertTrue(card.contains("`corpus/train.jsonl`"), card)
        XCTAssertTrue(card.contains("| 2 | 1.2500 | 3.000 | 0.500 | 0.750 | 25.0% of 8 |"), card)
        XCTAssertTrue(card.contains("assistant_early_exit=1"), card)

        let generation = try JSONParser.parse(Data(contentsOf: out.appendingPathComponent("generation_config.json")))
        let t = try TokenizerLoader.load(tokenizer)
        // ChatML turns end at <|im_end|>: generation stops there as well as at EOS.
        XCTAssertEqual(generation["eos_token_id"]?.array?.compactMap(\.int), [Int(t.eosID!), Int(t.id(forToken: "<|im_end|>")!)])
        XCTAssertEqual(generation["bos_token_id"]?.int, t.bosID.map(Int.init))

        let config = try JSONParser.parse(Data(contentsOf: out.appendingPathComponent("config.json")))
        XCTAssertEqual(config["sortedtrain"]?["exits"]?.array?.compactMap(\.int), [1, 2])
        XCTAssertEqual(config["num_hidden_layers"]?.int, 2)

        XCTAssertEqual(try String(contentsOf: out.appendingPathComponent("chat_template.jinja"), encoding: .utf8), chatTemplate,
                       "the model's own chat template travels with the tokenizer")
        let inspection = try ModelInspector.inspect(out.path)
        XCTAssertEqual(inspection.exits, [1, 2])
        XCTAssertEqual(inspection.dtype, "float32")
        XCTAssertEqual(inspection.tokenizer, "tokenizer.json, \(t.vocabularySize) tokens")
    }

    func testFullDepthCardWithoutBaseOrEvaluation() throws {
        let card = ModelCard(depth: 4, trainedLayers: 4, exits: [2, 4], steps: 10, tokens: 640, dataFiles: [],
                             template: .alpaca, base: nil, evaluation: nil)
        let text = card.markdown(modelName: "m")
        XCTAssertNil(ModelCard.frontMatter(text)["base_model"])
        XCTAssertNil(ModelCard.frontMatter(text)["license"])
        XCTAssertTrue(text.contains("The full 4-layer model"), text)
        XCTAssertTrue(text.contains("assistant_early_exit=2"), text)
        XCTAssertFalse(text.contains("## Evaluation"), text)
        XCTAssertTrue(text.contains("- Data: synthetic"), text)
        // A GGUF's descriptive name is not a hub id: it goes into the text, not base_model.
        var named = card
        named.base = ModelCard.BaseModel(name: "HuggingFaceTB/Smollm2 135M", license: "apache-2.0", path: "m.gguf")
        let withName = named.markdown(modelName: "m")
        XCTAssertNil(ModelCard.frontMatter(withName)["base_model"])
        XCTAssertEqual(ModelCard.frontMatter(withName)["license"], "apache-2.0")
        XCTAssertTrue(withName.contains("- Base model: HuggingFaceTB/Smollm2 135M (from `m.gguf`)"), withName)
        let plain = ModelCard.generationConfig(tokenizer: ByteTokenizer(), template: .alpaca)
        XCTAssertEqual(plain["eos_token_id"] as? Int, 257)
        XCTAssertEqual(plain["pad_token_id"] as? Int, 258)
    }

    func testEvaluationReportIsReadOrRefused() throws {
        let good = directory.appendingPathComponent("eval.json")
        try JSONEncoder().encode(report([2, 4])).write(to: good)
        XCTAssertEqual(try ModelExporter.readEvaluation(good.path).exits.map(\.depth), [2, 4])
        let bad = directory.appendingPathComponent("bad.json")
        try Data("{\"model\": 1}".utf8).write(to: bad)
        XCTAssertThrowsError(try ModelExporter.readEvaluation(bad.path)) { XCTAssertTrue($0 is DataError, "\($0)") }
        XCTAssertThrowsError(try ModelExporter.readEvaluation(directory.path)) { XCTAssertTrue($0 is FileFailure, "\($0)") }
    }
}
