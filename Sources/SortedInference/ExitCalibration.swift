// ExitCalibration: what `sortedtrain calibrate` does. Every fourth prompt from the fourth is
// held out; the others fit the probes. Full-depth greedy answers are generated for all of
// them; each answer is then run once more, teacher-forced, through every exit, recording each
// exit's probe features and whether its top-1 token equals the last layer's. The fit prompts
// are cross-fitted in four folds: each token is scored by a probe fitted on the other folds,
// which chooses the ridge (the least out-of-fold log-loss) and, for each token risk of a grid,
// every exit's threshold (the lowest whose exiting tokens disagree with the last layer at most
// that often). The stored probe is then fitted on all the fit prompts. Each level is measured
// by generating with it, on a quarter of the fit prompts (with the held-out ones, what chooses a
// level at run time) and on the held-out prompts (reported). Cross-fitting lets the thresholds
// see three times the tokens a separate threshold split would give them, on scores as
// uncalibrated as the ones generation will meet.
// The probes learn from the model's own greedy answers, the tokens early exit will decide.
import Foundation
import SortedKit

public struct CalibrationSettings: Sendable {
    public var maxNewTokens = 32
    /// Token risks of the stored levels.
    public var tokenRisks: [Double] = [0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.075, 0.1, 0.2, 0.3]
    public var batchSize = 8
    /// Draft shortlist: its size, and answer texts (tokenised) whose token counts choose it,
    /// together with the calibration's own full-depth answers.
    public var shortlistSize = 4096
    public var shortlistCorpus: [[Int32]] = []
    public init() {}
}

public enum CalibrationError: Error, CustomStringConvertible {
    case noExitBelowLast(layers: Int, exits: [Int])
    case tooFewPrompts(Int)
    /// The fit prompts' full-depth answers hold no token a probe decides.
    case noAnswerTokens

    public var description: String {
        switch self {
        case .noExitBelowLast(let layers, let exits):
            return "the model's exits \(exits) have none below its \(layers) layers: nothing to calibrate"
        case .tooFewPrompts(let n):
            return "\(n) prompts are too few to fit, choose thresholds and hold out: give at least 8"
        case .noAnswerTokens:
            return "the model's answers to the fit prompts end at once (or the prompts fill the context): check the template and the data"
        }
    }
}

public enum ExitCalibration {
    /// Per exit, the teacher-forced features [N, F] and whether the exit agreed with the last layer.
    struct Samples {
        var features: [[Float]]
        var agrees: [[Bool]]
        init(exits: Int) {
            features = Array(repeating: [], count: exits)
            agrees = Array(repeating: [], count: exits)
        }
        var count: Int { agrees.first?.count ?? 0 }
    }

