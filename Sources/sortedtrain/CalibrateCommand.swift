// `sortedtrain calibrate`: fits the exit probes of a SoFT model on held-out prompts and
// stores them, with the thresholds of every calibrated agreement level, beside the model.
import ArgumentParser
import Foundation
import SortedFormats
import SortedInference
import SortedKit

struct CalibrateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "calibrate",
        abstract: "Fit exit probes for early exit without a head pass, and thresholds for an agreement target.",
        discussion: """
        Generates full-depth greedy answers to the prompts of --data, then records at every \
        trained exit below the last whether its top-1 token equals the last layer's, and fits \
        one logistic probe per exit on the exit's hidden state (CALM's learned classifier). \
        A quarter of the prompts is held out; the rest fit the probes and, cross-fitted in four \
        folds (each token scored by a probe that did not see its prompt), the per-exit \
        thresholds of each level (a token risk). Each level is measured by generating with \
        it: its agreement with full-depth greedy answers and layers per token, on a quarter \
        of the fit prompts and on the held-out ones; generate --early-exit-agreement A takes the cheapest \
        level that reaches A on both. The probes go to exit-probes.json in a checkpoint or HF folder, or to \
        FILE.exit-probes.json beside a GGUF or HDF5 file; generate, bench generate and inspect \
        read them from there.
        """)

    @OptionGroup var served: ServedModelOptions

    @Option(help: "Held-out instruction records (JSONL with \"instruction\" [and \"input\"], or \"prompt\"), not the training data.")
    var data: String

    @Option(help: "Depths to probe, comma-separated (default: the model's trained exits below its last layer).")
    var exits: String?

    @Option(parsing: .unconditional, help: "Prompts used, the first N of --data (at least 8).")
    var prompts: Int = 128

    @Option(parsing: .unconditional, help: "Tokens per full-depth answer.")
    var maxNewTokens: Int = 32

    @Option(parsing: .unconditional, help: "Tokens in the draft shortlist (the most frequent answer tokens, FR-Spec).")
    var shortlist: Int = 4096

    @Option(help: "Records whose answers (\"output\", or chat \"messages\" of the assistant) count for the shortlist, e.g. the training data (default: --data).")
    var shortlistData: String?

    @Option(help: "Where to write the probes (default: beside the model, where the other commands look).")
    var output: String?

    @Flag(help: "Print the probes file's levels and summary as JSON on stdout.")
    var json = false

    func validate() throws {
        guard prompts >= 8 else { throw CommandLineError("--prompts must be at least 8 (three quarters fit, a quarter is held out), got \(prompts)") }
        guard (1...4096).contains(maxNewTokens) else { throw CommandLineError("--max-new-tokens must be in 1...4096, got \(maxNewTokens)") }
        if let exits { _ = try parseDepths(exits, flag: "--exits") }
        guard shortlist >= 1 else { throw CommandLineError("--shortlist must be at least 1, got \(shortlist)") }
    }

    func run() throws {
        let loaded = try served.load(readProbes: false)   // the probes it replaces may be damaged or stale
        let target = try output.map { URL(fileURLWithPath: $0) } ?? loaded.probesLocation.orThrow(
            CommandLineError("\(served.model): no place beside the model for its probes; pass --output FILE"))
        let records = try readPromptsFile(data, flag: "--data").prefix(prompts)
        guard records.count >= 8 else {
            throw CommandLineError("--data \(data): \(records.count) prompts, calibration needs at least 8")
        }
        let ids = try records.map { try loaded.prompt(instruction: $0.instruction, input: $0.input) }
        var settings = CalibrationSettings()
        settings.maxNewTokens = maxNewTokens
        settings.shortlistSize = shortlist
        settings.shortlistCorpus = try answerTexts(shortlistData ?? data, flag: shortlistData == nil ? "--data" : "--shortlist-data")
            .map { loaded.tokenizer.encode($0, addSpecialTokens: false) }
        let probes: ExitProbes
        do {
            let depths = try exits.map { try parseDepths($0, flag: "--exits") }
            if let bad = depths?.first(where: { $0 > loaded.model.config.numHiddenLayers }) {
                throw CommandLineError("--exits: \(bad) is outside 1...\(loaded.model.config.numHiddenLayers)")
            }
            probes = try ExitCalibration.run(loaded, prompts: ids, data: data, exits: depths, settings: settings) { printProgress($0) }
        } catch let error as CalibrationError {
            throw CommandLineError("\(served.model): \(error)")
        }
        try probes.write(to: target)
        if json {
            try printJSON(probes.report)
            return
        }
        let c = probes.calibration
        print("\(target.path): \(probes.probes.count) probes, fitted on \(c.fitTokens) tokens of \(c.fitPrompts) prompts in \(String(format: "%.0f", c.seconds)) s")
        print("exit  agrees with the last layer")
        for p in probes.probes { print(String(format: "%-5d %.3f", p.depth, p.agreement)) }
        print("token risk  agreement  layers/token  held-out agreement  held-out layers/token")
        for l in probes.levels {
            print(String(format: "%-11.3f %-10.3f %-13.2f %-19.3f %.2f", l.tokenRisk, l.agreement, l.layersPerToken,
                         l.heldOutAgreement, l.heldOutLayersPerToken))
        }
    }
}

/// The answers in a JSONL file: each record's "output", or its assistant messages.
func answerTexts(_ file: String, flag: String) throws -> [String] {
    guard let data = FileManager.default.contents(atPath: file) else { throw CommandLineError("\(flag) \(file): cannot be read") }
    var answers: [String] = []
    for (n, line) in String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
        guard !line.trimmingCharacters(in: .whitespaces).isEmpty else { continue }
        guard let object = (try? JSONParser.parse(String(line)))?.object else {
            throw CommandLineError("\(file):\(n + 1): not a JSON object")
        }
        if let output = object["output"]?.string { answers.append(output) }
        for message in object["messages"]?.array ?? [] where message["role"]?.string == "assistant" {
            if let content = message["content"]?.string { answers.append(content) }
        }
    }
    return answers
}

extension Optional {
    func orThrow(_ error: @autoclosure () -> Error) throws -> Wrapped {
        guard let value = self else { throw error() }
        return value
    }
}
