// Evaluator: every exit of one model on held-out data, through the inference path —
// on response tokens the loss and perplexity, next-token accuracy, top-1 agreement with
// the deepest evaluated exit and the mean KL(deepest ‖ exit) (the paper's layer analysis);
// and, for instruction records with a reference answer, the exact match of greedy answers
// with the generation speed. Under mpirun each rank takes every size-th example and the
// sums are all-reduced, so any number of ranks reports the numbers of one process.
// Memory: the weights, one sequence's KV cache and a few [rows, V] logit blocks.
import Foundation
import SortedData
import SortedDistributed
import SortedKit

public struct ExitReport: Codable, Sendable, Equatable {
    public var depth: Int
    public var loss: Double
    public var perplexity: Double
    public var lossTokens: Int
    /// Fraction of response tokens whose argmax is the target.
    public var accuracy: Double
    /// Fraction of response tokens whose argmax equals the deepest evaluated exit's.
    public var agreement: Double
    /// Mean KL(deepest exit ‖ this exit) over response tokens, in nats.
    public var klFromDeepest: Double
    /// Exact-match accuracy of greedy answers (nil without instruction records).
    public var exactMatch: Double?
    public var answered: Int
    /// Generated tokens per second at this depth (batched greedy decoding).
    public var generationTokensPerSecond: Double?

    public init(depth: Int, loss: Double, perplexity: Double, lossTokens: Int, accuracy: Double, agreement: Double,
                klFromDeepest: Double, exactMatch: Double?, answered: Int, generationTokensPerSecond: Double?) {
        self.depth = depth
        self.loss = loss
        self.perplexity = perplexity
        self.lossTokens = lossTokens
        self.accuracy = accuracy
        self.agreement = agreement
        self.klFromDeepest = klFromDeepest
        self.exactMatch = exactMatch
        self.answered = answered
        self.generationTokensPerSecond = generationTokensPerSecond
    }

    enum CodingKeys: String, CodingKey {
        case depth, loss, perplexity, accuracy, agreement, answered
        case lossTokens = "loss_tokens"
        case klFromDeepest = "kl_from_deepest"
        case exactMatch = "exact_match"
        case generationTokensPerSecond = "generation_tokens_per_s"
    }
}

/// The answers of a dynamic-depth strategy, graded as an exit's are.
public struct StrategyReport: Codable, Sendable, Equatable {
    public var strategy: String
    public var exactMatch: Double
    public var answered: Int
    /// Generated tokens per second, one prompt at a time.
    public var tokensPerSecond: Double
    public var layersPerToken: Double
    /// Token agreement with the last layer's greedy answers (nil when it was not evaluated).
    public var agreementWithFullDepth: Double?

    enum CodingKeys: String, CodingKey {
        case strategy, answered
        case exactMatch = "exact_match"
        case tokensPerSecond = "tokens_per_s"
        case layersPerToken = "layers_per_token"
        case agreementWithFullDepth = "agreement_with_full_depth"
    }
}

public struct EvaluationSettings: Sendable {
    public var exits: [Int]
    /// Instruction records answered per exit (0: no generation).
    public var answerLimit: Int
    /// Prompts generated together.
    public var batchSize: Int
    public var maxNewTokens: Int
    /// Dynamic-depth strategies whose answers are graded too (e.g. early exit by probes).
    public var strategies: [(name: String, strategy: DecodingStrategy)] = []

    public init(exits: [Int], answerLimit: Int = 200, batchSize: Int = 8, maxNewTokens: Int = 32) {
        self.exits = exits
        self.answerLimit = answerLimit
        self.batchSize = batchSize
        self.maxNewTokens = maxNewTokens
    }
}

public enum EvaluationError: Error, CustomStringConvertible {
    case badExits(String)
    /// An example holds a token id the model has no embedding for.
    case tokenOutOfRange(example: Int, id: Int32, vocabulary: Int)
    public var description: String {
        switch self {
        case .badExits(let message): return message
        case .tokenOutOfRange(let example, let id, let vocabulary):
            return "example \(example) holds token id \(id), but the model has \(vocabulary) embeddings: tokenize with the model's own tokenizer"
        }
    }
}

public enum Evaluator {
    public static func run(_ loaded: LoadedModel, files: [String], settings: EvaluationSettings,
                           communicator: Communicator = SingleProcessCommunicator(),
                           progress: (String) -> Void = { _ in }) throws -> [ExitReport] {
        try runAll(loaded, files: files, settings: settings, communicator: communicator, progress: progress).exits
    }

