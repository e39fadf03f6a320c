// Model-level properties of the sorted loss: nested consistency, SFT as the one-exit
// case, whole-model finite differences, sampling policies and config validation.
import Foundation
import XCTest
import SortedFormats
@testable import SortedKit

func smallConfig(tied: Bool = false, kvHeads: Int = 2) -> LlamaConfig {
    LlamaConfig(hiddenSize: 16, intermediateSize: 24, numHiddenLayers: 4, numAttentionHeads: 4,
                numKeyValueHeads: kvHeads, headDim: 4, vocabSize: 23, rmsNormEps: 1e-5, ropeTheta: 10000,
                tieWordEmbeddings: tied, maxPositionEmbeddings: 32)
}

func randomBatch(B: Int, T: Int, vocab: Int, seed: UInt64, ignoreEvery: Int = 3) -> TokenBatch {
    var rng = SplitMix64(seed: seed)
    let tokens = (0..<(B * T)).map { _ in Int32(rng.next() % UInt64(vocab)) }
    let targets = (0..<(B * T)).map { i -> Int32 in i % ignoreEvery == 0 ? -100 : Int32(rng.next() % UInt64(vocab)) }
    return TokenBatch(batchSize: B, sequenceLength: T, tokens: tokens, targets: targets)
}

final class SortedModelTests: XCTestCase {
    func testExitLossEqualsLossOfPrefixModel() throws {
        let model = try LlamaModel(config: smallConfig())
        model.initializeRandomly(seed: 1, std: 0.3)
        let batch = randomBatch(B: 2, T: 7, vocab: 23, seed: 2)
        let pass = try SortedPass(model: model, batchSize: 2, sequenceLength: 7)
        let exits = [1, 2, 3, 4].map { WeightedExit(depth: $0, weight: 0.25) }
        let losses = pass.run(batch, exits: exits, lossNormalizer: Double(batch.labelledCount), computeGradients: false)
        for k in 1...3 {
            let prefix = try model.prefix(depth: k)
            XCTAssertEqual(prefix.config.numHiddenLayers, k)
            let prefixPass = try SortedPass(model: prefix, batchSize: 2, sequenceLength: 7)
            let alone = prefixPass.run(batch, exits: [WeightedExit(depth: k, weight: 1)],
                                       lossNormalizer: Double(batch.labelledCount), computeGradients: false)
            XCTAssertEqual(alone[0].mean, losses[k - 1].mean, accuracy: 1e-6, "exit \(k)")
            XCTAssertEqual(prefixPass.logits(batch, depth: k), pass.logits(batch, depth: k), "logits of exit \(k)")
        }
    }

    func testSFTIsThePlainLanguageModelLoss() throws {
        let model = try LlamaModel(config: smallConfig(tied: true))
        model.initializeRandomly(seed: 3, std: 0.3)
        let batch = randomBatch(B: 3, T: 5, vocab: 23, seed: 4)
        let pass = try SortedPass(model: model, batchSize: 3, sequenceLength: 5)
        let sft = SortedObjective.sft(numLayers: 4)
        XCTAssertEqual(sft.activeExits(step: 0), [WeightedExit(depth: 4, weight: 1)])
        let loss = pass.run(batch, exits: sft.activeExits(step: 0), lossNormalizer: Double(batch.labelledCount))[0]
        // Plain LM loss from the unfused logits: mean over labelled tokens of −log softmax.
        let V = 23
        let logits = pass.logits(batch, depth: 4)
        var nll = 0.0, count = 0
        for (t, target) in batch.targets.enumerated() where target >= 0 {
            let row = (0..<V).map { Double(logits[t * V + $0]) }
            let m = row.max()!
            nll += m + log(row.map { exp($0 - m) }.reduce(0, +)) - row[Int(target)]
            count += 1
        }
        XCTAssertEqual(loss.tokens, count)
        XCTAssertEqual(loss.mean, nll / Double(count), accuracy: 1e-6)
    }

