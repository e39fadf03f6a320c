// `sortedtrain eval`: per-exit held-out loss, exact-match accuracy and generation speed.
import ArgumentParser
import Foundation
import SortedTraining

/// `eval --json` output.
struct EvalResult: Encodable {
    let model: String
    let exits: [ExitReport]
}

struct EvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "eval",
        abstract: "Evaluate every exit: held-out loss and perplexity, exact-match accuracy of greedy answers, generation speed.",
        discussion: """
        MODEL is a checkpoint (its run config supplies tokenizer, template, exits and the
        validation files) or an exported HF directory / HDF5 file (then give --tokenizer,
        --template and --data). Exact match compares the greedy answer to each instruction
        record's output after trimming whitespace, as `sortedtrain synth` data is graded.
        """)

    @Argument(help: "A checkpoint folder or checkpoints folder, an HF directory, or an HDF5 model file.")
    var model: String

    @Option(parsing: .upToNextOption, help: "Evaluation files (default: the run config's data.validation).")
    var data: [String] = []

    @Option(help: "Comma-separated depths (default: the run's exits).")
    var exits: String?

    @Option(help: "Instruction records to answer per exit (0: loss only).")
    var limit: Int = 200

    @Option(help: "Sequences per batch.")
    var batchSize: Int = 16

    @Option(help: "Most tokens per answer.")
    var maxNewTokens: Int = 32

    @Option(help: "Tokenizer override: tokenizer.json, model folder, .gguf or byte.")
    var tokenizer: String?

    @Option(help: "Template override: alpaca, chatml or none.")
    var template: String?

    @Flag(help: "Print one JSON object.")
    var json = false

    func validate() throws {
        guard batchSize >= 1, limit >= 0, maxNewTokens >= 1 else {
            throw ValidationError("--batch-size and --max-new-tokens must be positive, --limit non-negative")
        }
    }

    func run() throws {
        let loaded = try ModelSource.load(model, tokenizer: tokenizer, template: template)
        let files = data.isEmpty ? loaded.validation : data
        guard !files.isEmpty else {
            throw ValidationError("no evaluation data: pass --data FILE (the run config names no data.validation)")
        }
        var depths = loaded.exits
        if let exits {
            depths = try exits.split(separator: ",").map {
                guard let d = Int($0.trimmingCharacters(in: .whitespaces)) else { throw ValidationError("--exits: '\($0)' is not a depth") }
                return d
            }
        }
        let reports = try Evaluator.run(loaded, files: files, exits: depths, limit: limit, batchSize: batchSize,
                                        maxNewTokens: maxNewTokens) { line in
            if !json { printProgress(line) }
        }
        if json {
            try printJSON(EvalResult(model: loaded.description, exits: reports))
            return
        }
        print(loaded.description)
        print("exit   loss     perplexity   exact match        generated tokens/s")
        for r in reports {
            let em = r.exact_match.map { String(format: "%5.1f%% of %d", 100 * $0, r.answered) } ?? "-"
            let speed = r.generation_tokens_per_s.map { String(format: "%.0f", $0) } ?? "-"
            print(String(format: "%-6d %-8.4f %-12.3f ", r.depth, r.loss, r.perplexity) + em.padding(toLength: 18, withPad: " ", startingAt: 0) + " " + speed)
        }
    }
}