    /// Every exit, and the answers of `settings.strategies` graded and compared with the
    /// full-depth greedy answers (which need the last layer among the exits).
    public static func runAll(_ loaded: LoadedModel, files: [String], settings: EvaluationSettings,
                              communicator: Communicator = SingleProcessCommunicator(),
                              progress: (String) -> Void = { _ in }) throws -> (exits: [ExitReport], strategies: [StrategyReport]) {
        let L = loaded.model.config.numHiddenLayers
        let exits = settings.exits
        guard !exits.isEmpty else { throw EvaluationError.badExits("no exits to evaluate") }
        if let bad = exits.first(where: { $0 < 1 || $0 > L }) {
            throw EvaluationError.badExits("exit \(bad) is outside 1...\(L)")
        }
        guard exits == exits.sorted(), Set(exits).count == exits.count else {
            throw EvaluationError.badExits("exits must be ascending and distinct, got \(exits.map(String.init).joined(separator: ","))")
        }
        func say(_ line: String) { if communicator.rank == 0 { progress(line) } }

        let builder = ExampleBuilder(tokenizer: loaded.tokenizer, template: loaded.template, maxLength: loaded.window,
                                     chatTemplate: loaded.chatTemplate)
        let dataset = try DatasetLoader.load(files, builder: builder)
        var reports = try heldOut(loaded.model, dataset: dataset, exits: exits, communicator: communicator)
        say("loss on \(dataset.count) examples of \(files.joined(separator: ", "))")
        guard settings.answerLimit > 0 else { return (reports, []) }

        // Instruction records with an answer, for exact match.
        var questions: [(prompt: [Int32], answer: String)] = []
        for file in files {
            for sourced in try RecordReader.read(URL(fileURLWithPath: file)).records {
                guard questions.count < settings.answerLimit,
                      case .instruction(let instruction, let input, let output) = sourced.record, !output.isEmpty else { continue }
                questions.append((try loaded.prompt(instruction: instruction, input: input), output))
            }
        }
        guard !questions.isEmpty else { return (reports, []) }
        let asked = Array(stride(from: communicator.rank, to: questions.count, by: communicator.size)).map { questions[$0] }
        let capacity = min(loaded.model.config.maxPositionEmbeddings,
                           (questions.map(\.prompt.count).max() ?? 0) + min(settings.maxNewTokens, loaded.model.config.maxPositionEmbeddings) + 1)
        var fullDepth: [[Int32]]?
        for (e, depth) in exits.enumerated() {
            let generator = try TextGenerator(model: loaded.model, strategy: .fixed(depth: depth), stop: loaded.stopTokens,
                                              batchSize: min(settings.batchSize, max(asked.count, 1)), capacity: capacity)
            let outputs = generator.generate(asked.map(\.prompt), maxNewTokens: settings.maxNewTokens)
            if depth == L { fullDepth = outputs }
            var counts = [0.0, Double(generator.stats.generatedTokens),
                          generator.stats.prefillSeconds + generator.stats.decodeSeconds]
            for (output, question) in zip(outputs, asked)
            where SynthTasks.grade(prediction: loaded.tokenizer.decode(output, skipSpecialTokens: true), answer: question.answer) {
                counts[0] += 1
            }
            try communicator.allReduceSum(&counts)
            reports[e].exactMatch = counts[0] / Double(questions.count)
            reports[e].answered = questions.count
            // Tokens per second of one rank: total tokens over the ranks' mean time.
            reports[e].generationTokensPerSecond = counts[1] / max(counts[2] / Double(communicator.size), 1e-9)
            say(String(format: "exit %d: exact match %d/%d, %.0f generated tokens/s", depth, Int(counts[0]),
                       questions.count, reports[e].generationTokensPerSecond!))
        }
        var strategies: [StrategyReport] = []
        for (name, strategy) in settings.strategies {
            let generator = try TextGenerator(model: loaded.model, strategy: strategy, stop: loaded.stopTokens, capacity: capacity)
            let outputs = generator.generate(asked.map(\.prompt), maxNewTokens: settings.maxNewTokens)
            let (same, total) = fullDepth.map { tokenAgreement(outputs, $0) } ?? (0, 0)
            let st = generator.stats
            var counts = [0.0, Double(st.generatedTokens), st.decodeSeconds, Double(st.layersComputed), Double(same), Double(total)]
            for (output, question) in zip(outputs, asked)
            where SynthTasks.grade(prediction: loaded.tokenizer.decode(output, skipSpecialTokens: true), answer: question.answer) {
                counts[0] += 1
            }
            try communicator.allReduceSum(&counts)
            let report = StrategyReport(strategy: name, exactMatch: counts[0] / Double(questions.count), answered: questions.count,
                                        tokensPerSecond: counts[1] / max(counts[2] / Double(communicator.size), 1e-9),
                                        layersPerToken: counts[3] / max(counts[1], 1),
                                        agreementWithFullDepth: fullDepth == nil ? nil : counts[4] / max(counts[5], 1))
            strategies.append(report)
            say(String(format: "%@: exact match %d/%d, %.2f layers per token, %.0f tokens/s", name, Int(counts[0]), questions.count,
                       report.layersPerToken, report.tokensPerSecond))
        }
        return (reports, strategies)
    }

