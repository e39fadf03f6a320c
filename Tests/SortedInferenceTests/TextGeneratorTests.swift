// Generation through the KV-cache decoder against the plain path it replaces (the full
// window re-run by the training pass for every token), and the dynamic-depth strategies
// against fixed-depth decoding: early exit at threshold 0 is the first exit, above 1 the
// full model; greedy self-speculative decoding is full-depth greedy decoding; speculative
// sampling draws from the full model's distribution.
import XCTest
import SortedKit
@testable import SortedInference

/// A model whose layers from `quietFrom` on change the residual stream only a little, so a
/// shallow exit drafts what the full model mostly agrees with (drafts get accepted and rejected).
func trainingModel(layers: Int = 4, vocab: Int = 61, quietFrom: Int? = nil, seed: UInt64 = 11) throws -> LlamaModel {
    let model = try LlamaModel(config: LlamaConfig(hiddenSize: 32, intermediateSize: 48, numHiddenLayers: layers,
                                                   numAttentionHeads: 4, numKeyValueHeads: 2, vocabSize: vocab, rmsNormEps: 1e-5,
                                                   tieWordEmbeddings: true, maxPositionEmbeddings: 96))
    model.initializeRandomly(seed: seed, std: 0.5)
    if let quiet = quietFrom {
        for l in quiet..<layers {
            let w = model.layout.layers[l], c = model.config
            for (offset, count) in [(w.output, c.hiddenSize * c.queryWidth), (w.down, c.hiddenSize * c.intermediateSize)] {
                for i in 0..<count { model.parameters[offset + i] *= 0.15 }
            }
        }
    }
    return model
}

/// The same model as the decoder holds it (float32, its parameters wrapped).
func inferenceModel(layers: Int = 4, vocab: Int = 61, quietFrom: Int? = nil, seed: UInt64 = 11) throws -> InferenceModel {
    try InferenceModel(trainingModel(layers: layers, vocab: vocab, quietFrom: quietFrom, seed: seed))
}

/// Greedy decoding the plain way: the whole sequence through the training pass per token.
func referenceGreedy(_ model: LlamaModel, _ prompt: [Int32], depth: Int, count: Int) throws -> [Int32] {
    var tokens = prompt
    for _ in 0..<count {
        let pass = try SortedPass(model: model, batchSize: 1, sequenceLength: tokens.count)
        let logits = pass.logits(TokenBatch(batchSize: 1, sequenceLength: tokens.count, tokens: tokens,
                                            targets: [Int32](repeating: TokenBatch.ignoreIndex, count: tokens.count)),
                                 depth: depth, rows: [tokens.count - 1])
        tokens.append(Int32(logits.indices.max { logits[$0] < logits[$1] }!))
    }
    return Array(tokens.dropFirst(prompt.count))
}

