// Run configs: defaults, overrides, and one clear error naming the key for bad input.
import Foundation
import SortedTestSupport
import XCTest
@testable import SortedTraining
import SortedKit

final class RunConfigTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws { directory = try makeTemporaryDirectory("sortedtrain-cfg") }

    let model = #""model": {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 4, "num_attention_heads": 2, "vocab_size": 50, "max_position_embeddings": 64}"#

    func write(_ text: String, name: String = "run.json") throws -> String {
        let url = directory.appendingPathComponent(name)
        try Data(text.utf8).write(to: url)
        return url.path
    }

    func assertConfigError(_ text: String, overrides: [String] = [], key: String, mentions: String,
                           file: StaticString = #filePath, line: UInt = #line) throws {
        let path = try write(text)
        XCTAssertThrowsError(try RunConfig.load(path: path, overrides: overrides), file: file, line: line) { error in
            let e = error as? ConfigError
            XCTAssertEqual(e?.file, path, "\(error)", file: file, line: line)
            XCTAssertEqual(e?.key, key, "\(error)", file: file, line: line)
            XCTAssertTrue(e?.message.contains(mentions) ?? false, "\(error) should mention '\(mentions)'", file: file, line: line)
        }
    }

    func testWrongButParseableValuesAreRefused() throws {
        let train = #""train": {"sequence_length": 8}"#
        // A key written twice: the reader names its line and column instead of keeping the last.
        let twice = try write("{\(model),\n \(train),\n \"optim\": {\"lr\": 0.1, \"lr\": 0.2}}")
        XCTAssertThrowsError(try RunConfig.load(path: twice)) {
            XCTAssertTrue("\($0)".hasPrefix("\(twice):3:") && "\($0)".contains("duplicate key \"lr\""), "\($0)")
        }
        try assertConfigError("{\(model), \(train), \"optim\": {\"weight_decay\": 1e6}}", key: "optim.weight_decay", mentions: "wipe the weights")
        try assertConfigError("{\(model), \(train), \"log\": {\"dir\": \"\"}}", key: "log.dir", mentions: "is empty")
        // A huge bad value is quoted by its start and size, not whole.
        let huge = String(repeating: "x", count: 1 << 20)
        try assertConfigError("{\(model), \(train), \"optim\": {\"lr\": \"\(huge)\"}}", key: "optim.lr", mentions: "(1048578 bytes)")
        try assertConfigError("{\(model), \(train), \"distributed\": {\"zero_stage\": 2}}", key: "distributed.zero_stage", mentions: "'2' is not one of: 0, 1")
        try assertConfigError("{\(model), \(train), \"distributed\": {\"zero_stage\": \"1\"}}", key: "distributed.zero_stage", mentions: "an integer")
        try assertConfigError("{\(model), \(train), \"data\": {\"train\": \"\"}}", key: "data.train", mentions: "is empty")
        try assertConfigError("{\(model), \(train)}", overrides: ["train.micro_batch_size=1000000000"], key: "train.micro_batch_size",
                              mentions: "this machine has")
        try assertConfigError("{\(model), \(train)}", overrides: ["train.accumulation_steps=1000000000000000"],
                              key: "train.accumulation_steps", mentions: "more than can be counted")
        XCTAssertThrowsError(try RunConfig.load(path: try write("{\(model), \(train)}"), overrides: ["train..max_steps=3"])) {
            XCTAssertEqual(($0 as? ConfigError)?.problem,
                           .malformedOverride("train..max_steps=3", expected: "an override names a section and a key: section.key=value"))
        }
    }

    func testErrorsAreCasesLocatedWhereTheValueIsWritten() throws {
        func error(_ text: String, overrides: [String] = []) throws -> ConfigError? {
            let path = try write(text)
            do { _ = try RunConfig.load(path: path, overrides: overrides) } catch let e as ConfigError { return e }
            XCTFail("\(text) loaded")
            return nil
        }
        let small = try error("{\(model),\n \"train\": {\"sequence_length\": 8,\n   \"micro_batch_size\": 0}}")
        XCTAssertEqual(small?.problem, .belowMinimum(minimum: 1, found: 0))
        XCTAssertEqual(small?.key, "train.micro_batch_size")
        XCTAssertEqual(small.map { [$0.line, $0.column] }, [3, 24], "where the 0 is written")
        XCTAssertTrue("\(small!)".hasPrefix("\(directory.path)/run.json:3:24: train.micro_batch_size: must be at least 1"), "\(small!)")
        // The same value from --set has no place in the file.
        let overridden = try error("{\(model),\n \"train\": {\"sequence_length\": 8}}", overrides: ["train.micro_batch_size=0"])
        XCTAssertEqual(overridden?.problem, .belowMinimum(minimum: 1, found: 0))
        XCTAssertNil(overridden?.line)
        let unknown = try error("{\(model), \"train\": {\"sequence_length\": 8},\n\n \"optim\": {\"learning_rate\": 1}}")
        XCTAssertEqual(unknown?.line, 3)
        guard case .unknownKey(section: "optim", let known)? = unknown?.problem else { return XCTFail("\(unknown!)") }
        XCTAssertTrue(known.contains("lr"))
        XCTAssertEqual(try error("{\(model), \"train\": {\"sequence_length\": 8}, \"data\": {\"template\": \"llama\"}}")?.problem,
                       .notOneOf(value: "llama", choices: ["alpaca", "chatml", "none", "model"]))
        XCTAssertEqual(try error("{\(model), \"train\": {\"sequence_length\": 8, \"seed\": true}}")?.problem, .wrongType(expected: "an integer", found: "true"))
        let recompute = try error("{\(model), \"train\": {\"sequence_length\": 8, \"recompute\": \"all\"}}")
        XCTAssertEqual(recompute?.key, "train.recompute")
        XCTAssertEqual(recompute?.problem, .notOneOf(value: "all", choices: ["none", "layers"]))
        XCTAssertEqual(try error("{\(model), \"train\": {\"sequence_length\": 8}, \"sorted\": {\"exits\": [1, 2.5]}}")?.problem,
                       .wrongType(expected: "an array of integers", found: "[1, 2.5]"))
        // A model key is located too, and named once ("model.hidden_size").
        let shape = try error("{\"model\": {\"hidden_size\": 16, \"intermediate_size\": 32, \"num_hidden_layers\": 4,\n \"num_attention_heads\": 3, \"vocab_size\": 50}}")
        XCTAssertEqual(shape?.key, "model.hidden_size")
        XCTAssertEqual(shape?.line, 1)
        // An error in the file model.path names keeps that file's name.
        let elsewhere = try error(#"{"model": {"path": "/nonexistent/config.json"}}"#)
        XCTAssertEqual(elsewhere?.file, "/nonexistent/config.json")
        XCTAssertNil(elsewhere?.line)
    }

    func testExitSchedulesAreReadAndCheckedByKey() throws {
        let base = "{\(model), \"train\": {\"sequence_length\": 8, \"max_steps\": 40}, \"sorted\": "
        let config = try RunConfig.load(path: try write(base + #"{"exits": [2, 4], "scale": "inverse_sqrt", "curriculum": "gradual", "weight_start": 0.2, "warmup_steps": 10, "warmup": "cosine"}}"#))
        XCTAssertEqual(config.objective.scale, .inverseSqrt)
        XCTAssertEqual(config.objective.curriculum, .gradual)
        XCTAssertEqual(config.objective.totalSteps, 40)
        XCTAssertEqual(config.objective.warmup, ExitWarmup(start: [0.2, 1], steps: [10, 0], shape: .cosine), "the full model does not ramp")
        let distilled = try RunConfig.load(path: try write(base + #"{"exits": [2, 4], "distill": {"weight": 0.5, "temperature": 2, "teacher": "last"}}}"#))
        XCTAssertEqual(distilled.objective.distillation, Distillation(weight: 0.5, temperature: 2))
        let perExit = try RunConfig.load(path: try write(base + #"{"exits": [2, 4], "weight_start": [0, 0.5], "warmup_steps": [5, 8]}}"#))
        XCTAssertEqual(perExit.objective.warmup, ExitWarmup(start: [0, 0.5], steps: [5, 8], shape: .linear))
        for (sorted, key, mentions) in [(#"{"exits": [2, 4], "weight_start": 0}"#, "sorted.warmup_steps", "needs both"),
                                        (#"{"exits": [2, 4], "warmup": "cosine"}"#, "sorted.warmup", "weight_start"),
                                        (#"{"exits": [2, 4], "weight_start": [0], "warmup_steps": 3}"#, "sorted.weight_start", "one value per exit"),
                                        (#"{"exits": [2, 4], "scale": "linear", "weights": [1, 2]}"#, "sorted.scale", "keep one"),
                                        (#"{"exits": [2, 4], "scale": "cubic"}"#, "sorted.scale", "inverse_sqrt"),
                                        (#"{"exits": [2, 4], "curriculum": "gradual", "sampling": "random"}"#, "sorted.curriculum", "keep one"),
                                        (#"{"exits": [2, 4], "curriculum": "rotational", "weights": [1, 2]}"#, "sorted.curriculum", "sorted.scale"),
                                        (#"{"exits": [2, 4], "distill": {"weight": 1, "temperature": 0}}"#, "sorted.distill.temperature", "positive"),
                                        (#"{"exits": [2, 4], "distill": {"weight": 1, "teacher": "first"}}"#, "sorted.distill.teacher", "last"),
                                        (#"{"exits": [2, 4], "distill": {"alpha": 1}}"#, "sorted.distill.alpha", "unknown key"),
                                        (#"{"exits": [2, 4], "distill": 0.5}"#, "sorted.distill", "an object"),
                                        // Each finite, but their sum overflows: normalised they would all be 0.
                                        (#"{"exits": [2, 4], "weights": [1e308, 1e308]}"#, "sorted.weights", "cannot normalise")] {
            try assertConfigError(base + sorted + "}", key: key, mentions: mentions)
        }
    }

    func testDefaultsAndOverrides() throws {
        let path = try write("{\(model), \"sorted\": {\"exits\": [2, 4]}, \"train\": {\"sequence_length\": 32}}")
        let config = try RunConfig.load(path: path, overrides: ["optim.lr=0.01", "train.micro_batch_size=3", "sorted.sampling=random"])
        XCTAssertEqual(config.objective.exits, [2, 4])
        XCTAssertEqual(config.objective.sampling, .random)
        XCTAssertEqual(config.optimizer.learningRate, 0.01)
        XCTAssertEqual(config.train.microBatchSize, 3)
        XCTAssertEqual(config.train.sequenceLength, 32)
        XCTAssertEqual(config.maxGradNorm, 1.0)
        let sft = try RunConfig.load(path: try write("{\(model), \"train\": {\"sequence_length\": 32}}"))
        XCTAssertEqual(sft.objective.exits, [4], "no exits given means plain SFT")
    }

    func testTemplateDefaultsToTheTokenizersOwnChatTemplate() throws {
        let folder = directory.appendingPathComponent("tokenizer")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/tokenizers/bytelevel.json"), to: folder.appendingPathComponent("tokenizer.json"))
        let data = #""train": {"sequence_length": 32}, "data": {"tokenizer": "\#(folder.path)"}"#
        XCTAssertEqual(try RunConfig.load(path: try write("{\(model), \(data)}")).data.template, .alpaca, "no chat template: alpaca")
        try Data("{{ messages[0].content }}".utf8).write(to: folder.appendingPathComponent("chat_template.jinja"))
        let config = try RunConfig.load(path: try write("{\(model), \(data)}"))
        XCTAssertEqual(config.data.template, .model)
        XCTAssertEqual(try RunConfig.load(path: try write("{\(model), \(data)}"), overrides: ["data.template=chatml"]).data.template, .chatml)
        // The stored config says what was chosen; a stored config without the key is from
        // before the model default, when the default was alpaca.
        XCTAssertEqual(try RunConfig.decode(stored: config.json, source: "checkpoint").data.template, .model)
        XCTAssertEqual(try RunConfig.decode(stored: "{\(model), \(data)}", source: "checkpoint").data.template, .alpaca)
    }

    func testModelFromConfigJSONPath() throws {
        _ = try write(#"{"hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 3, "num_attention_heads": 2, "vocab_size": 11, "model_type": "llama", "torch_dtype": "float32"}"#,
                      name: "config.json")
        let modelPath = directory.appendingPathComponent("config.json").path
        let config = try RunConfig.load(path: try write(#"{"model": {"path": "\#(modelPath)"}, "train": {"sequence_length": 16}}"#))
        XCTAssertEqual(config.model.numHiddenLayers, 3)
    }

    func testBadInputNamesTheKey() throws {
        try assertConfigError("{\(model), \"sorted\": {\"exits\": [2, 9]}, \"train\": {\"sequence_length\": 8}}", key: "sorted.exits", mentions: "outside 1...4")
        try assertConfigError("{\(model), \"optim\": {\"learning_rate\": 1}, \"train\": {\"sequence_length\": 8}}", key: "optim.learning_rate", mentions: "unknown key")
        try assertConfigError("{\(model), \"optim\": {\"lr\": \"fast\"}, \"train\": {\"sequence_length\": 8}}", key: "optim.lr", mentions: "expected a number")
        try assertConfigError("{\(model), \"train\": {\"micro_batch_size\": 0, \"sequence_length\": 8}}", key: "train.micro_batch_size", mentions: "at least 1")
        try assertConfigError("{\(model), \"train\": {\"sequence_length\": 100}}", key: "train.sequence_length", mentions: "max_position_embeddings")
        try assertConfigError("{\(model), \"trian\": {}}", key: "trian", mentions: "unknown section")
        try assertConfigError("{\(model), \"log\": {\"eval_every\": 50}, \"train\": {\"sequence_length\": 8}}", key: "log.eval_every", mentions: "data.validation")
        try assertConfigError("{\(model), \"log\": {\"eval_every\": -1}, \"train\": {\"sequence_length\": 8}}", key: "log.eval_every", mentions: "at least 0")
        try assertConfigError("{\(model), \"sorted\": {\"reduction\": \"avg\"}, \"train\": {\"sequence_length\": 8}}", key: "sorted.reduction", mentions: "not one of")
        try assertConfigError(#"{"model": {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 4, "num_attention_heads": 3, "vocab_size": 50}}"#,
                              key: "model.hidden_size", mentions: "not divisible by num_attention_heads")
        let broken = try write("{\(model), \"train\": {\"sequence_length\": 8}")
        XCTAssertThrowsError(try RunConfig.load(path: broken)) {
            XCTAssertTrue("\($0)".hasPrefix("\(broken):1:") && "\($0)".contains("is not valid JSON"), "\($0)")
        }
        XCTAssertThrowsError(try RunConfig.load(path: try write("{\(model)}", name: "ok.json"), overrides: ["optim.lr"])) {
            XCTAssertEqual(($0 as? ConfigError)?.problem,
                           .malformedOverride("optim.lr", expected: "an override must look like section.key=value"))
        }
    }

    func testMissingFileIsOneClearError() {
        XCTAssertThrowsError(try RunConfig.load(path: "/nonexistent/run.json")) { error in
            XCTAssertTrue("\(error)".hasPrefix("/nonexistent/run.json: cannot be read"), "\(error)")
        }
    }
}