    func testWholeModelGradientsMatchFiniteDifferences() throws {
        for tied in [false, true] {
            let model = try LlamaModel(config: smallConfig(tied: tied))
            model.initializeRandomly(seed: 5, std: 0.3)
            let batch = randomBatch(B: 2, T: 6, vocab: 23, seed: 6)
            let pass = try SortedPass(model: model, batchSize: 2, sequenceLength: 6)
            let objective = try SortedObjective(exits: [1, 3, 4], numLayers: 4, reduction: .sum, weights: [0.5, 1, 2])
            let exits = objective.activeExits(step: 0)
            let normalizer = Double(batch.labelledCount)
            func loss() -> Double {
                pass.run(batch, exits: exits, lossNormalizer: normalizer, computeGradients: false)
                    .enumerated().map { exits[$0.offset].weight * $0.element.negativeLogLikelihood / normalizer }
                    .reduce(0, +)
            }
            model.zeroGradients()
            pass.run(batch, exits: exits, lossNormalizer: normalizer)
            let analytic = model.gradients.array()
            for tensor in model.layout.tensors {
                let indices = sampleIndices(tensor.count, count: 6, seed: UInt64(tensor.offset)).map { $0 + tensor.offset }
                checkFiniteDifferences(model.parameters, indices: indices, analytic: analytic, step: 5e-3,
                                       rtol: 3e-2, what: "\(tied ? "tied" : "untied") \(tensor.name)", loss: loss)
            }
        }
    }

    func testGradientsAccumulateAcrossCalls() throws {
        let model = try LlamaModel(config: smallConfig())
        model.initializeRandomly(seed: 7, std: 0.3)
        let batch = randomBatch(B: 1, T: 6, vocab: 23, seed: 8)
        let pass = try SortedPass(model: model, batchSize: 1, sequenceLength: 6)
        let exits = [WeightedExit(depth: 2, weight: 1), WeightedExit(depth: 4, weight: 1)]
        pass.run(batch, exits: exits, lossNormalizer: 10)
        let once = model.gradients.array()
        pass.run(batch, exits: exits, lossNormalizer: 10)
        assertClose(model.gradients.array(), once.map { 2 * $0 }, atol: 1e-7, rtol: 1e-6, "twice the gradient")
    }

    /// Recomputing each layer in the backward runs the same operations on the same inputs:
    /// losses and gradients are bit-identical to keeping every layer's activations, with
    /// and without distillation, on the long golden batch (several attention tiles), in
    /// float32 and (where the CPU has it) in bf16, whose recomputed forward writes its
    /// GEMM-only activations through the backward's scratch.
    func testRecomputingLayersGivesTheSameGradients() throws {
        let fixture = try GoldenFixture("golden-gqa-long.safetensors")
        let exits = [WeightedExit(depth: 1, weight: 0.25), WeightedExit(depth: 3, weight: 0.25),
                     WeightedExit(depth: 4, weight: 0.5)]
        let precisions: [TrainingPrecision] = BFloat16.hardware.native ? [.fp32, .bf16] : [.fp32]
        for precision in precisions {
        for distillation in [nil, Distillation(weight: 0.5, temperature: 2)] {
            var results: [(losses: [ExitLoss], gradients: [Float])] = []
            for recompute in [false, true] {
                let model = try fixture.makeModel()
                let pass = try SortedPass(model: model, batchSize: fixture.batch.batchSize,
                                          sequenceLength: fixture.batch.sequenceLength, recompute: recompute, precision: precision)
                var order: [GradientBucket] = []
                let losses = pass.run(fixture.batch, exits: exits, lossNormalizer: 100, distillation: distillation) {
                    order.append($0)
                }
                XCTAssertEqual(order, [.tail, .layer(3), .layer(2), .layer(1), .layer(0), .embedding])
                results.append((losses, model.gradients.array()))
            }
            XCTAssertEqual(results[0].losses, results[1].losses, "\(precision) losses, distillation \(distillation != nil)")
            XCTAssertTrue(results[0].gradients == results[1].gradients, "\(precision) gradients, distillation \(distillation != nil)")
        }
        }
    }

