// Exit probes: the logistic fit against its optimality condition and a separable case, the
// stored probe scoring what the fitted one scores, thresholds that keep to their risk, the
// file round trip, early exit by probe against fixed depth (threshold 0 → the first exit,
// above 1 → full depth), and calibration end to end on a small model.
import XCTest
import SortedData
import SortedKit
@testable import SortedInference

final class ExitProbesTests: XCTestCase {
    /// At the optimum the ridge-regularised gradient Xᵀ(p − y) + λw (and Σ(p − y) for the bias) is zero.
    func testLogisticFitReachesAZeroGradient() {
        var rng = SplitMix64(seed: 3)
        let N = 400, F = 5
        var X = [Float](), y = [Bool]()
        for _ in 0..<N {
            let row = (0..<F).map { _ in Float(Double(rng.next() % 2000) / 1000 - 1) }
            let z = 2 * Double(row[0]) - 1.5 * Double(row[3]) + 0.3
            X += row
            y.append(Double(rng.next() % 10_000) / 10_000 < 1 / (1 + exp(-z)))
        }
        let ridge = 2.0
        let (w, b) = LogisticRegression.fit(features: X, labels: y, count: F, ridge: ridge)
        var gradient = w.map { ridge * $0 }, biasGradient = 0.0
        for n in 0..<N {
            var z = b
            for f in 0..<F { z += w[f] * Double(X[n * F + f]) }
            let r = LogisticRegression.sigmoid(z) - (y[n] ? 1 : 0)
            for f in 0..<F { gradient[f] += r * Double(X[n * F + f]) }
            biasGradient += r
        }
        for g in gradient + [biasGradient] { XCTAssertEqual(g, 0, accuracy: 1e-3) }
        // The signal's signs are found: feature 0 up, feature 3 down.
        XCTAssertGreaterThan(w[0], 0.5)
        XCTAssertLessThan(w[3], -0.5)
    }

    func testThresholdKeepsTheDisagreementAmongExitingTokensWithinTheRisk() {
        // Scores 1.0 … 0.01: the top 60 agree, then every other token disagrees.
        let scores = (0..<100).map { 1 - Double($0) / 100 }
        let agrees = (0..<100).map { $0 < 60 || $0 % 2 == 0 }
        let t = ExitCalibration.threshold(scores: scores, agrees: agrees, risk: 0.05)
        let exiting = scores.indices.filter { scores[$0] >= t }
        let wrong = exiting.filter { !agrees[$0] }.count
        XCTAssertLessThanOrEqual(Double(wrong + 1) / Double(exiting.count + 1), 0.05)
        XCTAssertGreaterThanOrEqual(exiting.count, 60)
        // No token can exit at risk 0, nor when all disagree.
        XCTAssertEqual(ExitCalibration.threshold(scores: scores, agrees: agrees, risk: 0), 2)
        XCTAssertEqual(ExitCalibration.threshold(scores: scores, agrees: scores.map { _ in false }, risk: 0.5), 2)
    }

