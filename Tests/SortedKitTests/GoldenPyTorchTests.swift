// Golden test: the sorted loss, its gradients and three AdamW steps against PyTorch +
// transformers LlamaForCausalLM (fixtures made by scripts/make_golden_fixture.py, computed
// in float64). SortedKit computes in float32, so tolerances are stated per quantity:
//   losses        rtol 1e-5
//   logits        atol 1e-4, rtol 1e-4
//   gradients     atol 1e-6, rtol 1e-4   (gradient magnitudes range 1e-7 … 0.8)
//   after AdamW   atol 1e-5, rtol 1e-4 (elements with gradients under float32's resolution: 2·lr·steps)
import Foundation
import XCTest
@testable import SortedKit
import SortedFormats

let fixturesDirectory = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fixtures")

struct GoldenFixture {
    let file: SafetensorsFile
    let config: LlamaConfig
    let batch: TokenBatch
    let exits: [Int]

    init(_ name: String) throws {
        file = try SafetensorsFile(contentsOf: fixturesDirectory.appendingPathComponent(name))
        config = try LlamaConfig.decode(json: Data(file.metadata["config"]!.utf8), source: name)
        exits = try JSONDecoder().decode([Int].self, from: Data(file.metadata["exits"]!.utf8))
        let shape = try file.entry("input_ids").shape
        batch = TokenBatch(batchSize: shape[0], sequenceLength: shape[1],
                           tokens: try file.integers("input_ids").map { Int32($0) },
                           labels: try file.integers("labels").map { Int32($0) })
    }

    func makeModel() throws -> LlamaModel {
        let model = try LlamaModel(config: config)
        for tensor in model.layout.tensors {
            let values = try file.floats(tensor.name)
            XCTAssertEqual(values.count, tensor.count, tensor.name)
            model.parameters.copy(from: values, offset: tensor.offset)
        }
        return model
    }

    func adamw() throws -> (AdamWSettings, Double) {
        let json = try JSONSerialization.jsonObject(with: Data(file.metadata["adamw"]!.utf8)) as! [String: Double]
        let settings = AdamWSettings(learningRate: json["lr"]!, beta1: json["beta1"]!, beta2: json["beta2"]!,
                                     eps: json["eps"]!, weightDecay: json["weight_decay"]!)
        return (settings, json["max_grad_norm"]!)
    }
}

final class GoldenPyTorchTests: XCTestCase {
    /// golden-gqa-long: T 520, past the attention's query and key tiles, three query heads per KV head.
    static let fixtures = ["golden-gqa-tied.safetensors", "golden-mha-untied.safetensors", "golden-gqa-long.safetensors"]

    func testSortedLossLogitsAndGradientsMatchPyTorch() throws {
        for name in Self.fixtures {
            let fixture = try GoldenFixture(name)
            let model = try fixture.makeModel()
            let objective = try SortedObjective(exits: fixture.exits, numLayers: fixture.config.numHiddenLayers)
            let pass = try SortedPass(model: model, batchSize: fixture.batch.batchSize,
                                      sequenceLength: fixture.batch.sequenceLength, headChunkRows: 5)
            let losses = pass.run(fixture.batch, exits: objective.activeExits(step: 0),
                                  lossNormalizer: Double(fixture.batch.labelledCount))
            var total = 0.0
            for loss in losses {
                let expected = try fixture.file.doubles("loss.exit_\(loss.depth)")[0]
                XCTAssertEqual(loss.mean, expected, accuracy: 1e-5 * expected, "\(name) exit \(loss.depth) loss")
                total += loss.mean / Double(losses.count)
            }
            XCTAssertEqual(total, try fixture.file.doubles("loss.total")[0], accuracy: 1e-5 * total, "\(name) total")
            for tensor in model.layout.tensors {
                assertClose(model.gradients.array(offset: tensor.offset, count: tensor.count),
                            try fixture.file.floats("grad." + tensor.name), atol: 1e-6, rtol: 1e-4, "\(name) grad \(tensor.name)")
            }
            for k in fixture.exits {
                assertClose(pass.logits(fixture.batch, depth: k), try fixture.file.floats("logits.exit_\(k)"),
                            atol: 1e-4, rtol: 1e-4, "\(name) logits exit \(k)")
            }
        }
    }