    /// The loss-side report of every exit (no generation) over the first `limit` examples
    /// of a tokenized dataset, shared out over the communicator's ranks: what `eval` prints
    /// and what training logs every `log.eval_every` steps. exits: ascending.
    public static func heldOut(_ model: InferenceModel, dataset: PreparedDataset, exits: [Int], limit: Int? = nil,
                               communicator: Communicator) throws -> [ExitReport] {
        let count = min(dataset.count, limit ?? dataset.count)
        let mine = Array(stride(from: communicator.rank, to: count, by: communicator.size))
        var sums = try exitStatistics(model, dataset: dataset, examples: mine, exits: exits)
        try communicator.allReduceSum(&sums)
        return exits.enumerated().map { e, depth in
            let s = Array(sums[(e * 5)..<(e * 5 + 5)])   // nll, tokens, correct, agree, kl
            let n = max(s[1], 1), loss = s[0] / n
            return ExitReport(depth: depth, loss: loss, perplexity: exp(loss), lossTokens: Int(s[1]),
                              accuracy: s[2] / n, agreement: s[3] / n, klFromDeepest: s[4] / n,
                              exactMatch: nil, answered: 0, generationTokensPerSecond: nil)
        }
    }

    /// Per exit, five sums over the labelled tokens of the given examples: NLL, tokens,
    /// correct argmax, argmax agreeing with the deepest exit, KL(deepest ‖ exit).
    static func exitStatistics(_ model: InferenceModel, dataset: PreparedDataset, examples: [Int], exits: [Int]) throws -> [Double] {
        let E = exits.count, V = model.config.vocabSize, D = model.config.hiddenSize
        var sums = [Double](repeating: 0, count: 5 * E)
        guard !examples.isEmpty else { return sums }
        let capacity = min(model.config.maxPositionEmbeddings, max(1, examples.map(dataset.length).max()!))
        let chunk = min(128, capacity)
        let decoder = try IncrementalDecoder(model: model, slots: 1, capacity: capacity, maxRows: chunk, cacheLayers: exits.last!)
        let hidden = decoder.makeHidden(rows: chunk)
        let exitStates = exits.map { _ in decoder.makeHidden(rows: chunk) }   // labelled rows at each exit
        let deepest = FloatBuffer(count: chunk * V), current = FloatBuffer(count: chunk * V)
        for i in examples {
            let (tokens, labels) = dataset.example(i)
            let n = min(tokens.count, capacity)
            let ids = Array(tokens.prefix(n)), labelArray = Array(labels.prefix(n))
            if let bad = (ids + labelArray).first(where: { Int($0) >= V }) {
                throw EvaluationError.tokenOutOfRange(example: i, id: bad, vocabulary: V)
            }
            decoder.cache.reset(slot: 0)
            for first in stride(from: 0, to: n, by: chunk) {
                let rows = min(chunk, n - first)
                // Row r predicts labels[first + r + 1]; the sequence's last token predicts nothing.
                let labelled = (0..<rows).filter { first + $0 + 1 < n && labelArray[first + $0 + 1] >= 0 }
                decoder.embed(Array(ids[first..<(first + rows)]), into: hidden)
                var depth = 0
                for (e, exit) in exits.enumerated() {
                    decoder.forward(hidden, segments: [DecoderSegment(slot: 0, rows: rows)], layers: depth..<exit)
                    depth = exit
                    for (j, r) in labelled.enumerated() {
                        (exitStates[e].pointer + j * D).update(from: hidden.pointer + r * D, count: D)
                    }
                }
                guard !labelled.isEmpty else { continue }
                let m = labelled.count
                decoder.logits(exitStates[E - 1], rows: 0..<m, into: deepest.pointer)
                for e in 0..<E {
                    let logits = e == E - 1 ? deepest : current
                    if e < E - 1 { decoder.logits(exitStates[e], rows: 0..<m, into: current.pointer) }
                    for (j, r) in labelled.enumerated() {
                        let row = logits.pointer + j * V, reference = deepest.pointer + j * V
                        let target = Int(labelArray[first + r + 1])
                        let top = LogitStatistics.argmax(row, count: V)
                        sums[5 * e] += LogitStatistics.logSumExp(row, count: V) - Double(row[target])
                        sums[5 * e + 1] += 1
                        if top == target { sums[5 * e + 2] += 1 }
                        if top == LogitStatistics.argmax(reference, count: V) { sums[5 * e + 3] += 1 }
                        if e < E - 1 { sums[5 * e + 4] += LogitStatistics.klDivergence(reference, row, count: V) }
                    }
                }
            }
        }
        return sums
    }
}