    /// exits: the depths to probe (default: the model's trained exits below its last layer).
    public static func run(_ loaded: LoadedModel, prompts: [[Int32]], data: String, exits chosen: [Int]? = nil,
                           settings: CalibrationSettings = CalibrationSettings(),
                           progress: (String) -> Void = { _ in }) throws -> ExitProbes {
        let start = ContinuousClock.now
        let model = loaded.model, c = model.config, L = c.numHiddenLayers, D = c.hiddenSize
        let exits = (chosen ?? loaded.exits).filter { $0 < L }
        guard !exits.isEmpty else { throw CalibrationError.noExitBelowLast(layers: L, exits: chosen ?? loaded.exits) }
        guard prompts.count >= 8 else { throw CalibrationError.tooFewPrompts(prompts.count) }
        // Held out: every fourth prompt from the fourth. The rest fit, in `folds` folds; every
        // fourth from the third also measures the levels by generating.
        let fit = prompts.indices.filter { $0 % 4 != 3 }, choose = prompts.indices.filter { $0 % 4 == 2 },
            heldOut = prompts.indices.filter { $0 % 4 == 3 }
        let capacity = min(c.maxPositionEmbeddings, (prompts.map(\.count).max() ?? 1) + settings.maxNewTokens)

        progress("full-depth greedy answers to \(prompts.count) prompts")
        let full = try TextGenerator(model: model, strategy: .fixed(depth: L), stop: loaded.stopTokens,
                                     batchSize: min(settings.batchSize, prompts.count), capacity: capacity)
        let answers = full.generate(prompts, maxNewTokens: settings.maxNewTokens)

        progress("every exit on the answers, teacher-forced")
        let recorder = try ExitRecorder(model: model, exits: exits, capacity: capacity)
        let folds = (0..<Self.folds).map { f in
            recorder.record(fit.indices.filter { $0 % Self.folds == f }.map { (prompts[fit[$0]], answers[fit[$0]]) })
        }
        let fitTokens = folds.reduce(0) { $0 + $1.count }
        guard fitTokens > 0 else { throw CalibrationError.noAnswerTokens }
        progress("fitting \(exits.count) probes on \(fitTokens) tokens, cross-fitted in \(Self.folds) folds")
        let F = ExitProbes.featureCount(dim: D)
        var probes: [ExitProbe] = []
        var scores: [[Double]] = []    // per exit, every fit token's out-of-fold score (folds in order)
        var agrees: [[Bool]] = []
        for (i, depth) in exits.enumerated() {
            let labels = folds.flatMap { $0.agrees[i] }
            var best: (loss: Double, ridge: Double, scores: [Double])?
            for ridge in [1.0, 10.0, 100.0, 1000.0] {
                let (loss, outOfFold) = crossFit(folds, exit: i, features: F, ridge: ridge)
                if best == nil || loss < best!.loss { best = (loss, ridge, outOfFold) }
            }
            let (w, b) = LogisticRegression.fit(features: folds.flatMap { $0.features[i] }, labels: labels, count: F, ridge: best!.ridge)
            let agreement = Double(labels.filter { $0 }.count) / Double(labels.count)
            probes.append(ExitProbe(depth: depth, weights: w.prefix(D).map(Float.init), saturation: Float(w[D]),
                                    bias: Float(b), agreement: agreement))
            scores.append(best!.scores)
            agrees.append(labels)
        }
        var result = ExitProbes(layers: L, hiddenSize: D, probes: probes, levels: [],
                                calibration: CalibrationSummary(data: data, fitPrompts: fit.count, thresholdPrompts: choose.count,
                                                                heldOutPrompts: heldOut.count, fitTokens: fitTokens,
                                                                maxNewTokens: settings.maxNewTokens, seconds: 0, folds: Self.folds))
        for risk in settings.tokenRisks {
            let thresholds = exits.indices.map { threshold(scores: scores[$0], agrees: agrees[$0], risk: risk) }
            func measure(_ set: [Int]) throws -> (agreement: Double, layers: Double) {
                guard !set.isEmpty else { return (1, Double(L)) }
                let generator = try TextGenerator(model: model, strategy: .earlyExit(exits: exits + [L], decision: .probe(result, thresholds: thresholds)),
                                                  stop: loaded.stopTokens, capacity: capacity)
                let outputs = generator.generate(set.map { prompts[$0] }, maxNewTokens: settings.maxNewTokens)
                let (same, total) = tokenAgreement(outputs, set.map { answers[$0] })
                return (total > 0 ? Double(same) / Double(total) : 1, generator.stats.meanLayersPerToken)
            }
            let chosen = try measure(choose), held = try measure(heldOut)
            progress(String(format: "token risk %.3f: agreement %.3f at %.1f layers per token (held out: %.3f at %.1f)",
                            risk, chosen.agreement, chosen.layers, held.agreement, held.layers))
            result.levels.append(CalibrationLevel(tokenRisk: risk, thresholds: thresholds, agreement: chosen.agreement,
                                                  layersPerToken: chosen.layers, heldOutAgreement: held.agreement,
                                                  heldOutLayersPerToken: held.layers))
        }
        result.shortlist = shortlist(corpus: settings.shortlistCorpus + fit.map { answers[$0] } + choose.map { answers[$0] },
                                     size: settings.shortlistSize, vocabulary: c.vocabSize, always: loaded.stopTokens)
        let members = Set(result.shortlist), heldOutTokens = heldOut.flatMap { answers[$0] }
        result.calibration.shortlistCoverage = heldOutTokens.isEmpty ? 1
            : Double(heldOutTokens.filter { members.contains($0) }.count) / Double(heldOutTokens.count)
        progress(String(format: "draft shortlist: %d tokens, covering %.3f of the held-out answers' tokens",
                        result.shortlist.count, result.calibration.shortlistCoverage))
        result.calibration.seconds = (ContinuousClock.now - start).seconds
        return result
    }