    /// scripts/make_distill_fixture.py: the same start weights and batch, torchtune's linear
    /// exit weights and self-distillation from exit 4 (α 0.5, τ 2, the teacher detached).
    func testWeightedDistilledLossAndGradientsMatchPyTorch() throws {
        for name in Self.fixtures {
            let fixture = try GoldenFixture(name)
            let reference = try SafetensorsFile(contentsOf: fixturesDirectory.appendingPathComponent(
                name.replacingOccurrences(of: "golden-", with: "golden-distill-")))
            let distillation = Distillation(weight: Double(reference.metadata["alpha"]!)!,
                                            temperature: Double(reference.metadata["temperature"]!)!)
            let model = try fixture.makeModel()
            let objective = try SortedObjective(exits: fixture.exits, numLayers: fixture.config.numHiddenLayers,
                                                scale: ExitScale(rawValue: reference.metadata["scale"]!)!, distillation: distillation)
            let exits = objective.activeExits(step: 0)
            let n = Double(fixture.batch.labelledCount)
            let pass = try SortedPass(model: model, batchSize: fixture.batch.batchSize,
                                      sequenceLength: fixture.batch.sequenceLength, headChunkRows: 5)
            let losses = pass.run(fixture.batch, exits: exits, lossNormalizer: n, distillation: distillation)
            var total = 0.0
            for (exit, loss) in zip(exits, losses) {
                let expected = try reference.doubles("distill.loss.exit_\(loss.depth)")[0]
                XCTAssertEqual(loss.mean, expected, accuracy: 1e-5 * expected, "\(name) exit \(loss.depth) loss")
                if exit.depth < fixture.config.numHiddenLayers {
                    let kl = try reference.doubles("distill.kl.exit_\(loss.depth)")[0]
                    XCTAssertEqual(loss.klDivergence / n, kl, accuracy: 1e-5 * kl, "\(name) exit \(loss.depth) KL")
                }
                total += exit.weight * loss.mean + distillation.weight * distillation.temperature * distillation.temperature * loss.klDivergence / n
            }
            let expectedTotal = try reference.doubles("distill.loss.total")[0]
            XCTAssertEqual(total, expectedTotal, accuracy: 1e-5 * expectedTotal, "\(name) total")
            for tensor in model.layout.tensors {
                assertClose(model.gradients.array(offset: tensor.offset, count: tensor.count),
                            try reference.floats("distill.grad." + tensor.name), atol: 1e-6, rtol: 1e-4, "\(name) grad \(tensor.name)")
            }
        }
    }

    func testThreeAdamWStepsWithClippingMatchPyTorch() throws {
        for name in Self.fixtures {
            let fixture = try GoldenFixture(name)
            let model = try fixture.makeModel()
            let (settings, maxNorm) = try fixture.adamw()
            let optimizer = try AdamW(layout: model.layout, settings: settings)
            let objective = try SortedObjective(exits: fixture.exits, numLayers: fixture.config.numHiddenLayers)
            let pass = try SortedPass(model: model, batchSize: fixture.batch.batchSize,
                                      sequenceLength: fixture.batch.sequenceLength)
            for step in 1...3 {
                model.zeroGradients()
                let losses = pass.run(fixture.batch, exits: objective.activeExits(step: step),
                                      lossNormalizer: Double(fixture.batch.labelledCount))
                let total = losses.map(\.mean).reduce(0, +) / Double(losses.count)
                let expectedLoss = try fixture.file.doubles("adamw.step_loss_\(step)")[0]
                XCTAssertEqual(total, expectedLoss, accuracy: 1e-5 * expectedLoss, "\(name) step \(step) loss")
                let norm = gradientNorm(model.gradients)
                let expectedNorm = try fixture.file.doubles("adamw.grad_norm_\(step)")[0]
                XCTAssertEqual(norm, expectedNorm, accuracy: 1e-4 * expectedNorm, "\(name) step \(step) grad norm")
                // Clipping as the trainer applies it: folded into the AdamW pass.
                optimizer.step(step, parameters: model.parameters, gradients: model.gradients, learningRate: settings.learningRate,
                               gradientScale: clippingFactor(norm: norm, maxNorm: maxNorm))
            }
            // AdamW divides by √v, so an element whose gradient is below float32's resolution
            // of the sum that makes it (|g| < 1e-5 of its tensor's largest) moves by a
            // rounding-decided ±lr per step: such elements may differ by up to 2·lr·steps.
            // Every other element holds to atol 1e-5 + rtol 1e-4.
            let noiseMoves = 2 * settings.learningRate * 3
            for tensor in model.layout.tensors {
                let actual = model.parameters.array(offset: tensor.offset, count: tensor.count)
                let expected = try fixture.file.floats("adamw.param." + tensor.name)
                let gradient = try fixture.file.floats("grad." + tensor.name)
                let floor = 1e-5 * Double(gradient.map { abs($0) }.max()!)
                var worst = (excess: 0.0, index: -1)
                for i in 0..<expected.count {
                    let allowed = 1e-5 + 1e-4 * abs(Double(expected[i])) + (abs(Double(gradient[i])) < floor ? noiseMoves : 0)
                    let excess = abs(Double(actual[i]) - Double(expected[i])) - allowed
                    if excess > worst.excess { worst = (excess, i) }
                }
                if worst.index >= 0 {
                    XCTFail("\(name) after 3 steps \(tensor.name): element \(worst.index) is \(actual[worst.index]), expected \(expected[worst.index]) (gradient \(gradient[worst.index]))")
                }
            }
        }
    }
}
