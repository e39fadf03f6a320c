// DecodingOptions: the typed values of the decoding options that generate, eval and bench
// generate share — a draft exit (a depth or auto), a draft length (tokens or auto), the
// confidence measure, the draft vocabulary — parsed once by ArgumentParser, and the
// strategies they build from a loaded model (probed early exit, self-speculation).
import ArgumentParser
import SortedInference
import SortedKit

/// The exit that drafts for self-speculation: a depth, or auto (planned from the probes).
enum DraftExit: ExpressibleByArgument, Equatable, CustomStringConvertible {
    case depth(Int)
    case auto

    init?(argument: String) {
        if argument == "auto" { self = .auto } else if let k = Int(argument), k >= 1 { self = .depth(k) } else { return nil }
    }
    var description: String { if case .depth(let k) = self { return String(k) } else { return "auto" } }
    static var defaultCompletionKind: CompletionKind { .list(["auto"]) }
}

/// Tokens drafted per verification: a count in 1...64, or auto (drafting stops when the
/// draft's confidence drops).
enum DraftLength: ExpressibleByArgument, Equatable, CustomStringConvertible {
    case tokens(Int)
    case auto

    init?(argument: String) {
        if argument == "auto" { self = .auto } else if let n = Int(argument), (1...64).contains(n) { self = .tokens(n) } else { return nil }
    }
    var description: String { if case .tokens(let n) = self { return String(n) } else { return "auto" } }
    var count: Int? { if case .tokens(let n) = self { return n } else { return nil } }
}

extension ConfidenceMeasure: ExpressibleByArgument {}

/// A comma-separated list of draft exits (bench generate's --draft-depth).
func parseDraftExits(_ text: String, flag: String) throws -> [DraftExit] {
    try text.split(separator: ",").map {
        guard let exit = DraftExit(argument: String($0)) else { throw CommandLineError("\(flag) must list exit depths or auto, got '\($0)'") }
        return exit
    }
}

/// Early exit by `loaded`'s calibrated probes at the level that reaches `agreement`; full
/// depth, with a warning, when no calibrated level does.
func probedEarlyExit(_ loaded: LoadedModel, agreement: Double) throws -> DecodingStrategy {
    let L = loaded.model.config.numHiddenLayers
    guard let probes = loaded.probes else {
        if let problem = loaded.probesProblem { throw CommandLineError("--early-exit-agreement: \(problem)") }
        throw CommandLineError("--early-exit-agreement: \(loaded.description) has no exit probes (\(loaded.probesLocation?.path ?? "none")); fit them with `sortedtrain calibrate MODEL --data HELD_OUT.jsonl`")
    }
    guard let level = probes.level(forAgreement: agreement) else {
        let best = probes.levels.map(\.agreement).max() ?? 0
        printProgress(String(format: "Warning: no calibrated level reaches agreement %.3f (the best reached %.3f): every token runs all %d layers", agreement, best, L))
        return .fixed(depth: L)
    }
    return .earlyExit(exits: probes.exits + [L], decision: .probe(probes, thresholds: level.thresholds))
}

enum DraftVocabularyChoice: String, ExpressibleByArgument, CaseIterable {
    case full, shortlist
}

/// Self-speculation as the options ask: a draft exit (or auto: the calibrated plan), a fixed
/// or adaptive draft length (by the draft exit's probe when there is one), and the draft's
/// vocabulary.
func speculation(_ loaded: LoadedModel, draftDepth: DraftExit, speculate: DraftLength, maxDraft: Int, draftConfidence: Double,
                 vocabulary: DraftVocabularyChoice) throws -> DecodingStrategy {
    let draftVocabulary: DecodingStrategy.DraftVocabulary
    switch vocabulary {
    case .full: draftVocabulary = .full
    case .shortlist:
        guard let shortlist = loaded.probes?.shortlist, !shortlist.isEmpty else {
            throw CommandLineError("--draft-vocabulary shortlist: \(loaded.description) has no calibrated shortlist; run `sortedtrain calibrate MODEL --data HELD_OUT.jsonl`")
        }
        draftVocabulary = .shortlist(shortlist)
    }
    var depth: Int, count = speculate.count
    switch draftDepth {
    case .auto:
        guard let probes = loaded.probes,
              let plan = DraftPlanner.plan(probes: probes, weights: loaded.model,
                                           shortlist: vocabulary == .shortlist ? probes.shortlist.count : nil,
                                           maxDraft: count ?? maxDraft) else {
            throw CommandLineError("--draft-depth auto: \(loaded.description) has no exit probes to plan from; run `sortedtrain calibrate MODEL --data HELD_OUT.jsonl` or name a depth")
        }
        printProgress(String(format: "--draft-depth auto: exit %d drafting %d tokens (agreement %.3f, expected %.2f× full depth by bytes read)",
                             plan.depth, plan.speculate, plan.agreement, plan.expectedSpeedup))
        depth = plan.depth
        if count != nil { count = plan.speculate }
    case .depth(let k):
        depth = k
    }
    let lookahead: DecodingStrategy.Lookahead
    if let count {
        lookahead = .fixed(count)
    } else if let probes = loaded.probes, probes.exits.contains(depth) {
        lookahead = .probed(maximum: maxDraft, probes: probes, threshold: draftConfidence)
    } else {
        lookahead = .adaptive(maximum: maxDraft, threshold: draftConfidence)
    }
    return .selfSpeculative(draftDepth: depth, lookahead: lookahead, vocabulary: draftVocabulary)
}
