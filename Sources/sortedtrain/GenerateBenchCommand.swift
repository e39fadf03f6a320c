// `sortedtrain bench generate`: prefill and decode speed at every exit, early exit and
// self-speculative decoding next to full-depth greedy, and decode against the memory
// bandwidth limit, all measured in one run.
import ArgumentParser
import Foundation
import SortedInference
import SortedKit
import SortedTraining

struct GenerateBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Generation speed per exit, early exit and self-speculative decoding, and decode against the bandwidth limit.",
        discussion: """
        Every figure is measured in this run: tokens/s of a --prompt-tokens prefill and of \
        --new-tokens greedy decode tokens at each exit (batch 1 and --batch-size), then early \
        exit and self-speculative decoding on the same prompts one at a time, with their \
        agreement with full-depth greedy output. The full-depth batch-1 rate is compared with \
        its limit: the bytes of weights and KV cache read per token over the read bandwidth \
        measured here. In the per-depth figures no stop token ends an answer, so every run \
        decodes the same count; the early-exit and self-speculative rows answer as generate \
        does, up to the model's end token. Memory: the peak resident set through loading, a \
        prefill and a batch-1 decode, beside the weights as held and that sequence's KV cache. \
        --llama-bench runs llama.cpp's llama-bench on the same GGUF file (same threads, \
        lengths and repeats) and gives sortedtrain's full-depth rates over it.
        """)

    @OptionGroup var served: ServedModelOptions
    @OptionGroup var window: ContextOptions

    @Option(help: "Exits to measure, comma-separated (default: the model's trained exits, or L/4, L/2, 3L/4, L).")
    var exits: String?

    @Option(parsing: .unconditional, help: "Tokens of the prefill prompt.")
    var promptTokens: Int = 128

    @Option(parsing: .unconditional, help: "Tokens decoded per answer.")
    var newTokens: Int = 64

    @Option(parsing: .unconditional, help: "Prompts decoded together in the batched measurement.")
    var batchSize: Int = 8

    @Option(parsing: .unconditional, help: "Prompts full depth, early exit and self-speculative decoding each answer, one at a time: the first N, each once (default: --batch-size, or every prompt when fewer).")
    var answers: Int?

    @Option(help: "Early-exit thresholds: one, or one per exit below the last.")
    var earlyExit: String = "0.9"

    @Option(help: "Confidence for --early-exit: probability (top softmax probability) or margin (top-1 minus top-2).")
    var confidence: ConfidenceMeasure = .probability

    @Option(help: "Early exit by the model's calibrated probes (sortedtrain calibrate) at these agreements with full-depth greedy, comma-separated (e.g. 0.9,0.95).")
    var earlyExitAgreement: String?

    @Option(help: "The exits that draft for self-speculative decoding, comma-separated, each a depth or auto (a calibrated model's plan; default: the shallowest measured exit).")
    var draftDepth: String?

    @Option(help: "Tokens drafted per verification, or auto (up to --max-draft while the draft's probe, else its top probability, reaches --draft-confidence).")
    var speculate: DraftLength = .tokens(4)

    @Option(parsing: .unconditional, help: "With --speculate auto: the most tokens drafted per verification.")
    var maxDraft: Int = 8

    @Option(parsing: .unconditional, help: "With --speculate auto: stop drafting below this probe score or top probability.")
    var draftConfidence: Double = 0.6

    @Option(help: "Draft vocabularies to measure, comma-separated: full, shortlist (the calibrated frequent tokens).")
    var draftVocabulary: String = "full"

    @Option(parsing: .unconditional, help: "Measurements per figure; the best is kept.")
    var repeats: Int = 2

    @Option(help: "JSONL of prompts to decode ({\"instruction\": …, \"input\": …} or {\"prompt\": …}), e.g. the task the model was tuned on; default: eight built-in instructions.")
    var promptsFile: String?

    @Option(help: ArgumentHelp("llama.cpp's llama-bench, run on the same GGUF file for a same-run comparison.", valueName: "path"))
    var llamaBench: String?

    @Flag(help: "Print one JSON object.")
    var json = false


    static let prompts = [
        "Write a short story about a robot who learns to paint.",
        "Explain why the sky is blue to a ten-year-old.",
        "List five ideas for a weekend trip in the mountains.",
        "What are the main differences between a list and a tuple in Python?",
        "Summarise the plot of a famous novel in three sentences.",
        "Give me a recipe for a simple vegetable soup.",
        "How do I stay focused while studying for exams?",
        "Describe the water cycle step by step.",
    ]

    func validate() throws {
        guard promptTokens >= 1, newTokens >= 1, batchSize >= 1, repeats >= 1, (answers ?? 1) >= 1 else {
            throw CommandLineError("--prompt-tokens, --new-tokens, --batch-size, --answers and --repeats must be positive")
        }
        if llamaBench != nil && !served.model.lowercased().hasSuffix(".gguf") {
            throw CommandLineError("--llama-bench needs a .gguf model (llama.cpp reads only GGUF), got \(served.model)")
        }
        guard (1...64).contains(maxDraft) else { throw CommandLineError("--max-draft must be in 1...64, got \(maxDraft)") }
        if let draftDepth { _ = try parseDraftExits(draftDepth, flag: "--draft-depth") }
        for v in draftVocabulary.split(separator: ",") where DraftVocabularyChoice(rawValue: String(v)) == nil {
            throw CommandLineError("--draft-vocabulary: '\(v)' is not full or shortlist")
        }
    }

    func run() throws {
        let loaded = try served.load()
        let L = loaded.model.config.numHiddenLayers
        var depths = loaded.exits.count > 1 ? loaded.exits : Array(Set([max(1, L / 4), max(1, L / 2), max(1, 3 * L / 4), L])).sorted()
        if let exits {
            depths = try parseDepths(exits, flag: "--exits")
            if let bad = depths.first(where: { $0 > L }) { throw CommandLineError("--exits: \(bad) is outside 1...\(L)") }
        }
        let thresholds = try parseNumbers(earlyExit, flag: "--early-exit")
        // No draft without an exit below the last layer (unless one is named).
        let drafts = try draftDepth.map { try parseDraftExits($0, flag: "--draft-depth") } ?? depths.first { $0 < L }.map { [.depth($0)] } ?? []
        for case .depth(let d) in drafts where !(1..<L).contains(d) {
            throw CommandLineError("--draft-depth \(d) is outside 1...\(L - 1)")
        }
        let prompts = try promptsFile.map { try readPromptsFile($0) } ?? Self.prompts.map { ($0, "") }
        let ids = try window.fit(try prompts.map { try loaded.prompt(instruction: $0.instruction, input: $0.input) },
                                 window: try window.window(loaded), positions: loaded.model.config.maxPositionEmbeddings) { "prompt \($0 + 1)\(promptsFile.map { " of \($0)" } ?? "")" }
        var settings = GenerationBenchmarkSettings(exits: depths)
        settings.window = try window.window(loaded)
        settings.promptTokens = promptTokens
        settings.newTokens = newTokens
        settings.batchSize = batchSize
        settings.answers = answers
        settings.earlyExitThresholds = thresholds
        settings.confidence = confidence
        if let earlyExitAgreement {
            settings.probeAgreements = try parseNumbers(earlyExitAgreement, flag: "--early-exit-agreement")
            guard settings.probeAgreements.allSatisfy({ $0 > 0 && $0 <= 1 }) else {
                throw CommandLineError("--early-exit-agreement: each agreement must be in (0, 1], got \(earlyExitAgreement)")
            }
            guard loaded.probes != nil else {
                throw CommandLineError("--early-exit-agreement: \(loaded.description) has no exit probes; fit them with `sortedtrain calibrate MODEL --data HELD_OUT.jsonl`")
            }
        }
        for draft in drafts {
        for vocabulary in draftVocabulary.split(separator: ",").compactMap({ DraftVocabularyChoice(rawValue: String($0)) }) {
            let strategy = try speculation(loaded, draftDepth: draft, speculate: speculate, maxDraft: maxDraft,
                                           draftConfidence: draftConfidence, vocabulary: vocabulary)
            guard case .selfSpeculative(let depth, let lookahead, _) = strategy else { continue }
            let length: String
            switch lookahead {
            case .fixed(let n): length = "\(n) token\(n == 1 ? "" : "s")"
            case .adaptive(let n, let t): length = "≤\(n) tokens while p ≥ \(t)"
            case .probed(let n, _, let t): length = "≤\(n) tokens while probe ≥ \(t)"
            }
            settings.speculations.append(("self-speculative draft \(depth)\(draft == .auto ? " (auto)" : ""), \(length)\(vocabulary == .shortlist ? ", shortlist" : "")", strategy))
        }
        }
        settings.repeats = repeats
        var result = try GenerationBenchmark.run(loaded, prompts: ids, settings: settings) { printProgress($0) }
        if let llamaBench {
            switch LlamaCppReference.measure(tool: llamaBench, model: served.model, result: result, repeats: repeats, progress: printProgress) {
            case .success(let rates): result.llamaCpp = rates
            case .failure(let why): result.llamaCppSkipped = why.description
            }
        }
        if json {
            try printJSON(result)
            return
        }
        print("\(result.model): weights \(result.weightFormat)\(result.weightFormat == "f32" ? "" : " (\(result.quantKernel) kernels)"), OpenBLAS \(result.openblasCore), \(result.threads) threads, read bandwidth \(String(format: "%.1f", result.readBandwidthGBPerSecond)) GB/s")
        print("depth  prefill tok/s  decode tok/s (b=1)  decode tok/s (b=\(batchSize))  × full  of bandwidth limit")
        for d in result.depths {
            print(String(format: "%-6d %-14.0f %-19.1f %-19.1f %-7.2f %.2f", d.depth, d.prefillTokensPerSecond, d.decodeTokensPerSecondBatch1,
                         d.decodeTokensPerSecondBatched, d.speedupOverFullDepth, d.fractionOfBandwidthLimit))
        }
        let mib = { (bytes: Int) in Double(bytes) / 1048576 }
        print(String(format: "memory: peak RSS %@ (load, prefill, batch-1 decode); weights %.0f MiB, KV cache %.1f MiB%@", result.peakRSSBatch1MiB.map { String(format: "%.0f MiB", $0) } ?? "unknown",
                     mib(result.weightBytes), mib(result.kvCacheBytesBatch1),
                     result.modelFileBytes.map { String(format: ", file %.0f MiB", mib($0)) } ?? ""))
        if let l = result.llamaCpp {
            print(String(format: "llama.cpp %@ on the same file: prefill %.0f tok/s, decode %.1f tok/s; sortedtrain at full depth: %.2f× its prefill, %.2f× its decode",
                         l.build, l.prefillTokensPerSecond, l.decodeTokensPerSecond, l.prefillRatio, l.decodeRatio))
        } else if let why = result.llamaCppSkipped {
            print("llama.cpp comparison skipped: \(why)")
        }
        let width = max(41, result.strategies.map(\.strategy.count).max() ?? 0)
        print("strategies on \(result.answeredPrompts) prompts answered one at a time (\(result.answeredTokens) full-depth answer tokens):")
        print("strategy".padding(toLength: width, withPad: " ", startingAt: 0)
              + " tok/s   × full  layers/token  bytes × full  agreement  identical  acceptance")
        for s in result.strategies {
            print(s.strategy.padding(toLength: width, withPad: " ", startingAt: 0)
                  + String(format: " %-7.1f %-7.2f %-13.2f %-13.2f %-10.3f %-10@ %@", s.tokensPerSecond, s.speedupOverFullDepth, s.meanLayersPerToken,
                           s.bytesOverFullDepth, s.agreementWithFullDepth, s.identicalToFullDepth ? "yes" : "no",
                           s.acceptanceRate.map { String(format: "%.2f", $0) } ?? "-"))
        }
    }
}