    /// Cross-fitting scores each fold with a probe fitted on the others: a fold's own labels
    /// never reach its scores, and they are what a probe fitted by hand on the other folds gives.
    func testCrossFittedScoresComeFromProbesThatDidNotSeeTheirFold() {
        let F = 4
        var rng = SplitMix64(seed: 31)
        func fold(_ n: Int) -> ExitCalibration.Samples {
            var s = ExitCalibration.Samples(exits: 1)
            for _ in 0..<n {
                let x = (0..<F).map { _ in Float(Double(rng.next() % 2000) / 1000 - 1) }
                s.features[0] += x
                s.agrees[0].append(x[0] + 0.5 * x[1] > Float(Double(rng.next() % 1000) / 1000 - 0.5))
            }
            return s
        }
        var folds = [fold(30), fold(25), fold(0), fold(28)]
        let (loss, scores) = ExitCalibration.crossFit(folds, exit: 0, features: F, ridge: 1)
        XCTAssertEqual(scores.count, 83)
        XCTAssertGreaterThan(loss, 0)
        let (w, b) = LogisticRegression.fit(features: folds[1...].flatMap { $0.features[0] }, labels: folds[1...].flatMap { $0.agrees[0] },
                                            count: F, ridge: 1)
        let byHand = ExitProbe(depth: 0, weights: w.prefix(F - 1).map(Float.init), saturation: Float(w[F - 1]), bias: Float(b), agreement: 0)
        folds[0].features[0].withUnsafeBufferPointer { x in
            for n in 0..<30 { XCTAssertEqual(scores[n], byHand.probability(features: x.baseAddress! + n * F), accuracy: 1e-12) }
        }
        // Flipping fold 0's labels leaves its own scores alone and moves the others'.
        folds[0].agrees[0] = folds[0].agrees[0].map { !$0 }
        let flipped = ExitCalibration.crossFit(folds, exit: 0, features: F, ridge: 1).scores
        XCTAssertEqual(Array(flipped[0..<30]), Array(scores[0..<30]))
        XCTAssertNotEqual(Array(flipped[30...]), Array(scores[30...]))
        // All tokens in one fold: nothing to fit the others' probe on, so that fold is scored
        // by the probe fitted on every token.
        let lone = [folds[1], ExitCalibration.Samples(exits: 1), ExitCalibration.Samples(exits: 1), ExitCalibration.Samples(exits: 1)]
        let inSample = ExitCalibration.crossFit(lone, exit: 0, features: F, ridge: 1).scores
        let (wa, ba) = LogisticRegression.fit(features: folds[1].features[0], labels: folds[1].agrees[0], count: F, ridge: 1)
        let all = ExitProbe(depth: 0, weights: wa.prefix(F - 1).map(Float.init), saturation: Float(wa[F - 1]), bias: Float(ba), agreement: 0)
        XCTAssertEqual(inSample.count, 25)
        folds[1].features[0].withUnsafeBufferPointer { x in
            for n in 0..<25 { XCTAssertEqual(inSample[n], all.probability(features: x.baseAddress! + n * F), accuracy: 1e-12) }
        }
    }

    func testStoredProbeScoresItsFeaturesAndSurvivesTheFile() throws {
        let D = 6
        var rng = SplitMix64(seed: 9)
        let h = (0..<D).map { _ in Float(Double(rng.next() % 1000) / 100 - 5) }
        let previous = (0..<D).map { _ in Float(Double(rng.next() % 1000) / 100 - 5) }
        let probe = ExitProbe(depth: 2, weights: (0..<D).map { Float($0) / 7 - 0.3 }, saturation: -1.25, bias: 0.4, agreement: 0.7)
        let probes = ExitProbes(layers: 4, hiddenSize: D, probes: [probe],
                                levels: [CalibrationLevel(tokenRisk: 0.05, thresholds: [0.6], agreement: 0.93, layersPerToken: 3.1,
                                                          heldOutAgreement: 0.9, heldOutLayersPerToken: 3.2)],
                                calibration: CalibrationSummary(data: "v.jsonl", fitPrompts: 4, thresholdPrompts: 2, heldOutPrompts: 2,
                                                                fitTokens: 30, maxNewTokens: 8, seconds: 1))
        var x = [Float](repeating: 0, count: D + 1)
        h.withUnsafeBufferPointer { hp in previous.withUnsafeBufferPointer { pp in
            ExitProbes.features(hidden: hp.baseAddress!, previous: pp.baseAddress!, dim: D, into: &x)
        } }
        let rms = (h.map { Double($0 * $0) }.reduce(0, +) / Double(D)).squareRoot()
        XCTAssertEqual(Double(x[0]), Double(h[0]) / rms, accuracy: 1e-6)
        let fromFeatures = x.withUnsafeBufferPointer { probe.probability(features: $0.baseAddress!) }
        let fromState = probes.score(0, hidden: h, previous: previous)
        XCTAssertEqual(fromFeatures, fromState, accuracy: 1e-6)

        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("probes-\(UUID())")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let file = ExitProbes.location(forModel: folder, isFolder: true)
        try probes.write(to: file)
        try probes.write(to: file)   // replaces
        let read = try ExitProbes.read(file)
        XCTAssertEqual(read, probes)
        XCTAssertEqual(read.score(0, hidden: h, previous: previous), fromState)
        // Damaged, or made for another model: an error naming the file.
        try Data("{\"format\": 1".utf8).write(to: file)
        XCTAssertThrowsError(try ExitProbes.read(file)) { XCTAssertTrue("\($0)".contains(file.path)) }
        try probes.write(to: file)
        let other = try inferenceModel()
        XCTAssertThrowsError(try ExitProbes.load(file, for: other.config)) { XCTAssertTrue("\($0)".contains("made for 4 layers of width 6")) }
        XCTAssertNil(try ExitProbes.load(folder.appendingPathComponent("absent.json"), for: other.config))
    }

