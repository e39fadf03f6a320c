// Generation and evaluation: greedy decoding agrees with the exit's logits, batching does
// not change answers, and exact match counts what the model actually answers.
import Foundation
import XCTest
import SortedData
import SortedKit
@testable import SortedTraining

final class GenerationTests: XCTestCase {
    func model() throws -> LlamaModel {
        let model = try LlamaModel(config: LlamaConfig(hiddenSize: 32, intermediateSize: 48, numHiddenLayers: 3,
                                                       numAttentionHeads: 4, numKeyValueHeads: 2, vocabSize: 259,
                                                       tieWordEmbeddings: true, maxPositionEmbeddings: 64))
        model.initializeRandomly(seed: 11, std: 0.5)
        return model
    }

    func testGreedyFollowsTheExitLogitsAndIgnoresBatching() throws {
        let m = try model()
        let prompts: [[Int32]] = [[256, 72, 105], [256, 65, 66, 67, 68, 69, 70], [256]]
        for depth in [1, 3] {
            let single = try Generator(model: m, depth: depth, batchSize: 1, window: 24)
            let batched = try Generator(model: m, depth: depth, batchSize: 4, window: 24)
            let together = batched.generate(prompts, maxNewTokens: 6, stop: [])
            for (i, prompt) in prompts.enumerated() {
                let alone = single.generate([prompt], maxNewTokens: 6, stop: [])[0]
                XCTAssertEqual(together[i], alone, "prompt \(i), depth \(depth)")
                XCTAssertEqual(alone.count, 6)
                // The first token is the argmax of the exit's logits after the prompt.
                let pass = try SortedPass(model: m, batchSize: 1, sequenceLength: prompt.count)
                let logits = pass.logits(TokenBatch(batchSize: 1, sequenceLength: prompt.count, tokens: prompt,
                                                    targets: [Int32](repeating: -100, count: prompt.count)),
                                         depth: depth, rows: [prompt.count - 1])
                XCTAssertEqual(Int(alone[0]), logits.indices.max { logits[$0] < logits[$1] }!)
            }
            // A stop token ends the answer before it; a full window ends it too.
            let first = single.generate([prompts[0]], maxNewTokens: 6, stop: [])[0]
            XCTAssertEqual(single.generate([prompts[0]], maxNewTokens: 6, stop: [first[1]])[0].count,
                           first.firstIndex(of: first[1])!)
            XCTAssertEqual(single.generate([prompts[1]], maxNewTokens: 100, stop: [])[0].count, 24 - prompts[1].count)
        }
        // Sampling is seeded.
        let sampler = try Generator(model: m, depth: 2, batchSize: 1, window: 24)
        let a = sampler.generate([prompts[0]], maxNewTokens: 8, stop: [], sampling: SamplingSettings(temperature: 1, topK: 20, seed: 3))
        let b = sampler.generate([prompts[0]], maxNewTokens: 8, stop: [], sampling: SamplingSettings(temperature: 1, topK: 20, seed: 3))
        XCTAssertEqual(a, b)
    }

    func testExactMatchCountsTheModelsOwnAnswers() throws {
        let m = try model()
        let tokenizer = ByteTokenizer()
        let loaded = LoadedModel(model: m, tokenizer: tokenizer, template: .none, exits: [1, 3], window: 48,
                                 validation: [], description: "test model")
        let questions = ["What is 2 + 2?", "Reverse: abc", "Count the letters"]
        let generator = try Generator(model: m, depth: 3, batchSize: 3, window: 48)
        let prompts = try questions.map { try PromptTemplate.none.prompt(instruction: $0, tokenizer: tokenizer) }
        let answers = generator.generate(prompts, maxNewTokens: 8, stop: [tokenizer.eosID!]).map {
            tokenizer.decode($0, skipSpecialTokens: true)
        }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("sortedtrain-eval-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        // Two of the three records hold exactly what depth 3 answers.
        var lines: [String] = []
        for (i, q) in questions.enumerated() {
            let output = i == 2 ? "certainly not this" : answers[i]
            let record = try JSONSerialization.data(withJSONObject: ["instruction": q, "input": "", "output": output.isEmpty ? "-" : output])
            lines.append(String(decoding: record, as: UTF8.self))
        }
        let file = directory.appendingPathComponent("eval.jsonl")
        try lines.joined(separator: "\n").write(to: file, atomically: true, encoding: .utf8)
        let reports = try Evaluator.run(loaded, files: [file.path], exits: [1, 3], limit: 10, batchSize: 2, maxNewTokens: 8)
        XCTAssertEqual(reports.map(\.depth), [1, 3])
        let expected = answers.prefix(2).filter { !$0.isEmpty }.count   // an empty answer was written as "-"
        XCTAssertEqual(reports[1].answered, 3)
        XCTAssertEqual(reports[1].exact_match!, Double(expected) / 3, accuracy: 1e-12)
        XCTAssertGreaterThan(reports[0].loss, 0)
        XCTAssertEqual(reports[0].perplexity, exp(reports[0].loss), accuracy: 1e-9)
    }
}
