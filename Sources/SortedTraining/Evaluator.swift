// Evaluator: per exit, the held-out loss (and perplexity) on response tokens, and the
// exact-match accuracy of greedy answers to instruction records, with generation speed —
// the numbers that say which depth serves which budget.
import Foundation
import SortedData
import SortedKit

public struct ExitReport: Codable, Sendable {
    public var depth: Int
    public var loss: Double
    public var perplexity: Double
    public var loss_tokens: Int
    /// Exact-match accuracy of greedy answers (nil without instruction records).
    public var exact_match: Double?
    public var answered: Int
    /// Generated tokens per second at this depth.
    public var generation_tokens_per_s: Double?
}

public enum Evaluator {
    public static func run(_ loaded: LoadedModel, files: [String], exits: [Int], limit: Int, batchSize: Int,
                           maxNewTokens: Int, progress: (String) -> Void = { _ in }) throws -> [ExitReport] {
        let L = loaded.model.config.numHiddenLayers
        if let bad = exits.first(where: { $0 < 1 || $0 > L }) {
            throw TrainingError("--exits: depth \(bad) is outside 1...\(L)")
        }
        let builder = ExampleBuilder(tokenizer: loaded.tokenizer, template: loaded.template, maxLength: loaded.window)
        let dataset = try DatasetLoader.load(files, builder: builder)
        let losses = try exitLosses(loaded, dataset: dataset, exits: exits, batchSize: batchSize)
        progress("loss on \(dataset.count) examples of \(files.joined(separator: ", "))")

        // Instruction records with an answer, for exact match.
        var questions: [(prompt: [Int32], answer: String)] = []
        for file in files {
            for sourced in try RecordReader.read(URL(fileURLWithPath: file)).records {
                guard questions.count < limit, case .instruction(let instruction, let input, let output) = sourced.record,
                      !output.isEmpty else { continue }
                questions.append((try loaded.template.prompt(instruction: instruction, input: input, tokenizer: loaded.tokenizer), output))
            }
        }
        var stop = Set<Int32>()
        if let eos = loaded.tokenizer.eosID { stop.insert(eos) }
        if loaded.template == .chatml, let end = loaded.tokenizer.id(forToken: "<|im_end|>") { stop.insert(end) }

        return try zip(exits, losses).map { depth, loss in
            var report = ExitReport(depth: depth, loss: loss.mean, perplexity: exp(loss.mean), loss_tokens: loss.tokens,
                                    exact_match: nil, answered: 0, generation_tokens_per_s: nil)
            guard !questions.isEmpty else { return report }
            let generator = try Generator(model: loaded.model, depth: depth, batchSize: batchSize, window: loaded.window)
            var correct = 0, generated = 0
            let start = ContinuousClock.now
            for first in stride(from: 0, to: questions.count, by: batchSize) {
                let slice = questions[first..<min(first + batchSize, questions.count)]
                let outputs = generator.generate(slice.map(\.prompt), maxNewTokens: maxNewTokens, stop: stop)
                for (output, question) in zip(outputs, slice) {
                    generated += output.count
                    let text = loaded.tokenizer.decode(output, skipSpecialTokens: true)
                    if SynthTasks.grade(prediction: text, answer: question.answer) { correct += 1 }
                }
            }
            let seconds = (ContinuousClock.now - start).seconds
            report.exact_match = Double(correct) / Double(questions.count)
            report.answered = questions.count
            report.generation_tokens_per_s = Double(generated) / max(seconds, 1e-9)
            progress(String(format: "exit %d: exact match %d/%d, %.0f generated tokens/s", depth, correct, questions.count,
                            report.generation_tokens_per_s!))
            return report
        }
    }

    /// Mean cross-entropy of each exit over the labelled tokens of the whole dataset.
    static func exitLosses(_ loaded: LoadedModel, dataset: PreparedDataset, exits: [Int], batchSize: Int) throws -> [ExitLoss] {
        let T = loaded.window
        let pass = try SortedPass(model: loaded.model, batchSize: batchSize, sequenceLength: T)
        let weighted = exits.map { WeightedExit(depth: $0, weight: 1) }
        var totals = exits.map { ExitLoss(depth: $0, negativeLogLikelihood: 0, tokens: 0) }
        for first in stride(from: 0, to: dataset.count, by: batchSize) {
            let indices = Array(first..<min(first + batchSize, dataset.count))
            var (tokens, labels) = dataset.batch(indices, sequenceLength: T)
            // A short last batch is padded with rows that carry no loss.
            tokens += [Int32](repeating: dataset.paddingID, count: (batchSize - indices.count) * T)
            labels += [Int32](repeating: TokenBatch.ignoreIndex, count: (batchSize - indices.count) * T)
            let batch = TokenBatch(batchSize: batchSize, sequenceLength: T, tokens: tokens, labels: labels)
            try batch.validate(vocabSize: loaded.model.config.vocabSize)
            for (i, loss) in pass.run(batch, exits: weighted, lossNormalizer: 1, computeGradients: false).enumerated() {
                totals[i].negativeLogLikelihood += loss.negativeLogLikelihood
                totals[i].tokens += loss.tokens
            }
        }
        return totals
    }
}