    func testLevelForAnAgreementIsTheCheapestThatReachesIt() {
        func level(_ agreement: Double, _ layers: Double, heldOut: Double? = nil) -> CalibrationLevel {
            CalibrationLevel(tokenRisk: 0, thresholds: [], agreement: agreement, layersPerToken: layers,
                             heldOutAgreement: heldOut ?? agreement, heldOutLayersPerToken: layers)
        }
        // The 3.4-layer level reaches 0.99 on its threshold prompts but not on the held-out ones.
        let probes = ExitProbes(layers: 4, hiddenSize: 2, probes: [],
                                levels: [level(1, 4), level(0.99, 3.4, heldOut: 0.9), level(0.97, 3.5), level(0.96, 3.6), level(0.8, 2)],
                                calibration: CalibrationSummary(data: "", fitPrompts: 0, thresholdPrompts: 0, heldOutPrompts: 0,
                                                                fitTokens: 0, maxNewTokens: 0, seconds: 0))
        XCTAssertEqual(probes.level(forAgreement: 0.95)?.layersPerToken, 3.5)
        XCTAssertEqual(probes.level(forAgreement: 0.5)?.layersPerToken, 2)
        XCTAssertNil(probes.level(forAgreement: 1.5))
    }

    /// With every threshold at 0 a probe always exits: tokens after the first are fixed-depth
    /// tokens of the first exit; above 1 none exits and the output is full-depth greedy.
    func testEarlyExitByProbeSpendsTheDepthItsThresholdsAskFor() throws {
        let model = try inferenceModel()
        let D = model.config.hiddenSize
        var rng = SplitMix64(seed: 5)
        let probes = ExitProbes(layers: 4, hiddenSize: D,
                                probes: [1, 2].map { depth in
                                    ExitProbe(depth: depth, weights: (0..<D).map { _ in Float(Double(rng.next() % 100) / 100 - 0.5) },
                                              saturation: 0.5, bias: 0, agreement: 0.5)
                                },
                                levels: [], calibration: CalibrationSummary(data: "", fitPrompts: 0, thresholdPrompts: 0, heldOutPrompts: 0,
                                                                            fitTokens: 0, maxNewTokens: 0, seconds: 0))
        let always = try TextGenerator(model: model, strategy: .earlyExit(exits: [1, 2, 4], decision: .probe(probes, thresholds: [0, 0])),
                                       stop: [], capacity: 40)
        let fixed = try TextGenerator(model: model, strategy: .fixed(depth: 1), stop: [], capacity: 40)
        let full = try TextGenerator(model: model, strategy: .fixed(depth: 4), stop: [], capacity: 40)
        let prompt: [Int32] = [3, 14, 15, 9, 2]
        let out = always.generate([prompt], maxNewTokens: 8)[0]
        let first = full.generate([prompt], maxNewTokens: 1)[0][0]
        XCTAssertEqual(out[0], first)
        XCTAssertEqual(Array(out.dropFirst()), fixed.generate([prompt + [first]], maxNewTokens: 7)[0])
        XCTAssertEqual(always.stats.exitHistogram["1"], 7)

        let never = try TextGenerator(model: model, strategy: .earlyExit(exits: [1, 2, 4], decision: .probe(probes, thresholds: [2, 2])),
                                      stop: [], capacity: 40)
        XCTAssertEqual(never.generate([prompt], maxNewTokens: 8)[0], full.generate([prompt], maxNewTokens: 8)[0])
        XCTAssertEqual(never.stats.meanLayersPerToken, 4)
        // Probes that name other exits than the strategy's are refused.
        XCTAssertThrowsError(try TextGenerator(model: model, strategy: .earlyExit(exits: [2, 4], decision: .probe(probes, thresholds: [0, 0])),
                                               stop: [], capacity: 40))
    }

