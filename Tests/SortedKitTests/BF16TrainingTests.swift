// train.precision bf16 against PyTorch's float64 golden values (scripts/make_golden_fixture.py):
// the projections' and the head's GEMMs take bfloat16 inputs, which keep 8 significand bits, so
// each input is off by up to 2⁻⁸ ≈ 0.4% relatively; attention reads q|k|v and SwiGLU the
// gate|up projection as their bfloat16 rounding too (kept so, as under autocast), and attention's
// tile products round P, dO and dS as well. Such errors are independent across a dot
// product's terms and mostly average out; through the layers, forward and backward, they add
// up to a fraction of a percent of a loss and a few percent of a gradient. Stated tolerances:
//   per-exit losses   rtol 5e-3  (measured ≤ 7.6e-4 on this Zen 4)
//   gradients         relative L2 error per tensor ≤ 4e-2  (measured ≤ 1.9e-2)
// The float32 path meets 1e-5 and 1e-4 on the same fixtures (GoldenPyTorchTests), so these
// checks also show that bf16 is really in use: they could not fail the float32 path, but a
// bf16 path that rounded nothing would show float32's errors, far below the measured ones.
import XCTest
@testable import SortedKit

final class BF16TrainingTests: XCTestCase {
    override func setUpWithError() throws {
        let hardware = BFloat16.hardware
        try XCTSkipUnless(hardware.native, "this CPU (oneDNN: \(hardware.isa)) has no bf16 arithmetic")
    }

    func testLossesAndGradientsAgainstPyTorch() throws {
        var worstLoss = 0.0, worstGradient = 0.0
        for name in GoldenPyTorchTests.fixtures {
            let fixture = try GoldenFixture(name)
            let model = try fixture.makeModel()
            let objective = try SortedObjective(exits: fixture.exits, numLayers: fixture.config.numHiddenLayers)
            let pass = try SortedPass(model: model, batchSize: fixture.batch.batchSize,
                                      sequenceLength: fixture.batch.sequenceLength, headChunkRows: 5, precision: .bf16)
            let losses = pass.run(fixture.batch, exits: objective.activeExits(step: 0),
                                  lossNormalizer: Double(fixture.batch.labelledCount))
            for loss in losses {
                let expected = try fixture.file.doubles("loss.exit_\(loss.depth)")[0]
                let error = abs(loss.mean - expected) / expected
                worstLoss = max(worstLoss, error)
                XCTAssertLessThanOrEqual(error, 5e-3, "\(name) exit \(loss.depth) loss \(loss.mean), PyTorch \(expected)")
            }
            for tensor in model.layout.tensors {
                let actual = model.gradients.array(offset: tensor.offset, count: tensor.count)
                let expected = try fixture.file.floats("grad." + tensor.name)
                var difference = 0.0, norm = 0.0
                for (a, e) in zip(actual, expected) {
                    difference += Double(a - e) * Double(a - e)
                    norm += Double(e) * Double(e)
                }
                guard norm > 0 else { continue }
                let error = (difference / norm).squareRoot()
                worstGradient = max(worstGradient, error)
                XCTAssertLessThanOrEqual(error, 4e-2, "\(name) grad \(tensor.name): relative L2 error")
            }
        }
        // Rounding happened: float32 would be within 1e-4 (see the header).
        XCTAssertGreaterThan(worstGradient, 1e-4, "bf16 gradients as exact as float32's: were the inputs rounded?")
        print("bf16 against PyTorch float64: worst loss rtol \(worstLoss), worst gradient relative L2 \(worstGradient)")
    }

