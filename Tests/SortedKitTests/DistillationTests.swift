// Self-distillation from the deepest exit inside the fused head pass: its KL values against a
// plain Double computation from each exit's logits, its cross-entropies unchanged, and the
// gradient of the whole distilled loss (teacher detached) against finite differences.
import Foundation
import XCTest
@testable import SortedKit

final class DistillationTests: XCTestCase {
    /// softmax(z/τ) of one row, in Double.
    func softened(_ z: ArraySlice<Float>, _ tau: Double) -> [Double] {
        let m = Double(z.max()!)
        let e = z.map { exp((Double($0) - m) / tau) }
        let s = e.reduce(0, +)
        return e.map { $0 / s }
    }

    /// Σ_rows KL(p ‖ q) over the labelled rows, p from `teacher`'s logits and q from `student`'s.
    func kl(teacher: [Float], student: [Float], rows: [Int], vocab V: Int, tau: Double) -> Double {
        rows.reduce(0) { total, r in
            let p = softened(teacher[r * V..<(r + 1) * V], tau), q = softened(student[r * V..<(r + 1) * V], tau)
            return total + zip(p, q).reduce(0) { $0 + ($1.0 > 0 ? $1.0 * log($1.0 / $1.1) : 0) }
        }
    }

    /// Σ_rows −log softmax(z)[target] over the labelled rows, in Double.
    func nll(_ logits: [Float], batch: TokenBatch, rows: [Int], vocab V: Int) -> Double {
        rows.reduce(0) { $0 - log(softened(logits[$1 * V..<($1 + 1) * V], 1)[Int(batch.targets[$1])]) }
    }

    func testKLAndCrossEntropiesMatchAPlainComputation() throws {
        for tau in [1.0, 2.0] {
            let model = try LlamaModel(config: smallConfig())
            model.initializeRandomly(seed: 11, std: 0.3)
            let batch = randomBatch(B: 2, T: 6, vocab: 23, seed: 12)
            let pass = try SortedPass(model: model, batchSize: 2, sequenceLength: 6)
            let exits = [WeightedExit(depth: 1, weight: 0.2), WeightedExit(depth: 3, weight: 0.3), WeightedExit(depth: 4, weight: 0.5)]
            let plain = pass.run(batch, exits: exits, lossNormalizer: 8, computeGradients: false)
            let distilled = pass.run(batch, exits: exits, lossNormalizer: 8, computeGradients: false,
                                     distillation: Distillation(weight: 0.7, temperature: tau))
            let rows = batch.targets.indices.filter { batch.targets[$0] >= 0 }
            let teacher = pass.logits(batch, depth: 4)
            for (p, d) in zip(plain, distilled) {
                XCTAssertEqual(d.negativeLogLikelihood, p.negativeLogLikelihood, accuracy: 1e-5 * p.negativeLogLikelihood)
                let expected = d.depth == 4 ? 0 : kl(teacher: teacher, student: pass.logits(batch, depth: d.depth), rows: rows, vocab: 23, tau: tau)
                XCTAssertEqual(d.klDivergence, expected, accuracy: 1e-5 + 1e-4 * expected, "τ \(tau) exit \(d.depth)")
            }
            XCTAssertGreaterThan(distilled[0].klDivergence, 0)
        }
    }

    /// The distilled loss with the teacher's distribution frozen at the start weights:
    /// Σ_e w_e·NLL_e/n + α·τ²·Σ_{e<deepest} KL(p_teacher⁰ ‖ q_e)/n.
    func testDistilledGradientsMatchFiniteDifferencesWithTheTeacherDetached() throws {
        for (tied, tau) in [(false, 2.0), (true, 1.0)] {
            let model = try LlamaModel(config: smallConfig(tied: tied))
            model.initializeRandomly(seed: 13, std: 0.3)
            let batch = randomBatch(B: 2, T: 6, vocab: 23, seed: 14)
            let pass = try SortedPass(model: model, batchSize: 2, sequenceLength: 6)
            let exits = [WeightedExit(depth: 1, weight: 0.5), WeightedExit(depth: 3, weight: 1), WeightedExit(depth: 4, weight: 2)]
            let alpha = 0.7, normalizer = Double(batch.labelledCount)
            let rows = batch.targets.indices.filter { batch.targets[$0] >= 0 }
            let frozenTeacher = pass.logits(batch, depth: 4)
            func loss() -> Double {
                exits.reduce(0) { total, exit in
                    let logits = pass.logits(batch, depth: exit.depth)
                    let ce = exit.weight * nll(logits, batch: batch, rows: rows, vocab: 23)
                    let distill = exit.depth == 4 ? 0 : alpha * tau * tau * kl(teacher: frozenTeacher, student: logits, rows: rows, vocab: 23, tau: tau)
                    return total + (ce + distill) / normalizer
                }
            }
            model.zeroGradients()
            pass.run(batch, exits: exits, lossNormalizer: normalizer, distillation: Distillation(weight: alpha, temperature: tau))
            let analytic = model.gradients.array()
            for tensor in model.layout.tensors {
                let indices = sampleIndices(tensor.count, count: 5, seed: UInt64(tensor.offset) + 1).map { $0 + tensor.offset }
                checkFiniteDifferences(model.parameters, indices: indices, analytic: analytic, step: 5e-3, rtol: 3e-2,
                                       what: "\(tied ? "tied" : "untied") τ \(tau) \(tensor.name)", loss: loss)
            }
        }
    }

    func testNoDistillationWithOneExitOrZeroWeight() throws {
        let model = try LlamaModel(config: smallConfig())
        model.initializeRandomly(seed: 15, std: 0.3)
        let batch = randomBatch(B: 1, T: 6, vocab: 23, seed: 16)
        let pass = try SortedPass(model: model, batchSize: 1, sequenceLength: 6)
        let one = [WeightedExit(depth: 4, weight: 1)]
        XCTAssertEqual(pass.run(batch, exits: one, lossNormalizer: 4, computeGradients: false, distillation: Distillation(weight: 1, temperature: 2)),
                       pass.run(batch, exits: one, lossNormalizer: 4, computeGradients: false))
        let two = [WeightedExit(depth: 2, weight: 1), WeightedExit(depth: 4, weight: 1)]
        XCTAssertEqual(pass.run(batch, exits: two, lossNormalizer: 4, computeGradients: false, distillation: Distillation(weight: 0, temperature: 2)),
                       pass.run(batch, exits: two, lossNormalizer: 4, computeGradients: false))
    }
}