    /// Calibration on a model whose last layers barely move the state: every level is measured,
    /// levels grow cheaper as their risk grows, and the strictest level's measured agreement
    /// is what generating with its thresholds gives.
    func testCalibrationMeasuresEveryLevelByGenerating() throws {
        let model = try inferenceModel(layers: 4, quietFrom: 2)
        let loaded = LoadedModel(model: model, tokenizer: ByteTokenizer(), template: .none, exits: [1, 2, 4], window: 64,
                                 validation: [], description: "test model")
        var rng = SplitMix64(seed: 21)
        let prompts = (0..<24).map { _ in (0..<6).map { _ in Int32(rng.next() % 61) } }
        var settings = CalibrationSettings()
        settings.maxNewTokens = 10
        settings.tokenRisks = [0.01, 0.2, 0.5]
        let probes = try ExitCalibration.run(loaded, prompts: prompts, data: "random", settings: settings)
        XCTAssertEqual(probes.exits, [1, 2])
        XCTAssertEqual(probes.levels.count, 3)
        XCTAssertEqual(probes.calibration.heldOutPrompts, 6)
        XCTAssertEqual(probes.calibration.fitPrompts, 18)
        XCTAssertEqual(probes.calibration.thresholdPrompts, 6)
        XCTAssertEqual(probes.calibration.fitTokens, 18 * 10)
        XCTAssertGreaterThanOrEqual(probes.levels[0].layersPerToken, probes.levels[2].layersPerToken)
        // Re-measure the first level by hand on the threshold prompts (every fourth from the third).
        let chosen = prompts.indices.filter { $0 % 4 == 2 }.map { prompts[$0] }
        let full = try TextGenerator(model: model, strategy: .fixed(depth: 4), stop: [], capacity: 16)
        let reference = full.generate(chosen, maxNewTokens: 10)
        let early = try TextGenerator(model: model, strategy: .earlyExit(exits: [1, 2, 4], decision: .probe(probes, thresholds: probes.levels[0].thresholds)),
                                      stop: [], capacity: 16)
        let (same, total) = tokenAgreement(early.generate(chosen, maxNewTokens: 10), reference)
        XCTAssertEqual(Double(same) / Double(total), probes.levels[0].agreement, accuracy: 1e-12)
        XCTAssertThrowsError(try ExitCalibration.run(loaded, prompts: Array(prompts.prefix(7)), data: "random", settings: settings))
        let noExits = LoadedModel(model: model, tokenizer: ByteTokenizer(), template: .none, exits: [4], window: 64, validation: [], description: "")
        XCTAssertThrowsError(try ExitCalibration.run(noExits, prompts: prompts, data: "random", settings: settings))
    }

    /// Drafts over a shortlist, with a probe-driven draft length: greedy output is still the
    /// full model's, token for token, whatever the shortlist misses.
    func testShortlistAndProbedDraftsKeepGreedyOutputExact() throws {
        let model = try inferenceModel(layers: 4, quietFrom: 2)
        let D = model.config.hiddenSize
        var rng = SplitMix64(seed: 8)
        let probes = ExitProbes(layers: 4, hiddenSize: D,
                                probes: [ExitProbe(depth: 2, weights: (0..<D).map { _ in Float(Double(rng.next() % 100) / 200 - 0.25) },
                                                   saturation: 1, bias: 0.5, agreement: 0.8)],
                                levels: [], calibration: CalibrationSummary(data: "", fitPrompts: 0, thresholdPrompts: 0, heldOutPrompts: 0,
                                                                            fitTokens: 0, maxNewTokens: 0, seconds: 0))
        let full = try TextGenerator(model: model, strategy: .fixed(depth: 4), stop: [], capacity: 48)
        let prompts: [[Int32]] = [[3, 14, 15, 9, 2], [27, 18, 28], [1, 41, 42, 13, 56, 60]]
        let reference = full.generate(prompts, maxNewTokens: 20)
        let shortlist = Array(Set(reference.flatMap { $0 }).sorted().prefix(5)) + [0, 7, 60]   // misses most tokens
        for lookahead: DecodingStrategy.Lookahead in [.fixed(3), .probed(maximum: 6, probes: probes, threshold: 0.5),
                                                       .probed(maximum: 6, probes: probes, threshold: 0)] {
            for vocabulary: DecodingStrategy.DraftVocabulary in [.full, .shortlist(shortlist)] {
                let speculative = try TextGenerator(model: model, strategy: .selfSpeculative(draftDepth: 2, lookahead: lookahead, vocabulary: vocabulary),
                                                    stop: [], capacity: 48)
                XCTAssertEqual(speculative.generate(prompts, maxNewTokens: 20), reference, "\(lookahead) \(vocabulary)")
                XCTAssertGreaterThan(speculative.stats.verifications, 0)
                // A probe at threshold 0 never stops a draft; at 0.5 it does (fewer drafts per round).
                if case .probed(let n, _, let t) = lookahead, vocabulary == .full {
                    let perRound = Double(speculative.stats.drafted) / Double(speculative.stats.verifications)
                    if t == 0 { XCTAssertGreaterThan(perRound, Double(n) / 2) } else { XCTAssertLessThan(perRound, Double(n)) }
                }
            }
        }
        // A shortlist draft proposes only shortlisted tokens.
        let only = try TextGenerator(model: model, strategy: .selfSpeculative(draftDepth: 2, lookahead: .fixed(4), vocabulary: .shortlist([5])),
                                     stop: [], capacity: 48)
        _ = only.generate(prompts, maxNewTokens: 20)
        let fives = reference.flatMap { $0 }.filter { $0 == 5 }.count
        XCTAssertLessThanOrEqual(only.stats.accepted, fives)
        XCTAssertThrowsError(try TextGenerator(model: model, strategy: .selfSpeculative(draftDepth: 2, lookahead: .fixed(2), vocabulary: .shortlist([99])),
                                               stop: [], capacity: 48))
        XCTAssertThrowsError(try TextGenerator(model: model, strategy: .selfSpeculative(draftDepth: 1, lookahead: .probed(maximum: 2, probes: probes, threshold: 0.5)),
                                               stop: [], capacity: 48))
    }