    /// The bf16 GEMM funnel against sgemm on the rounded inputs, for every layout the pass uses
    /// (NT forward, NN input gradient, TN weight gradient), padded leading dimensions, overwrite
    /// and accumulate: the operands' stored extents are rounded, no more and no less.
    func testMatrixMultiplyRoundsBothOperands() throws {
        let (m, n, k, pad) = (5, 6, 7, 2)
        let matmul = try MatrixMultiply(precision: .bf16)
        for (transposeA, transposeB) in [(false, true), (false, false), (true, false)] {
            let (aRows, aColumns) = transposeA ? (k, m) : (m, k)
            let (bRows, bColumns) = transposeB ? (n, k) : (k, n)
            let lda = aColumns + pad, ldb = bColumns + pad, ldc = n + pad
            let a = randomArray(aRows * lda, seed: 1), b = randomArray(bRows * ldb, seed: 2), c0 = randomArray(m * ldc, seed: 3)
            for beta: Float in [0, 1] {
                var actual = c0, expected = c0
                matmul.gemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb,
                            beta: beta, c: &actual, ldc: ldc)
                BLAS.gemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k,
                          a: a.map { BFloat16.float(BFloat16.round($0)) }, lda: lda,
                          b: b.map { BFloat16.float(BFloat16.round($0)) }, ldb: ldb, beta: beta, c: &expected, ldc: ldc)
                assertClose(actual, expected, atol: 1e-5, rtol: 1e-5, "\(transposeA ? "T" : "N")\(transposeB ? "T" : "N") beta \(beta)")
            }
        }
    }

    /// A weight is rounded on its first GEMM after `parametersChanged` and reused until the next
    /// one: a weight changed in between is not seen (the contract), and is once it is declared.
    func testWeightsAreRoundedOncePerPass() throws {
        let (m, n, k) = (3, 4, 5)
        let matmul = try MatrixMultiply(precision: .bf16)
        let parameters = FloatBuffer(count: 2 + n * k)
        for i in 0..<parameters.count { parameters[i] = Float(i % 9) * 0.37 - 1.1 }
        matmul.roundWeightsOncePerPass(of: parameters.pointer, count: parameters.count)
        let a = randomArray(m * k, seed: 4)
        func product() -> [Float] {
            var c = [Float](repeating: 0, count: m * n)
            matmul.gemm(transposeA: false, transposeB: true, m: m, n: n, k: k, a: a, lda: k, b: parameters.pointer + 2, ldb: k,
                        beta: 0, c: &c, ldc: n)
            return c
        }
        func reference() -> [Float] {
            var c = [Float](repeating: 0, count: m * n)
            BLAS.gemm(transposeA: false, transposeB: true, m: m, n: n, k: k, a: a.map { BFloat16.float(BFloat16.round($0)) }, lda: k,
                      b: parameters.array(offset: 2, count: n * k).map { BFloat16.float(BFloat16.round($0)) }, ldb: k,
                      beta: 0, c: &c, ldc: n)
            return c
        }
        let before = product()
        assertClose(before, reference(), atol: 1e-5, rtol: 1e-5, "first pass")
        for i in 2..<parameters.count { parameters[i] *= -2 }
        XCTAssertEqual(product(), before, "a weight is rounded once per pass")
        matmul.parametersChanged()
        assertClose(product(), reference(), atol: 1e-5, rtol: 1e-5, "after parametersChanged")
    }

    /// Three AdamW steps in bf16 through one pass, whose weight copies must follow every update,
    /// against a fresh pass (fresh copies) at every step: bit for bit.
    func testRoundedWeightsFollowEveryOptimizerStep() throws {
        let fixture = try GoldenFixture(GoldenPyTorchTests.fixtures[0])
        let (settings, _) = try fixture.adamw()
        let objective = try SortedObjective(exits: fixture.exits, numLayers: fixture.config.numHiddenLayers)
        func train(freshPassEachStep: Bool) throws -> (losses: [[Double]], parameters: [Float]) {
            let model = try fixture.makeModel()
            let optimizer = try AdamW(layout: model.layout, settings: settings)
            func makePass() throws -> SortedPass {
                try SortedPass(model: model, batchSize: fixture.batch.batchSize, sequenceLength: fixture.batch.sequenceLength,
                               headChunkRows: 5, precision: .bf16)
            }
            var pass = try makePass()
            var losses: [[Double]] = []   // per step, per exit
            for step in 1...3 {
                if freshPassEachStep { pass = try makePass() }
                model.zeroGradients()
                losses.append(pass.run(fixture.batch, exits: objective.activeExits(step: step),
                                       lossNormalizer: Double(fixture.batch.labelledCount)).map(\.mean))
                optimizer.step(step, parameters: model.parameters, gradients: model.gradients, learningRate: 10 * settings.learningRate)
            }
            return (losses, model.parameters.array(offset: 0, count: model.parameters.count))
        }
        let reused = try train(freshPassEachStep: false), fresh = try train(freshPassEachStep: true)
        XCTAssertEqual(reused.losses, fresh.losses)
        XCTAssertTrue(reused.parameters == fresh.parameters, "the weights after three steps differ from a fresh pass's")
        XCTAssertNotEqual(reused.losses[0], reused.losses[2], "the steps moved the weights (every exit's loss, step 1 against step 3)")
    }
}