    static let folds = 4

    /// Fits a probe for exit `i` on all folds but one, for each fold, and scores that fold's
    /// tokens with it: the mean out-of-fold log-loss and every token's out-of-fold score. A fold
    /// whose complement holds no token is scored by a probe fitted on all of them.
    static func crossFit(_ folds: [Samples], exit i: Int, features F: Int, ridge: Double) -> (loss: Double, scores: [Double]) {
        var loss = 0.0, scores: [Double] = []
        // Needed only when every token sits in one fold.
        lazy var everything = LogisticRegression.fit(features: folds.flatMap { $0.features[i] }, labels: folds.flatMap { $0.agrees[i] },
                                                      count: F, ridge: ridge)
        for (f, fold) in folds.enumerated() where fold.count > 0 {
            let others = folds.indices.filter { $0 != f }
            let labels = others.flatMap { folds[$0].agrees[i] }
            let (w, b) = labels.isEmpty ? everything
                : LogisticRegression.fit(features: others.flatMap { folds[$0].features[i] }, labels: labels, count: F, ridge: ridge)
            let probe = ExitProbe(depth: 0, weights: w.prefix(F - 1).map(Float.init), saturation: Float(w[F - 1]), bias: Float(b), agreement: 0)
            loss += LogisticRegression.logLoss(features: fold.features[i], labels: fold.agrees[i], count: F, weights: w, bias: b) * Double(fold.count)
            fold.features[i].withUnsafeBufferPointer { x in
                for n in 0..<fold.count { scores.append(probe.probability(features: x.baseAddress! + n * F)) }
            }
        }
        return (loss / Double(max(scores.count, 1)), scores)
    }

    /// The `size` most frequent tokens of `corpus` (ties by id), and `always`, most frequent first.
    static func shortlist(corpus: [[Int32]], size: Int, vocabulary: Int, always: Set<Int32>) -> [Int32] {
        var counts: [Int32: Int] = [:]
        for text in corpus { for t in text where t >= 0 && Int(t) < vocabulary { counts[t, default: 0] += 1 } }
        let ranked = counts.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }.map(\.key)
        var chosen = Array(ranked.prefix(max(0, size - always.count)))
        for t in always.sorted() where !chosen.contains(t) && Int(t) < vocabulary { chosen.append(t) }
        return chosen
    }

    /// The lowest score t such that, among the tokens scoring ≥ t, the disagreements (with one
    /// more counted, so a handful of lucky tokens is not trusted) are at most `risk` of them;
    /// 2 (never exit) when no t qualifies.
    static func threshold(scores: [Double], agrees: [Bool], risk: Double) -> Double {
        let order = scores.indices.sorted { scores[$0] > scores[$1] }
        var wrong = 0, best = 2.0
        for (k, n) in order.enumerated() {
            if !agrees[n] { wrong += 1 }
            // Ties: only a cut after the last of equal scores is a real threshold.
            if k + 1 < order.count && scores[order[k + 1]] == scores[n] { continue }
            if Double(wrong + 1) / Double(k + 2) <= risk { best = scores[n] }
        }
        return best
    }
}