    func testShortlistIsTheMostFrequentTokensAndTheEndTokens() {
        let list = ExitCalibration.shortlist(corpus: [[5, 5, 5, 2, 2, 9], [2, 7, 7, 7, 7]], size: 3, vocabulary: 10, always: [0])
        XCTAssertEqual(list, [7, 2, 0])
        XCTAssertEqual(ExitCalibration.shortlist(corpus: [[5, 42]], size: 8, vocabulary: 10, always: []), [5])
    }

    /// The plan prefers an exit that agrees more when the bytes are equal, and drafts more
    /// tokens when agreement is high.
    func testDraftPlanWeighsAgreementAgainstBytes() throws {
        let model = try inferenceModel(layers: 8)
        func probes(_ agreements: [(Int, Double)]) -> ExitProbes {
            ExitProbes(layers: 8, hiddenSize: 32, probes: agreements.map { ExitProbe(depth: $0.0, weights: [], saturation: 0, bias: 0, agreement: $0.1) },
                       levels: [], calibration: CalibrationSummary(data: "", fitPrompts: 0, thresholdPrompts: 0, heldOutPrompts: 0,
                                                                   fitTokens: 0, maxNewTokens: 0, seconds: 0))
        }
        let low = DraftPlanner.plan(probes: probes([(2, 0.3), (4, 0.9)]), weights: model)!
        XCTAssertEqual(low.depth, 4)
        let high = DraftPlanner.plan(probes: probes([(2, 0.98)]), weights: model)!
        XCTAssertGreaterThanOrEqual(high.speculate, 3)
        XCTAssertGreaterThan(high.expectedSpeedup, 1)
    }

    /// Weight bytes per token: a fixed depth reads its layers and the head once per token at
    /// batch 1 (the batch shares them); never exiting by probe reads what full depth reads.
    func testWeightBytesReadPerToken() throws {
        let model = try inferenceModel()
        let c = model.config, layer = model.layerBytes(0), head = c.vocabSize * c.hiddenSize * 4
        let prompt: [Int32] = [3, 14, 15, 9, 2]
        let one = try TextGenerator(model: model, strategy: .fixed(depth: 2), stop: [], capacity: 40)
        _ = one.generate([prompt], maxNewTokens: 6)
        // 6 tokens: 6 head passes, 5 forwards of 2 layers (the first token came from the prefill).
        XCTAssertEqual(one.stats.weightBytesRead, 6 * head + 5 * 2 * layer)
        let batched = try TextGenerator(model: model, strategy: .fixed(depth: 2), stop: [], batchSize: 2, capacity: 40)
        _ = batched.generate([prompt, prompt], maxNewTokens: 6)
        XCTAssertEqual(batched.stats.weightBytesRead, 2 * head + 5 * (2 * layer + head))
    }
}
