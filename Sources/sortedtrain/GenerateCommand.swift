// `sortedtrain generate`: answer prompts with any depth of a SoFT model — a fixed depth, a
// depth chosen per token by confidence (early exit), or self-speculative decoding with a
// shallow exit as the draft.
import ArgumentParser
import Foundation
import SortedData
import SortedInference
import SortedKit
import SortedTraining

struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Generate with the exit-k sub-model, with confidence-based early exit, or self-speculatively.",
        discussion: """
        MODEL is a checkpoint (or checkpoints folder), an exported HF directory or HDF5 \
        file, or a llama GGUF file. The prompt is wrapped in the model's template (the \
        run's; else the model's own chat template when its tokenizer comes with one, \
        else none; --raw for none) and \
        generation stops at EOS or the template's end-of-turn token.

        Depth, one of:
          --depth k              every token through the first k layers
          --early-exit T[,T…]    each token stops at the first exit whose confidence
                                 (--confidence probability or margin) reaches its
                                 threshold: one for all exits, or one per exit below
                                 the last, e.g. 0.95,0.95,0.9,0.9,0.8,0.8,0.7 (paper)
          --early-exit-agreement A
                                 each token stops at the first exit whose learned
                                 probe (sortedtrain calibrate) says it agrees with the
                                 last layer, at the calibrated level whose agreement
                                 with full-depth greedy answers is at least A; the
                                 head runs once per token
          --draft-depth k|auto   self-speculative: exit k drafts --speculate N tokens,
                                 the full model verifies them in one pass; greedy
                                 output equals full-depth greedy. --speculate auto
                                 drafts up to --max-draft tokens while the draft's
                                 probe (a calibrated model), else its top probability,
                                 stays at or above --draft-confidence. auto picks the
                                 exit and N from the probes' measured agreement and
                                 the bytes each exit reads. --draft-vocabulary
                                 shortlist scores only the calibrated shortlist of
                                 frequent tokens in the draft.

        Early exit and speculation answer one prompt at a time; a fixed depth batches \
        --prompts-file prompts --batch-size at a time.
        """)

    @OptionGroup var served: ServedModelOptions
    @OptionGroup var window: ContextOptions

    @Option(help: "The instruction (wrapped in the model's template unless --raw).")
    var prompt: String?

    @Option(help: "Input for the instruction (Alpaca's 'input' field).")
    var input: String = ""

    @Option(help: "JSONL of prompts ({\"instruction\": …, \"input\": …} or {\"prompt\": …}); answers as JSONL on stdout.")
    var promptsFile: String?

    @Option(parsing: .unconditional, help: "Depth k (default: the deepest layer).")
    var depth: Int?

    @Option(help: "Early-exit confidence thresholds: one, or one per exit below the last.")
    var earlyExit: String?

    @Option(parsing: .unconditional, help: "Early exit by the model's calibrated exit probes, at this agreement with full-depth greedy (e.g. 0.95).")
    var earlyExitAgreement: Double?

    @Option(help: "Confidence for --early-exit: probability (top softmax probability) or margin (top-1 minus top-2).")
    var confidence: ConfidenceMeasure = .probability

    @Option(help: "Exits for --early-exit, comma-separated (default: the model's trained exits).")
    var exits: String?

    @Option(help: "Self-speculative decoding: the exit that drafts, or auto (a calibrated model's best by agreement and cost).")
    var draftDepth: DraftExit?

    @Option(help: "Tokens the draft scores: full (the vocabulary) or shortlist (the calibrated frequent tokens).")
    var draftVocabulary: DraftVocabularyChoice = .full

    @Option(help: "Tokens drafted per verification (1...64), or auto.")
    var speculate: DraftLength = .tokens(4)

    @Option(parsing: .unconditional, help: "With --speculate auto: the most tokens drafted per verification.")
    var maxDraft: Int = 8

    @Option(parsing: .unconditional, help: "With --speculate auto: stop drafting below this top probability.")
    var draftConfidence: Double = 0.6

    @Option(parsing: .unconditional, help: "Most new tokens.")
    var maxNewTokens: Int = 64

    @Option(parsing: .unconditional, help: "Sampling temperature (0: greedy).")
    var temperature: Double = 0

    @Option(parsing: .unconditional, help: "Sample among the k most likely tokens (0: all).")
    var topK: Int = 0

    @Option(parsing: .unconditional, help: "Sample from the smallest set of tokens whose probability reaches p (1: all).")
    var topP: Double = 1

    @Option(parsing: .unconditional, help: "Seed for sampling.")
    var seed: UInt64 = 0

    @Option(parsing: .unconditional, help: "Prompts decoded together at a fixed depth (--prompts-file).")
    var batchSize: Int = 8

    @Flag(help: "Use the prompt text as is, without the template.")
    var raw = false

    @Flag(help: "Print the run's statistics (tokens/s, layers per token, exits, acceptance) to stderr; with --early-exit or --draft-depth also the agreement with full-depth greedy decoding.")
    var stats = false


    func validate() throws {
        guard (prompt == nil) != (promptsFile == nil) else { throw CommandLineError("give --prompt or --prompts-file (one of them)") }
        guard maxNewTokens >= 1 else { throw CommandLineError("--max-new-tokens must be at least 1, got \(maxNewTokens)") }
        guard batchSize >= 1 else { throw CommandLineError("--batch-size must be at least 1, got \(batchSize)") }
        if let problem = SamplingSettings(temperature: temperature, topK: topK, topP: topP).problem {
            throw CommandLineError("sampling: \(problem)")
        }
        let modes = [depth != nil, earlyExit != nil, earlyExitAgreement != nil, draftDepth != nil].filter { $0 }.count
        guard modes <= 1 else { throw CommandLineError("--depth, --early-exit, --early-exit-agreement and --draft-depth exclude each other: pick one") }
        if let a = earlyExitAgreement, !(a > 0 && a <= 1) {
            throw CommandLineError("--early-exit-agreement must be in (0, 1], got \(a)")
        }
        guard (1...64).contains(maxDraft) else { throw CommandLineError("--max-draft must be in 1...64, got \(maxDraft)") }
        guard draftConfidence.isFinite && draftConfidence >= 0 && draftConfidence <= 1 else {
            throw CommandLineError("--draft-confidence must be in [0, 1]")
        }
    }

    func run() throws {
        let loaded = try served.load(template: raw ? "none" : nil)
        let L = loaded.model.config.numHiddenLayers
        let strategy = try earlyExitAgreement.map { try probedEarlyExit(loaded, agreement: $0) }
            ?? draftDepth.map { try speculation(loaded, draftDepth: $0, speculate: speculate, maxDraft: maxDraft,
                                                draftConfidence: draftConfidence, vocabulary: draftVocabulary) }
            ?? self.strategy(layers: L, trainedExits: loaded.exits)
        let read = try readPrompts(loaded)
        let tokens = try window.window(loaded)
        let fitted = try window.fit(read.map(\.ids), window: tokens, positions: loaded.model.config.maxPositionEmbeddings) { i in
            promptsFile == nil ? "the prompt" : "prompt \(i + 1) of \(promptsFile!)"
        }
        let prompts = zip(read, fitted).map { (text: $0.text, ids: $1) }
        // The cache holds what an answer can use: the longest prompt and its new tokens.
        let longest = prompts.map(\.ids.count).max() ?? 1
        let capacity = min(tokens, longest + min(maxNewTokens, tokens))
        let sampling = SamplingSettings(temperature: temperature, topK: topK, topP: topP, seed: seed)
        var generator: TextGenerator! = try TextGenerator(model: loaded.model, strategy: strategy, sampling: sampling,
                                          stop: loaded.stopTokens, batchSize: min(batchSize, prompts.count), capacity: capacity)
        let start = ContinuousClock.now
        let outputs: [[Int32]]
        if promptsFile == nil {
            // One prompt, streamed: print each stable piece of the decoded text as it grows.
            var ids: [Int32] = [], printed = ""
            outputs = generator.generate([prompts[0].ids], maxNewTokens: maxNewTokens) { _, token in
                ids.append(token)
                let text = loaded.tokenizer.decode(ids, skipSpecialTokens: true)
                guard !text.hasSuffix("\u{FFFD}"), text.hasPrefix(printed) else { return }
                FileHandle.standardOutput.write(Data(text.dropFirst(printed.count).utf8))
                printed = text
            }
            let text = loaded.tokenizer.decode(outputs[0], skipSpecialTokens: true)
            let rest = text.hasPrefix(printed) ? String(text.dropFirst(printed.count)) : ""
            FileHandle.standardOutput.write(Data((rest + "\n").utf8))
        } else {
            outputs = generator.generate(prompts.map(\.ids), maxNewTokens: maxNewTokens)
            for (i, (prompt, output)) in zip(prompts, outputs).enumerated() {
                try printJSON(GeneratedAnswer(index: i, prompt: prompt.text, output: loaded.tokenizer.decode(output, skipSpecialTokens: true),
                                              tokens: output.count))
            }
        }
        let seconds = (ContinuousClock.now - start).seconds
        let runStats = generator.stats
        generator = nil   // its cache is freed before --stats builds the full-depth reference
        if stats { try report(runStats, seconds: seconds, outputs: outputs, prompts: prompts.map(\.ids), loaded: loaded, capacity: capacity) }
    }

    private func strategy(layers L: Int, trainedExits: [Int]) throws -> DecodingStrategy {
        if let thresholds = earlyExit {
            let values = try parseNumbers(thresholds, flag: "--early-exit")
            let exitList = try exits.map { try parseDepths($0, flag: "--exits") } ?? trainedExits
            guard exitList.contains(where: { $0 < L }) else {
                throw CommandLineError("--early-exit needs exits below layer \(L); the model names \(exitList) (give --exits)")
            }
            return .earlyExit(exits: exitList.last == L ? exitList : exitList + [L], decision: .confidence(thresholds: values, measure: confidence))
        }
        return .fixed(depth: depth ?? L)
    }

    private func readPrompts(_ loaded: LoadedModel) throws -> [(text: String, ids: [Int32])] {
        func encode(_ instruction: String, _ input: String) throws -> [Int32] {
            raw ? loaded.tokenizer.encode(instruction + (input.isEmpty ? "" : "\n\n" + input), addSpecialTokens: true)
                : try loaded.prompt(instruction: instruction, input: input)
        }
        guard let file = promptsFile else { return [(prompt!, try encode(prompt!, input))] }
        return try readPromptsFile(file).map { ($0.instruction, try encode($0.instruction, $0.input)) }
    }

    /// Statistics on stderr; for early exit and speculation also the agreement with full-depth greedy.
    private func report(_ s: GenerationStats, seconds: Double, outputs: [[Int32]], prompts: [[Int32]],
                        loaded: LoadedModel, capacity: Int) throws {
        let histogram = s.exitHistogram.sorted { Int($0.key)! < Int($1.key)! }.map { "\($0.key):\($0.value)" }.joined(separator: " ")
        var line = String(format: "%d tokens in %.2f s (%.1f tokens/s decode, %.0f tokens/s prefill), %.2f layers per token, exits {%@}",
                          s.generatedTokens, seconds, s.decodeTokensPerSecond, s.prefillTokensPerSecond, s.meanLayersPerToken, histogram)
        if s.verifications > 0 {
            line += String(format: ", %d/%d drafts accepted (%.0f%%) in %d verifications", s.accepted, s.drafted,
                           100 * (s.acceptanceRate ?? 0), s.verifications)
        }
        printProgress(line)
        guard earlyExit != nil || earlyExitAgreement != nil || draftDepth != nil, temperature == 0 else { return }
        let full = try TextGenerator(model: loaded.model, strategy: .fixed(depth: loaded.model.config.numHiddenLayers),
                                     stop: loaded.stopTokens, batchSize: min(batchSize, prompts.count), capacity: capacity)
        let reference = full.generate(prompts, maxNewTokens: maxNewTokens)
        let (same, total) = tokenAgreement(outputs, reference)
        printProgress(String(format: "agreement with full-depth greedy: %d of %d tokens (%.1f%%), identical outputs %d of %d; full depth %.1f tokens/s",
                             same, total, 100 * Double(same) / Double(max(total, 1)),
                             zip(outputs, reference).filter { $0 == $1 }.count, outputs.count, full.stats.decodeTokensPerSecond))
    }
}

/// One answer of `generate --prompts-file`, a JSON line.
struct GeneratedAnswer: Encodable {
    let index: Int
    let prompt: String
    let output: String
    let tokens: Int
}