final class TextGeneratorTests: XCTestCase {
    let prompts: [[Int32]] = [[5, 17, 33], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], [40]]

    func testFixedDepthGreedyEqualsThePlainPathAndIgnoresBatching() throws {
        let source = try trainingModel(), model = try InferenceModel(source)
        for depth in [1, 2, 4] {
            let batched = try TextGenerator(model: model, strategy: .fixed(depth: depth), stop: [], batchSize: 2, capacity: 40)
            let together = batched.generate(prompts, maxNewTokens: 10)
            for (i, prompt) in prompts.enumerated() {
                XCTAssertEqual(together[i], try referenceGreedy(source, prompt, depth: depth, count: 10), "prompt \(i), depth \(depth)")
            }
            XCTAssertEqual(batched.stats.generatedTokens, 30)
            XCTAssertEqual(batched.stats.meanLayersPerToken, Double(depth))
        }
    }

    func testStopTokensCapacityAndSeededSampling() throws {
        let model = try inferenceModel()
        let greedy = try TextGenerator(model: model, strategy: .fixed(depth: 4), stop: [], capacity: 20)
        let first = greedy.generate([prompts[0]], maxNewTokens: 8)[0]
        let stopper = try TextGenerator(model: model, strategy: .fixed(depth: 4), stop: [first[3]], capacity: 20)
        XCTAssertEqual(stopper.generate([prompts[0]], maxNewTokens: 8)[0], Array(first.prefix(first.firstIndex(of: first[3])!)))
        // A full sequence ends the answer: 12 prompt tokens + 8 new fill 20 positions.
        XCTAssertEqual(greedy.generate([prompts[1]], maxNewTokens: 100)[0].count, 20 - prompts[1].count)
        // Sampling is seeded per prompt: the batch a prompt shares does not change its answer.
        let settings = SamplingSettings(temperature: 0.8, topK: 20, topP: 0.9, seed: 3)
        let a = try TextGenerator(model: model, strategy: .fixed(depth: 2), sampling: settings, stop: [], batchSize: 1, capacity: 40)
        let b = try TextGenerator(model: model, strategy: .fixed(depth: 2), sampling: settings, stop: [], batchSize: 3, capacity: 40)
        let sampled = a.generate(prompts, maxNewTokens: 12)
        XCTAssertEqual(sampled, b.generate(prompts, maxNewTokens: 12))
        XCTAssertNotEqual(sampled, try TextGenerator(model: model, strategy: .fixed(depth: 2), stop: [], capacity: 40)
            .generate(prompts, maxNewTokens: 12), "temperature 0.8 should not be greedy on this model")
        // Stop tokens are not counted: every generated token is in the histogram once.
        let early = try TextGenerator(model: model, strategy: .earlyExit(exits: [1, 4], decision: .confidence(thresholds: [0.2], measure: .probability)),
                                      stop: [first[3]], capacity: 40)
        let out = early.generate(prompts, maxNewTokens: 8)
        XCTAssertEqual(early.stats.generatedTokens, out.map(\.count).reduce(0, +))
        XCTAssertEqual(early.stats.exitHistogram.values.reduce(0, +), early.stats.generatedTokens)
    }

    /// HF's order: temperature, then top-k, then top-p on the renormalised top-k distribution.
    func testTopPActsOnTheTopKDistribution() {
        let probabilities: [Double] = [0.5, 0.2, 0.1, 0.08, 0.07, 0.05]
        let logits = probabilities.map { Float(log($0)) }
        func kept(_ settings: SamplingSettings) -> Int {
            var out = [Float](repeating: 0, count: logits.count)
            out.withUnsafeMutableBufferPointer { o in
                logits.withUnsafeBufferPointer { TokenSampler(settings).distribution($0.baseAddress!, vocab: logits.count, into: o.baseAddress!) }
            }
            XCTAssertEqual(Double(out.reduce(0, +)), 1, accuracy: 1e-5)
            return out.filter { $0 > 0 }.count
        }
        // Top-3 holds 0.8 of the mass; p = 0.8 of that (0.64) needs tokens 0 and 1.
        XCTAssertEqual(kept(SamplingSettings(temperature: 1, topK: 3, topP: 0.8)), 2)
        XCTAssertEqual(kept(SamplingSettings(temperature: 1, topK: 3)), 3)
        XCTAssertEqual(kept(SamplingSettings(temperature: 1, topP: 0.75)), 3)
        XCTAssertEqual(kept(SamplingSettings(temperature: 1)), 6)
        XCTAssertTrue(SamplingSettings(temperature: 1e-6).isGreedy)
    }

    func testEarlyExitSpendsTheDepthItsThresholdsAskFor() throws {
        let source = try trainingModel(), model = try InferenceModel(source)
        for exitDepth in [1, 2] {
            let always = try TextGenerator(model: model, strategy: .earlyExit(exits: [exitDepth, 4], decision: .confidence(thresholds: [0], measure: .probability)),
                                           stop: [], capacity: 40)
            let fixed = try TextGenerator(model: model, strategy: .fixed(depth: exitDepth), stop: [], capacity: 40)
            // Tokens after the first all exit at exitDepth; the layers below it never see the
            // propagated state, so they follow fixed-depth decoding except for the first
            // token, which the full-depth prefill chose.
            for prompt in prompts {
                let out = always.generate([prompt], maxNewTokens: 8)[0]
                let firstFull = try referenceGreedy(source, prompt, depth: 4, count: 1)[0]
                XCTAssertEqual(out[0], firstFull)
                XCTAssertEqual(Array(out.dropFirst()), Array(fixed.generate([prompt + [firstFull]], maxNewTokens: 7)[0]))
            }
            XCTAssertEqual(always.stats.exitHistogram[String(exitDepth)], 3 * 7)
            XCTAssertEqual(always.stats.exitHistogram["4"], 3)
        }
        let never = try TextGenerator(model: model, strategy: .earlyExit(exits: [1, 2, 4], decision: .confidence(thresholds: [1.01, 1.01], measure: .margin)),
                                      stop: [], capacity: 40)
        let full = try TextGenerator(model: model, strategy: .fixed(depth: 4), stop: [], capacity: 40)
        XCTAssertEqual(never.generate(prompts, maxNewTokens: 8), full.generate(prompts, maxNewTokens: 8))
        XCTAssertEqual(never.stats.meanLayersPerToken, 4)
    }

    /// Layers per token: the first token comes from the full-depth prefill, each later
    /// one from the exit it stopped at.
    func testEarlyExitCountsTheLayersEachTokenUsed() throws {
        let model = try inferenceModel()
        let generator = try TextGenerator(model: model, strategy: .earlyExit(exits: [1, 4], decision: .confidence(thresholds: [0.0], measure: .probability)),
                                          stop: [], capacity: 40)
        _ = generator.generate([prompts[0]], maxNewTokens: 6)
        // 1 token at full depth, 5 at depth 1 (the 6th is chosen but never fed back)
        XCTAssertEqual(generator.stats.generatedTokens, 6)
        XCTAssertEqual(generator.stats.layersComputed, 4 + 5 * 1)
    }

    func testGreedySelfSpeculativeEqualsFullDepthGreedy() throws {
        let model = try inferenceModel(layers: 6, quietFrom: 2)
        let full = try TextGenerator(model: model, strategy: .fixed(depth: 6), stop: [], capacity: 60)
        let expected = full.generate(prompts, maxNewTokens: 30)
        for lookahead: DecodingStrategy.Lookahead in [.fixed(1), .fixed(3), .fixed(7), .fixed(12), .fixed(24), .adaptive(maximum: 6, threshold: 0.3)] {
            for draft in [1, 2, 5] {
                let speculative = try TextGenerator(model: model, strategy: .selfSpeculative(draftDepth: draft, lookahead: lookahead),
                                                    stop: [], capacity: 60)
                XCTAssertEqual(speculative.generate(prompts, maxNewTokens: 30), expected, "draft \(draft), \(lookahead)")
                let s = speculative.stats
                XCTAssertGreaterThan(s.drafted, 0)
                if draft == 2 { XCTAssertGreaterThan(s.accepted, 0, "the quiet deep layers should accept some drafts") }
                // Each prompt's first token comes from the prefill; each verification emits its
                // accepted drafts and one token of its own (fewer only where the answer ends).
                XCTAssertLessThanOrEqual(s.generatedTokens, prompts.count + s.verifications + s.accepted)
                XCTAssertGreaterThan(s.generatedTokens, s.verifications, "draft \(draft), \(lookahead)")
            }
        }
        // Stops and the capacity end a speculative answer as they end a plain one.
        let stop = expected[0][5]
        let plainStop = try TextGenerator(model: model, strategy: .fixed(depth: 6), stop: [stop], capacity: 20)
        let specStop = try TextGenerator(model: model, strategy: .selfSpeculative(draftDepth: 2, lookahead: .fixed(4)), stop: [stop], capacity: 20)
        XCTAssertEqual(specStop.generate(prompts, maxNewTokens: 30), plainStop.generate(prompts, maxNewTokens: 30))
    }

    /// Speculative sampling keeps the full model's distribution: the frequencies of the
    /// first three tokens match the exact probabilities of the full model (computed from
    /// its logits), while the draft's own distribution visibly does not.
    func testSpeculativeSamplingDrawsFromTheFullModel() throws {
        let V = 4
        let source = try trainingModel(layers: 3, vocab: V, seed: 4), model = try InferenceModel(source)
        let prompt: [Int32] = [1, 3]
        func exactJoint(depth: Int) throws -> [Double] {
            var joint = [Double](repeating: 0, count: V * V * V)
            func probabilities(_ tokens: [Int32]) throws -> [Double] {
                let pass = try SortedPass(model: source, batchSize: 1, sequenceLength: tokens.count)
                let l = pass.logits(TokenBatch(batchSize: 1, sequenceLength: tokens.count, tokens: tokens,
                                               targets: [Int32](repeating: -100, count: tokens.count)), depth: depth, rows: [tokens.count - 1])
                let m = l.max()!, e = l.map { exp(Double($0 - m)) }, z = e.reduce(0, +)
                return e.map { $0 / z }
            }
            let p1 = try probabilities(prompt)
            for a in 0..<V {
                let p2 = try probabilities(prompt + [Int32(a)])
                for b in 0..<V {
                    let p3 = try probabilities(prompt + [Int32(a), Int32(b)])
                    for c in 0..<V { joint[(a * V + b) * V + c] = p1[a] * p2[b] * p3[c] }
                }
            }
            return joint
        }
        let exact = try exactJoint(depth: 3)
        let draftOnly = try exactJoint(depth: 1)
        let runs = 4000
        var counts = [Double](repeating: 0, count: V * V * V)
        let generator = try TextGenerator(model: model, strategy: .selfSpeculative(draftDepth: 1, lookahead: .fixed(2)),
                                          sampling: SamplingSettings(temperature: 1, seed: 17), stop: [], capacity: 8)
        for _ in 0..<runs {
            let out = generator.generate([prompt], maxNewTokens: 3)[0]
            counts[(Int(out[0]) * V + Int(out[1])) * V + Int(out[2])] += 1
        }
        let total = zip(counts, exact).map { abs($0 / Double(runs) - $1) }.reduce(0, +) / 2
        let draftDistance = zip(exact, draftOnly).map { abs($0 - $1) }.reduce(0, +) / 2
        XCTAssertGreaterThan(draftDistance, 0.25, "the draft must differ from the full model for this test to mean anything")
        XCTAssertLessThan(total, 0.08, "speculative sampling's frequencies are \(total) (total variation) from the full model's")
        XCTAssertGreaterThan(generator.stats.accepted, 0)
        XCTAssertLessThan(generator.stats.accepted, generator.stats.drafted)
    }
}
