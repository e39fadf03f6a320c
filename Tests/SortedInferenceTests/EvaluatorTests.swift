// Evaluation through the inference path against the training pass it replaces: per exit, the
// loss, the top-1 agreement and the KL against the deepest exit equal what SortedPass's logits
// give (in float64); exact match counts what the model actually answers.
import Foundation
import SortedTestSupport
import XCTest
import SortedData
import SortedKit
@testable import SortedInference

final class EvaluatorTests: XCTestCase {
    private var directory: URL!

    override func setUpWithError() throws { directory = try makeTemporaryDirectory("sortedtrain-eval") }

    private func write(_ records: [[String: String]]) throws -> String {
        let lines = try records.map { String(decoding: try JSONSerialization.data(withJSONObject: $0, options: [.sortedKeys]), as: UTF8.self) }
        let file = directory.appendingPathComponent("eval.jsonl")
        try lines.joined(separator: "\n").write(to: file, atomically: true, encoding: .utf8)
        return file.path
    }

    func testLossAgreementAndKLEqualTheTrainingPass() throws {
        let source = try trainingModel(layers: 3, vocab: 259), model = try InferenceModel(source)
        let tokenizer = ByteTokenizer()
        let loaded = LoadedModel(model: model, tokenizer: tokenizer, template: .none, exits: [1, 2, 3], window: 64,
                                 validation: [], description: "test")
        let file = try write((0..<5).map { ["instruction": "Add \($0) and \($0 * 3)", "input": "", "output": "\($0 * 4)"] })
        let reports = try Evaluator.run(loaded, files: [file], settings: EvaluationSettings(exits: [1, 2, 3], answerLimit: 0))
        // The plain path: the training pass over the same examples, one per batch.
        let dataset = try DatasetLoader.load([file], builder: ExampleBuilder(tokenizer: tokenizer, template: .none, maxLength: 64))
        var nll = [0.0, 0.0, 0.0], tokens = 0
        var agree = [0.0, 0.0], kl = [0.0, 0.0]   // exits 1 and 2 against exit 3, in float64
        let V = model.config.vocabSize
        for i in 0..<dataset.count {
            let T = dataset.length(i)
            let (ids, labels) = dataset.batch([i], sequenceLength: T)
            let batch = TokenBatch(batchSize: 1, sequenceLength: T, tokens: ids, labels: labels)
            let pass = try SortedPass(model: source, batchSize: 1, sequenceLength: T)
            let losses = pass.run(batch, exits: [1, 2, 3].map { WeightedExit(depth: $0, weight: 1) }, lossNormalizer: 1, computeGradients: false)
            for (e, loss) in losses.enumerated() { nll[e] += loss.negativeLogLikelihood }
            tokens += losses[0].tokens
            let rows = batch.targets.indices.filter { batch.targets[$0] >= 0 }
            let deep = pass.logits(batch, depth: 3, rows: rows)
            for e in 0..<2 {
                let shallow = pass.logits(batch, depth: e + 1, rows: rows)
                for r in 0..<rows.count {
                    let p = Array(deep[(r * V)..<((r + 1) * V)]), q = Array(shallow[(r * V)..<((r + 1) * V)])
                    if p.indices.max(by: { p[$0] < p[$1] }) == q.indices.max(by: { q[$0] < q[$1] }) { agree[e] += 1 }
                    func logSoftmax(_ x: [Float]) -> [Double] {
                        let m = Double(x.max()!), z = x.map { exp(Double($0) - m) }.reduce(0, +)
                        return x.map { Double($0) - m - log(z) }
                    }
                    let lp = logSoftmax(p), lq = logSoftmax(q)
                    kl[e] += zip(lp, lq).map { exp($0) * ($0 - $1) }.reduce(0, +)
                }
            }
        }
        for e in 0..<2 {
            XCTAssertEqual(reports[e].agreement, agree[e] / Double(tokens), accuracy: 1e-12, "exit \(e + 1) agreement")
            XCTAssertEqual(reports[e].klFromDeepest, kl[e] / Double(tokens), accuracy: 1e-4 * kl[e] / Double(tokens) + 1e-7,
                           "exit \(e + 1) KL")
        }
        for (e, report) in reports.enumerated() {
            XCTAssertEqual(report.lossTokens, tokens)
            XCTAssertEqual(report.loss, nll[e] / Double(tokens), accuracy: 1e-5 * abs(report.loss), "exit \(report.depth)")
            XCTAssertEqual(report.perplexity, exp(report.loss), accuracy: 1e-9 * report.perplexity)
            XCTAssert((0...1).contains(report.accuracy) && (0...1).contains(report.agreement))
        }
        XCTAssertGreaterThan(reports[0].klFromDeepest, 0)
    }

    func testExactMatchCountsTheModelsOwnAnswers() throws {
        let model = try inferenceModel(layers: 3, vocab: 259)
        let tokenizer = ByteTokenizer()
        let loaded = LoadedModel(model: model, tokenizer: tokenizer, template: .none, exits: [1, 3], window: 48,
                                 validation: [], description: "test model")
        let questions = ["What is 2 + 2?", "Reverse: abc", "Count the letters"]
        let generator = try TextGenerator(model: model, strategy: .fixed(depth: 3), stop: loaded.stopTokens, batchSize: 3, capacity: 48)
        let prompts = try questions.map { try PromptTemplate.none.prompt(instruction: $0, tokenizer: tokenizer) }
        let answers = generator.generate(prompts, maxNewTokens: 8).map { tokenizer.decode($0, skipSpecialTokens: true) }
        // Two of the three records hold exactly what depth 3 answers.
        let file = try write(questions.enumerated().map { i, q in
            let output = i == 2 ? "certainly not this" : answers[i]
            return ["instruction": q, "input": "", "output": output.isEmpty ? "-" : output]
        })
        let reports = try Evaluator.run(loaded, files: [file],
                                        settings: EvaluationSettings(exits: [1, 3], answerLimit: 10, batchSize: 2, maxNewTokens: 8))
        XCTAssertEqual(reports.map(\.depth), [1, 3])
        let expected = answers.prefix(2).filter { !$0.isEmpty }.count   // an empty answer was written as "-"
        XCTAssertEqual(reports[1].answered, 3)
        XCTAssertEqual(reports[1].exactMatch!, Double(expected) / 3, accuracy: 1e-12)
        XCTAssertNotNil(reports[0].generationTokensPerSecond)
    }

    func testBadExitsAreRefusedWithAReason() throws {
        let model = try inferenceModel(layers: 3, vocab: 259)
        let loaded = LoadedModel(model: model, tokenizer: ByteTokenizer(), template: .none, exits: [3], window: 16,
                                 validation: [], description: "test")
        let file = try write([["instruction": "a", "input": "", "output": "b"]])
        for exits in [[], [4], [2, 1], [0, 3]] {
            XCTAssertThrowsError(try Evaluator.run(loaded, files: [file], settings: EvaluationSettings(exits: exits))) { error in
                XCTAssert(error is EvaluationError, "exits \(exits): \(error)")
            }
        }
    }
}