    func testLayersAboveTheDeepestExitGetNoGradientAndReadyOrder() throws {
        let model = try LlamaModel(config: smallConfig())
        model.initializeRandomly(seed: 9, std: 0.3)
        let batch = randomBatch(B: 1, T: 4, vocab: 23, seed: 10)
        let pass = try SortedPass(model: model, batchSize: 1, sequenceLength: 4)
        var order: [GradientBucket] = []
        pass.run(batch, exits: [WeightedExit(depth: 2, weight: 1)], lossNormalizer: 3) { order.append($0) }
        XCTAssertEqual(order, [.tail, .layer(3), .layer(2), .layer(1), .layer(0), .embedding])
        for l in 2...3 {
            XCTAssertTrue(model.gradients.array(offset: model.layout.layerRange(l).lowerBound,
                                                count: model.layout.layerStride).allSatisfy { $0 == 0 })
        }
        XCTAssertTrue(model.gradients.array(offset: model.layout.layerRange(0).lowerBound,
                                            count: model.layout.layerStride).contains { $0 != 0 })
    }

    func testRandomSamplingIsSeededAndAlwaysTrainsTheLastLayer() throws {
        let objective = try SortedObjective(exits: [2, 4, 6, 8], numLayers: 8, sampling: .random, seed: 42)
        var drawn = Set<Int>()
        for step in 0..<200 {
            let exits = objective.activeExits(step: step)
            XCTAssertEqual(exits, objective.activeExits(step: step), "deterministic in (seed, step)")
            XCTAssertEqual(exits.last?.depth, 8)
            XCTAssertEqual(exits.map(\.weight).reduce(0, +), 1, accuracy: 1e-12)
            XCTAssertLessThanOrEqual(exits.count, 2)
            drawn.insert(exits[0].depth)
        }
        XCTAssertEqual(drawn, [2, 4, 6, 8])
        let other = try SortedObjective(exits: [2, 4, 6, 8], numLayers: 8, sampling: .random, seed: 43)
        XCTAssertNotEqual((0..<50).map { objective.activeExits(step: $0) }, (0..<50).map { other.activeExits(step: $0) })
    }

    func testWeightedMeanAndSumReductions() throws {
        let mean = try SortedObjective(exits: [1, 2], numLayers: 2, reduction: .mean, weights: [1, 3])
        XCTAssertEqual(mean.activeExits(step: 0), [WeightedExit(depth: 1, weight: 0.25), WeightedExit(depth: 2, weight: 0.75)])
        let sum = try SortedObjective(exits: [1, 2], numLayers: 2, reduction: .sum)
        XCTAssertEqual(sum.activeExits(step: 0).map(\.weight), [1, 1])
    }

