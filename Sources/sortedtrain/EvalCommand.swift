// `sortedtrain eval`: every exit of a model on held-out data — loss, perplexity, accuracy,
// agreement and KL against the deepest exit, exact match and speed — alone or under mpirun,
// optionally next to a second model (SFT vs SoFT) and as an SVG chart.
import ArgumentParser
import Foundation
import SortedDistributed
import SortedIO
import SortedInference
import SortedKit
import SortedPlot
import SortedTraining


struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Evaluate every exit: loss, perplexity, accuracy, agreement and KL against the deepest exit, exact match, speed.",
        discussion: """
        MODEL is a checkpoint (its run config supplies tokenizer, template, exits and the \
        validation files), an exported HF directory / HDF5 file, or a llama GGUF file. Metrics \
        are over response tokens: mean cross-entropy and its perplexity, next-token accuracy, \
        top-1 agreement with the deepest evaluated exit and mean KL(deepest ‖ exit) in nats. \
        Exact match compares each greedy answer to the instruction record's output after \
        trimming whitespace, as `sortedtrain synth` data is graded. Under mpirun the examples \
        are shared out over the ranks and the sums reduced: the same numbers as one process.
        """)

    @OptionGroup var served: ServedModelOptions

    @Option(parsing: .upToNextOption, help: "Evaluation files (default: the run config's data.validation).")
    var data: [String] = []

    @Option(help: "Comma-separated depths, ascending (default: the run's exits).")
    var exits: String?

    @Option(parsing: .unconditional, help: "Instruction records to answer per exit (0: no generation).")
    var limit: Int = 200

    @Option(parsing: .unconditional, help: "Prompts generated together.")
    var batchSize: Int = 8

    @Option(parsing: .unconditional, help: "Most tokens per answer.")
    var maxNewTokens: Int = 32


    @Option(help: "A second model evaluated on the same data and exits, shown side by side (e.g. SFT next to SoFT).")
    var compare: String?

    @Option(help: "The model's name in the report and chart (default: its path); with --compare, two comma-separated names.")
    var name: String?

    @Option(help: "Also answer with early exit by the model's calibrated probes at these agreements (comma-separated, e.g. 0.9,0.95), graded like the exits.")
    var earlyExitAgreement: String?

    @Option(help: "Write the results as JSON to this file ('-' for stdout).")
    var json: String?

    @Option(help: "Write an SVG chart: per-exit loss and exact match next to the measured generation speed.")
    var svg: String?

    func validate() throws {
        guard batchSize >= 1 else { throw CommandLineError("--batch-size must be at least 1, got \(batchSize)") }
        guard maxNewTokens >= 1 else { throw CommandLineError("--max-new-tokens must be at least 1, got \(maxNewTokens)") }
        guard limit >= 0 else { throw CommandLineError("--limit must be 0 or more, got \(limit)") }
        if let exits { _ = try parseDepths(exits, flag: "--exits") }
        if let earlyExitAgreement {
            let values = try parseNumbers(earlyExitAgreement, flag: "--early-exit-agreement")
            guard values.allSatisfy({ $0 > 0 && $0 <= 1 }), limit > 0 else {
                throw CommandLineError("--early-exit-agreement needs agreements in (0, 1] and answers to grade (--limit above 0), got '\(earlyExitAgreement)'")
            }
        }
        if let name {
            let names = name.split(separator: ",", omittingEmptySubsequences: false)
            guard names.count == (compare == nil ? 1 : 2), !names.contains(where: \.isEmpty) else {
                throw CommandLineError("--name takes \(compare == nil ? "one name" : "two names, comma-separated, for MODEL and --compare"), got '\(name)'")
            }
        }
        // Checked before the evaluation, which can take minutes, not after it.
        if let json, json != "-" { try OutputTarget.checkReport(URL(fileURLWithPath: json), kind: .json, flag: "--json") }
        if let svg { try OutputTarget.checkReport(URL(fileURLWithPath: svg), kind: .svg, flag: "--svg") }
    }

    func run() throws {
        let communicator = try communicatorFromEnvironment()
        defer { (communicator as? MPICommunicator)?.finalize() }
        let rank0 = communicator.rank == 0
        let loaded = try served.load()
        let files = data.isEmpty ? loaded.validation : data
        guard !files.isEmpty else {
            throw CommandLineError("no evaluation data: pass --data FILE (the model names no validation files)")
        }
        let depths = try exits.map { try parseDepths($0, flag: "--exits") } ?? loaded.exits
        let agreements = try earlyExitAgreement.map { try parseNumbers($0, flag: "--early-exit-agreement") } ?? []
        func evaluate(_ loaded: LoadedModel, strategies: Bool) throws -> (exits: [ExitReport], strategies: [StrategyReport]) {
            var settings = EvaluationSettings(exits: depths, answerLimit: limit, batchSize: batchSize, maxNewTokens: maxNewTokens)
            if strategies {
                settings.strategies = try agreements.map { a in
                    (String(format: "early exit by probes, agreement %.2f", a), try probedEarlyExit(loaded, agreement: a))
                }
            }
            do {
                return try Evaluator.runAll(loaded, files: files, settings: settings, communicator: communicator) { line in
                    if json != "-" { printProgress(line) }
                }
            } catch let error as EvaluationError {
                throw CommandLineError("--exits: \(error)")
            }
        }
        let names = name.map { $0.split(separator: ",", omittingEmptySubsequences: false).map(String.init) } ?? []
        let own = try evaluate(loaded, strategies: true)
        var result = EvaluationReport(model: names.first ?? loaded.description, exits: own.exits)
        if !agreements.isEmpty { result.strategies = own.strategies }
        if let compare {
            let other = try served.load(compare)
            result.compared = EvaluationReport.Compared(model: names.count > 1 ? names[1] : other.description,
                                                        exits: try evaluate(other, strategies: false).exits)
        }
        guard rank0 else { return }
        if let json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
            let data = try encoder.encode(result)
            if json == "-" { print(String(decoding: data, as: UTF8.self)) } else { try data.write(to: URL(fileURLWithPath: json)) }
        }
        if json != "-" { printTable(result) }
        if let svg { try EvalChart.svg(result).write(toFile: svg, atomically: true, encoding: .utf8) }
    }

    private func printTable(_ result: EvaluationReport) {
        func em(_ r: ExitReport) -> String { r.exactMatch.map { String(format: "%.1f%%", 100 * $0) } ?? "-" }
        func speed(_ r: ExitReport) -> String { r.generationTokensPerSecond.map { String(format: "%.0f", $0) } ?? "-" }
        func cell(_ text: String, _ width: Int) -> String { text.padding(toLength: width, withPad: " ", startingAt: 0) }
        guard let other = result.compared else {
            print(result.model)
            print("exit  loss    ppl       accuracy  agree   KL(deep‖exit)  exact match  tokens/s")
            for r in result.exits {
                print(String(format: "%-5d %-7.4f %-9.3f %-9.3f %-7.3f %-14.4f ", r.depth, r.loss, r.perplexity, r.accuracy,
                             r.agreement, r.klFromDeepest) + cell(em(r) + (r.exactMatch == nil ? "" : " of \(r.answered)"), 12) + " " + speed(r))
            }
            for s in result.strategies ?? [] {
                print(String(format: "%@: exact match %.1f%% of %d, %.2f layers per token, agreement with full depth %@, %.0f tokens/s",
                             s.strategy, 100 * s.exactMatch, s.answered, s.layersPerToken,
                             s.agreementWithFullDepth.map { String(format: "%.3f", $0) } ?? "-", s.tokensPerSecond))
            }
            return
        }
        // Two models side by side, exit by exit: A = MODEL, B = --compare.
        print("A: \(result.model)")
        print("B: \(other.model)")
        print("exit  loss A   loss B   accuracy A  accuracy B  exact match A  exact match B  tokens/s A  tokens/s B")
        for (a, b) in zip(result.exits, other.exits) {
            print(String(format: "%-5d %-8.4f %-8.4f %-11.3f %-11.3f ", a.depth, a.loss, b.loss, a.accuracy, b.accuracy)
                  + cell(em(a), 14) + " " + cell(em(b), 14) + " " + cell(speed(a), 11) + " " + speed(b))
        }
    }
}

enum EvalChart {
    static func svg(_ result: EvaluationReport) -> String {
        var runs = [(name: result.model, reports: result.exits)]
        if let other = result.compared { runs.append((other.model, other.exits)) }
        return EvaluationChart.svg(runs)
    }
}