/// Runs prompt + answer through every exit in one batched pass per chunk and records, for each
/// answer position the early-exit decoder decides (all but the first token, which the prefill
/// gives at full depth, and the stop token's position when the answer ended on one), the
/// probe features at every exit and whether the exit's argmax equals the last layer's.
final class ExitRecorder {
    let model: InferenceModel
    let exits: [Int]
    let decoder: IncrementalDecoder
    let hidden: FloatBuffer       // [R, D]
    let previous: FloatBuffer     // [R, D] the state at the exit before
    let logits: FloatBuffer       // [R, V]
    let deepest: FloatBuffer      // [R, V] the last layer's logits
    let features: FloatBuffer     // [F]

    init(model: InferenceModel, exits: [Int], capacity: Int) throws {
        self.model = model
        self.exits = exits
        let rows = min(capacity, 128)
        decoder = try IncrementalDecoder(model: model, slots: 1, capacity: capacity, maxRows: rows)
        hidden = decoder.makeHidden(rows: rows)
        previous = decoder.makeHidden(rows: rows)
        logits = FloatBuffer(count: rows * model.config.vocabSize)
        deepest = FloatBuffer(count: rows * model.config.vocabSize)
        features = FloatBuffer(count: ExitProbes.featureCount(dim: model.config.hiddenSize))
    }

    func record(_ pairs: [(prompt: [Int32], answer: [Int32])]) -> ExitCalibration.Samples {
        let c = model.config, L = c.numHiddenLayers, D = c.hiddenSize, V = c.vocabSize, F = D + 1
        var samples = ExitCalibration.Samples(exits: exits.count)
        for (prompt, answer) in pairs where !answer.isEmpty {
            // Inputs: the prompt and the answer; the row of input t predicts token t + 1.
            let tokens = Array((prompt + answer).prefix(decoder.cache.capacity))
            // Decided positions: rows predicting answer tokens 1…, and the one after the last
            // answer token (the model's stop token or its next token) while it fits.
            let first = prompt.count, last = tokens.count - 1
            guard first <= last else { continue }
            decoder.cache.reset(slot: 0)
            var chunkStart = 0
            while chunkStart < tokens.count {
                let n = min(decoder.maxRows, tokens.count - chunkStart)
                decoder.embed(Array(tokens[chunkStart..<(chunkStart + n)]), into: hidden)
                previous.pointer.update(from: hidden.pointer, count: n * D)
                // Rows of this chunk that are decided positions.
                let wanted = (0..<n).filter { chunkStart + $0 >= first && chunkStart + $0 <= last }
                var perExit: [[Int]] = []   // argmax per wanted row, per exit
                var exitFeatures: [[Float]] = []
                var depth = 0
                for exit in exits + [L] {
                    decoder.forward(hidden, segments: [DecoderSegment(slot: 0, rows: n)], layers: depth..<exit)
                    depth = exit
                    let target = exit == L ? deepest : logits
                    decoder.logits(hidden, rows: 0..<n, into: target.pointer)
                    perExit.append(wanted.map { LogitStatistics.argmax(target.pointer + $0 * V, count: V) })
                    if exit < L {
                        var rows: [Float] = []
                        rows.reserveCapacity(wanted.count * F)
                        for r in wanted {
                            ExitProbes.features(hidden: hidden.pointer + r * D, previous: previous.pointer + r * D, dim: D,
                                                into: features.pointer)
                            rows += features.array(count: F)
                        }
                        exitFeatures.append(rows)
                        previous.pointer.update(from: hidden.pointer, count: n * D)
                    }
                }
                for i in exits.indices {
                    samples.features[i] += exitFeatures[i]
                    samples.agrees[i] += zip(perExit[i], perExit[exits.count]).map { $0 == $1 }
                }
                chunkStart += n
            }
        }
        return samples
    }
}