    /// Every (curriculum, step, scale) of Tests/Fixtures/exit-schedules.json, which
    /// scripts/make_schedule_fixture.py made by running torchtune's own curricula and scales.
    func testSchedulesMatchTorchtunesCode() throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("Fixtures/exit-schedules.json")
        let fixture = try JSONParser.parse(Data(contentsOf: url))
        let exits = fixture["exits"]!.array!.compactMap(\.int), layers = fixture["layers"]!.int!, total = fixture["max_steps"]!.int!
        let cases = fixture["cases"]!.array!
        XCTAssertEqual(cases.count, 45)
        for c in cases {
            let curriculum = ExitCurriculum(rawValue: c["curriculum"]!.string!)!, step = c["step"]!.int!
            for (name, weights) in c["weights"]!.object! {
                let objective = try SortedObjective(exits: exits, numLayers: layers, scale: ExitScale(rawValue: name)!,
                                                    curriculum: curriculum, totalSteps: total)
                let got = objective.activeExits(step: step)
                XCTAssertEqual(got.map(\.depth), c["depths"]!.array!.compactMap(\.int), "\(curriculum) step \(step)")
                // Some of torchtune's scales compute in float32 (torch.ones, torch.Tensor).
                for (g, w) in zip(got, weights.array!.compactMap(\.double)) {
                    XCTAssertEqual(g.weight, w, accuracy: 2e-7, "\(curriculum) step \(step) \(name)")
                }
            }
        }
    }

    func testCurriculaAreTorchtunes() throws {
        let rotational = try SortedObjective(exits: [2, 4], numLayers: 4, scale: .uniform, curriculum: .rotational)
        XCTAssertEqual((0..<4).map { rotational.activeExits(step: $0).map(\.depth) }, [[2, 4], [1, 3, 4], [2, 4], [1, 3, 4]])
        let single = try SortedObjective(exits: [2, 4], numLayers: 4, curriculum: .rotational)
        XCTAssertEqual(single.activeExits(step: 1).map(\.weight), [1.0 / 3, 1.0 / 3, 1.0 / 3])
        let one = try SortedObjective(exits: [2], numLayers: 4, curriculum: .rotational)
        XCTAssertEqual((0..<4).map { one.activeExits(step: $0).map(\.depth) }, [[2, 4], [3, 4], [4], [1, 4]])
        let gradual = try SortedObjective(exits: [2, 4, 6, 8], numLayers: 8, curriculum: .gradual, totalSteps: 100)
        let expected: [Int: [Int]] = [0: [8], 1: [8], 19: [8], 20: [6, 8], 32: [6, 8], 33: [4, 6, 8], 44: [4, 6, 8],
                                      45: [2, 4, 6, 8], 59: [2, 4, 6, 8]]
        for (step, depths) in expected { XCTAssertEqual(gradual.activeExits(step: step).map(\.depth), depths, "step \(step)") }
        // Exits below the last layer only: the last layer still trains (the first step has no other exit).
        let shallow = try SortedObjective(exits: [2, 4], numLayers: 8, curriculum: .gradual, totalSteps: 100)
        XCTAssertEqual(shallow.activeExits(step: 0).map(\.depth), [8])
        XCTAssertEqual(shallow.activeExits(step: 99).map(\.depth), [2, 4, 8])
        XCTAssertThrowsError(try SortedObjective(exits: [2, 4], numLayers: 4, sampling: .random, curriculum: .gradual))
        XCTAssertThrowsError(try SortedObjective(exits: [2, 4], numLayers: 4, weights: [1, 2], curriculum: .rotational))
        XCTAssertThrowsError(try SortedObjective(exits: [2, 4], numLayers: 4, weights: [1, 2], scale: .linear))
        // With reduction sum a scale's weights still sum to 1, as torchtune's do.
        let summed = try SortedObjective(exits: [2, 4], numLayers: 4, reduction: .sum, scale: .linear)
        XCTAssertEqual(summed.activeExits(step: 0).map(\.weight), [1.0 / 3, 2.0 / 3])
    }

    func testWarmupRampsToTheTarget() throws {
        let warmup = ExitWarmup(start: [0, 1], steps: [10, 0], shape: .linear)
        let linear = try SortedObjective(exits: [2, 4], numLayers: 4, reduction: .sum, weights: [2, 1], warmup: warmup)
        XCTAssertEqual([0, 5, 10, 50].map { linear.activeExits(step: $0)[0].weight }, [0, 1, 2, 2])
        XCTAssertEqual([0, 5, 10].map { linear.activeExits(step: $0)[1].weight }, [1, 1, 1], "the full model does not ramp")
        var cosine = warmup
        cosine.shape = .cosine
        let c = try SortedObjective(exits: [2, 4], numLayers: 4, reduction: .sum, weights: [2, 1], warmup: cosine)
        XCTAssertEqual(c.activeExits(step: 2)[0].weight, 2 * (1 - cos(Double.pi * 0.2)) / 2, accuracy: 1e-12)
        XCTAssertEqual(c.activeExits(step: 5)[0].weight, 1, accuracy: 1e-12)
        // mean: the ramped weights are normalised, so at step 0 the full model carries the loss alone.
        let mean = try SortedObjective(exits: [2, 4], numLayers: 4, warmup: warmup)
        XCTAssertEqual(mean.activeExits(step: 0).map(\.weight), [0, 1])
        XCTAssertEqual(mean.activeExits(step: 5).map(\.weight), [0.5 / 1.5, 1 / 1.5])
        XCTAssertThrowsError(try SortedObjective(exits: [2, 4], numLayers: 4, warmup: ExitWarmup(start: [0], steps: [1], shape: .linear)))
    }

    func testBadExitSetsAreRejectedByKey() {
        let cases: [([Int], [Double]?, String)] = [
            ([], nil, "is empty"), ([0, 2], nil, "outside 1...4"), ([2, 5], nil, "outside 1...4"),
            ([3, 2], nil, "sorted and unique"), ([2, 2], nil, "sorted and unique"),
            ([1, 2], [1], "2 exits"), ([1, 2], [1, -1], "positive"),
        ]
        for (exits, weights, message) in cases {
            XCTAssertThrowsError(try SortedObjective(exits: exits, numLayers: 4, weights: weights)) { error in
                let e = error as! ConfigError
                XCTAssertTrue(e.key?.hasPrefix("sorted.") == true, "\(e)")
                XCTAssertTrue(e.message.contains(message), "\(e) should say '\(message)'")
            }
        }
    }

    func testConfigValidationNamesTheKey() throws {
        func check(_ json: String, key: String, file: StaticString = #filePath, line: UInt = #line) {
            XCTAssertThrowsError(try LlamaConfig.decode(json: Data(json.utf8), source: "c.json"), file: file, line: line) { error in
                let e = error as? ConfigError
                XCTAssertEqual(e?.file, "c.json", "\(error)", file: file, line: line)
                XCTAssertEqual(e?.key, key, "\(error)", file: file, line: line)
            }
        }
        let base = #""intermediate_size": 8, "num_hidden_layers": 2, "vocab_size": 10"#
        check(#"{"hidden_size": 16, "num_attention_heads": 4, "num_key_value_heads": 3, \#(base)}"#, key: "num_key_value_heads")
        check(#"{"hidden_size": 12, "num_attention_heads": 0, \#(base)}"#, key: "num_attention_heads")
        check(#"{"hidden_size": 16, "num_attention_heads": 4, "head_dim": 3, \#(base)}"#, key: "head_dim")
        check(#"{"num_attention_heads": 4, \#(base)}"#, key: "hidden_size")
        check(#"{"hidden_size": "big", "num_attention_heads": 4, \#(base)}"#, key: "hidden_size")
        check(#"{"hidden_size": 16, "num_attention_heads": 4, "rms_norm_eps": -1, \#(base)}"#, key: "rms_norm_eps")
        check(#"{"hidden_size": 16, "num_attention_heads": 4, "rope_scaling": {"type": "linear"}, \#(base)}"#, key: "rope_scaling")
        // heads not dividing the hidden size, without an explicit head_dim
        check(#"{"hidden_size": 10, "num_attention_heads": 4, \#(base)}"#, key: "hidden_size")

        let modern = try LlamaConfig.decode(json: Data(#"{"hidden_size": 12, "num_attention_heads": 2, "rope_parameters": {"rope_type": "default", "rope_theta": 500000.0}, "tie_word_embeddings": true, \#(base)}"#.utf8))
        XCTAssertEqual(modern.ropeTheta, 500000)
        XCTAssertEqual(modern.headDim, 6)
        XCTAssertEqual(modern.numKeyValueHeads, 2)
        XCTAssertTrue(modern.tieWordEmbeddings)
        let roundTrip = try LlamaConfig.decode(json: try JSONEncoder().encode(modern))
        XCTAssertEqual(roundTrip, modern)
    }

    func testLayoutIsLayerMajorAndMatchesHFNames() throws {
        let config = smallConfig()
        let layout = ParameterLayout(config: config)
        XCTAssertEqual(layout.tensors.first?.name, "model.embed_tokens.weight")
        XCTAssertEqual(layout.tensors.last?.name, "lm_head.weight")
        XCTAssertEqual(layout.tensor(named: "model.layers.1.self_attn.k_proj.weight")?.shape, [8, 16])
        XCTAssertEqual(layout.tensor(named: "model.layers.1.self_attn.o_proj.weight")?.shape, [16, 16])
        for l in 0..<config.numHiddenLayers {
            let inLayer = layout.tensors.filter { $0.layer == l }
            XCTAssertEqual(inLayer.first?.offset, layout.layerRange(l).lowerBound)
            XCTAssertEqual(inLayer.last.map { $0.offset + $0.count }, layout.layerRange(l).upperBound)
        }
        XCTAssertEqual(layout.tailRange.upperBound, layout.count)
        let tied = ParameterLayout(config: smallConfig(tied: true))
        XCTAssertEqual(tied.head, tied.embedding)
        XCTAssertNil(tied.tensor(named: "lm_head.weight"))
        XCTAssertEqual(tied.count, layout.count - 23 * 16)
    }
}
