// Finite-difference checks of every kernel's backward: for a random cotangent dy the
// scalar Σ dy·y(x) must change as the backward's gradients say.
import Foundation
import CQuant
import XCTest
@testable import SortedKit

final class KernelGradientTests: XCTestCase {
    func testRMSNormBackward() {
        let N = 3, D = 20
        let xBuf = buffer(randomArray(N * D, seed: 1)), wBuf = buffer(randomArray(D, seed: 2, scale: 0.3, offset: 1))
        let x = xBuf.pointer, w = wBuf.pointer
        let dy = randomArray(N * D, seed: 3)
        var y = [Float](repeating: 0, count: N * D), inv = [Float](repeating: 0, count: N)
        func loss() -> Double {
            RMSNorm.forward(x: x, weight: w, y: &y, inverseRMS: &inv, rows: N, dim: D, eps: 1e-5)
            return weightedSum(y, dy)
        }
        _ = loss()
        var dx = [Float](repeating: 7, count: N * D), dw = [Float](repeating: 0, count: D)
        RMSNorm.backward(dy: dy, x: x, weight: w, inverseRMS: inv, dx: &dx, dWeight: &dw, rows: N, dim: D, accumulate: false)
        checkFiniteDifferences(xBuf, indices: Array(0..<(N * D)), analytic: dx, what: "dx", loss: loss)
        checkFiniteDifferences(wBuf, indices: Array(0..<D), analytic: dw, what: "dweight", loss: loss)
        // accumulate adds to what is there
        var dx2 = [Float](repeating: 1, count: N * D), dw2 = [Float](repeating: 0, count: D)
        RMSNorm.backward(dy: dy, x: x, weight: w, inverseRMS: inv, dx: &dx2, dWeight: &dw2, rows: N, dim: D, accumulate: true)
        assertClose(dx2, dx.map { $0 + 1 }, atol: 1e-6, rtol: 1e-6, "accumulated dx")
    }

    func testRotaryInverseIsTranspose() {
        let T = 5, heads = 3, Dh = 8, stride = heads * Dh + 4
        let rope = RotaryEmbedding(headDim: Dh, maxLength: T, theta: 10000)
        var x = randomArray(T * stride, seed: 4)
        let y = randomArray(T * stride, seed: 5)
        let original = x
        rope.apply(&x, rows: T, heads: heads, stride: stride, inverse: false)
        var yt = y
        rope.apply(&yt, rows: T, heads: heads, stride: stride, inverse: true)
        // <R x, y> == <x, Rᵀ y>, and values past the heads are untouched
        XCTAssertEqual(weightedSum(x, y), weightedSum(original, yt), accuracy: 1e-4)
        for t in 0..<T { for i in (heads * Dh)..<stride { XCTAssertEqual(x[t * stride + i], original[t * stride + i]) } }
        // position 0 is the identity; the rotation keeps each pair's norm
        for i in 0..<(heads * Dh) { XCTAssertEqual(x[i], original[i], accuracy: 1e-6) }
        var inverse = x
        rope.apply(&inverse, rows: T, heads: heads, stride: stride, inverse: true)
        assertClose(inverse, original, atol: 1e-5, rtol: 1e-5, "R⁻¹R x")
    }

    func testSwiGLUBackward() {
        let N = 2, F = 11
        let guBuf = buffer(randomArray(N * 2 * F, seed: 6, scale: 2)), gu = guBuf.pointer
        let dAct = randomArray(N * F, seed: 7)
        var act = [Float](repeating: 0, count: N * F)
        func loss() -> Double {
            SwiGLU.forward(gateUp: gu, act: &act, rows: N, width: F)
            return weightedSum(act, dAct)
        }
        _ = loss()
        var dgu = [Float](repeating: 0, count: N * 2 * F)
        SwiGLU.backward(dAct: dAct, gateUp: gu, dGateUp: &dgu, rows: N, width: F)
        checkFiniteDifferences(guBuf, indices: Array(0..<(N * 2 * F)), analytic: dgu,
                                   step: 1e-2, what: "dgateUp", loss: loss)
    }

    func testCausalGroupedQueryAttentionBackward() {
        // Tiles of 2 queries and 4 keys, so rows straddle several tiles and the diagonal.
        let B = 2, T = 7, H = 4, Hkv = 2, Dh = 8
        let attention = CausalAttention(heads: H, kvHeads: Hkv, headDim: Dh, sequenceLength: T, queryTile: 2, keyTile: 4)
        let W = attention.qkvWidth, A = attention.outWidth
        let qkvBuf = buffer(randomArray(B * T * W, seed: 8)), qkv = qkvBuf.pointer
        let dOut = randomArray(B * T * A, seed: 9)
        var lse = [Float](repeating: 0, count: attention.savedCount(batch: B)), out = [Float](repeating: 0, count: B * T * A)
        var scratch = [Float](repeating: 0, count: attention.scratchCount(batch: B))
        func loss() -> Double {
            attention.forward(qkv: qkv, logSumExp: &lse, out: &out, scratch: &scratch, batch: B)
            return weightedSum(out, dOut)
        }
        _ = loss()
        var dqkv = [Float](repeating: 3, count: B * T * W)
        attention.backward(dOut: dOut, qkv: qkv, out: out, logSumExp: lse, dQKV: &dqkv, scratch: &scratch, batch: B)
        checkFiniteDifferences(qkvBuf, indices: sampleIndices(B * T * W, count: 120, seed: 10),
                                   analytic: dqkv, what: "dqkv", loss: loss)
    }

    /// Attention written out in Double: every row's softmax over its visible keys, and the
    /// textbook backward. Returns out, the log-sum-exps and dqkv.
    func plainAttention(_ a: CausalAttention, qkv: [Float], dOut: [Float], batch B: Int) -> (out: [Double], lse: [Double], dqkv: [Double]) {
        let T = a.sequenceLength, H = a.heads, Hkv = a.kvHeads, Dh = a.headDim, W = a.qkvWidth, A = a.outWidth
        var refOut = [Double](repeating: 0, count: B * T * A), refLSE = [Double](repeating: 0, count: B * H * T)
        var refD = [Double](repeating: 0, count: B * T * W)
        let scale = 1 / Double(Dh).squareRoot()
        func x(_ b: Int, _ t: Int, _ column: Int) -> Double { Double(qkv[(b * T + t) * W + column]) }
        for b in 0..<B {
            for h in 0..<H {
                let g = h / (H / Hkv), qc = h * Dh, kc = (H + g) * Dh, vc = (H + Hkv + g) * Dh
                for i in 0..<T {
                    let scores = (0...i).map { j in scale * (0..<Dh).reduce(0.0) { $0 + x(b, i, qc + $1) * x(b, j, kc + $1) } }
                    let m = scores.max()!, sum = scores.reduce(0.0) { $0 + Foundation.exp($1 - m) }
                    let p = scores.map { Foundation.exp($0 - m) / sum }
                    refLSE[(b * H + h) * T + i] = m + Foundation.log(sum)
                    let dO = (0..<Dh).map { Double(dOut[(b * T + i) * A + h * Dh + $0]) }
                    let dP = (0...i).map { j in (0..<Dh).reduce(0.0) { $0 + dO[$1] * x(b, j, vc + $1) } }
                    let rowDot = zip(p, dP).reduce(0.0) { $0 + $1.0 * $1.1 }
                    for j in 0...i {
                        let dS = p[j] * (dP[j] - rowDot)
                        for d in 0..<Dh {
                            refOut[(b * T + i) * A + h * Dh + d] += p[j] * x(b, j, vc + d)
                            refD[(b * T + i) * W + qc + d] += scale * dS * x(b, j, kc + d)
                            refD[(b * T + j) * W + kc + d] += scale * dS * x(b, i, qc + d)
                            refD[(b * T + j) * W + vc + d] += p[j] * dO[d]
                        }
                    }
                }
            }
        }
        return (refOut, refLSE, refD)
    }

    /// One forward and backward of `a`: out, the log-sum-exps and dqkv.
    func tiledAttention(_ a: CausalAttention, qkv: [Float], dOut: [Float], batch B: Int) -> (out: [Float], lse: [Float], dqkv: [Float]) {
        var lse = [Float](repeating: 0, count: a.savedCount(batch: B)), out = [Float](repeating: 0, count: B * a.sequenceLength * a.outWidth)
        var scratch = [Float](repeating: .nan, count: a.scratchCount(batch: B))
        var dqkv = [Float](repeating: 0, count: B * a.sequenceLength * a.qkvWidth)
        a.forward(qkv: qkv, logSumExp: &lse, out: &out, scratch: &scratch, batch: B)
        a.backward(dOut: dOut, qkv: qkv, out: out, logSumExp: lse, dQKV: &dqkv, scratch: &scratch, batch: B)
        return (out, lse, dqkv)
    }

    /// The tiled online softmax against attention written out in Double, for tilings that do
    /// and do not divide T, a group of three query heads per key/value head, and T past one
    /// key tile.
    func testTiledAttentionMatchesPlainAttention() {
        let B = 2, H = 6, Hkv = 2, Dh = 16
        for (T, queryTile, keyTile) in [(37, 4, 8), (37, 8, 8), (37, 64, 256), (300, 16, 64), (300, 64, 256)] {
            let attention = CausalAttention(heads: H, kvHeads: Hkv, headDim: Dh, sequenceLength: T,
                                            queryTile: queryTile, keyTile: keyTile)
            let qkv = randomArray(B * T * attention.qkvWidth, seed: 21), dOut = randomArray(B * T * attention.outWidth, seed: 22)
            let (out, lse, dqkv) = tiledAttention(attention, qkv: qkv, dOut: dOut, batch: B)
            let reference = plainAttention(attention, qkv: qkv, dOut: dOut, batch: B)
            let what = "T \(T), tiles \(queryTile)×\(keyTile)"
            assertClose(out, reference.out.map(Float.init), atol: 1e-5, rtol: 1e-4, "\(what): out")
            assertClose(lse, reference.lse.map(Float.init), atol: 1e-5, rtol: 1e-5, "\(what): log-sum-exp")
            assertClose(dqkv, reference.dqkv.map(Float.init), atol: 1e-5, rtol: 1e-4, "\(what): dqkv")
        }
    }

    /// bf16 tiles (bfloat16 operands, float32 accumulation) against the same Double attention of
    /// q|k|v already in bfloat16 (as the pass keeps them), on both CQuant paths. The scores are
    /// then exact products summed in float32, so the log-sum-exps are float32-close; P, dO and
    /// dS are rounded to bfloat16 (relative error ≤ 2^-8 each, about 2^-9 on average) before
    /// their products, which leaves out and dqkv a few 2^-9 off in L2 norm: measured 1.1e-3 and
    /// 2.8e-3, asserted below 6e-3 (an empirical bound with twice the margin, not a proof: dS
    /// = P ⊙ (dP − D) can cancel). Odd tiles and
    /// lengths exercise odd k (the kernel's pad column) and partial key tiles; the tiles must
    /// differ from float32 tiles (the bf16 path ran).
    func testBF16TilesMatchPlainAttention() {
        let B = 2, H = 6, Hkv = 2, Dh = 16
        defer { cq_set_portable(0) }
        for (T, queryTile, keyTile) in [(37, 4, 8), (37, 5, 15), (300, 16, 64), (300, 64, 256)] {
            let bf16 = CausalAttention(heads: H, kvHeads: Hkv, headDim: Dh, sequenceLength: T,
                                       queryTile: queryTile, keyTile: keyTile, precision: .bf16)
            let fp32 = CausalAttention(heads: H, kvHeads: Hkv, headDim: Dh, sequenceLength: T,
                                       queryTile: queryTile, keyTile: keyTile)
            let qkv = randomArray(B * T * bf16.qkvWidth, seed: 23).map { BFloat16.float(BFloat16.round($0)) }
            let dOut = randomArray(B * T * bf16.outWidth, seed: 24)
            let reference = plainAttention(bf16, qkv: qkv, dOut: dOut, batch: B)
            for portable in [false, true] {
                cq_set_portable(portable ? 1 : 0)
                let tiles = tiledAttention(bf16, qkv: qkv, dOut: dOut, batch: B)
                let what = "\(String(cString: cq_bf16_kernel_name())) T \(T), tiles \(queryTile)×\(keyTile)"
                assertClose(tiles.lse, reference.lse.map(Float.init), atol: 1e-5, rtol: 1e-5, "\(what): log-sum-exp")
                XCTAssertLessThan(relativeL2(tiles.out, reference.out), 6e-3, "\(what): out")
                XCTAssertLessThan(relativeL2(tiles.dqkv, reference.dqkv), 6e-3, "\(what): dqkv")
                let float32 = tiledAttention(fp32, qkv: qkv, dOut: dOut, batch: B)
                XCTAssertGreaterThan(relativeL2(tiles.out, float32.out.map(Double.init)), 1e-5, "\(what): bf16 tiles gave float32's out")
                XCTAssertGreaterThan(relativeL2(tiles.dqkv, float32.dqkv.map(Double.init)), 1e-5, "\(what): bf16 tiles gave float32's dqkv")
            }
        }
    }

    private func relativeL2(_ x: [Float], _ reference: [Double]) -> Double {
        let error = zip(x, reference).reduce(0.0) { $0 + (Double($1.0) - $1.1) * (Double($1.0) - $1.1) }
        return (error / reference.reduce(0.0) { $0 + $1 * $1 }).squareRoot()
    }

    func testEmbeddingBackwardScatterAdds() {
        let V = 5, D = 3
        let tokens: [Int32] = [1, 3, 1]
        let dOut = randomArray(3 * D, seed: 11)
        var dTable = [Float](repeating: 1, count: V * D)
        Embedding.backward(tokens: tokens, dOut: dOut, dTable: &dTable, rows: 3, dim: D)
        for i in 0..<D {
            XCTAssertEqual(dTable[1 * D + i], 1 + dOut[i] + dOut[2 * D + i], accuracy: 1e-6)
            XCTAssertEqual(dTable[3 * D + i], 1 + dOut[D + i], accuracy: 1e-6)
            XCTAssertEqual(dTable[0 * D + i], 1)
        }
    }

    func testFusedHeadLossBackwardAndChunking() {
        let N = 7, D = 12, V = 19
        let hiddenBuf = buffer(randomArray(N * D, seed: 12)), hidden = hiddenBuf.pointer
        let normWBuf = buffer(randomArray(D, seed: 13, scale: 0.2, offset: 1)), normW = normWBuf.pointer
        let headWBuf = buffer(randomArray(V * D, seed: 14, scale: 0.5)), headW = headWBuf.pointer
        let targets: [Int32] = [3, -100, 18, 0, -100, 7, 7]
        let labelled: [Int32] = [0, 2, 3, 5, 6]
        var dHidden = [Float](repeating: 0, count: N * D)
        var dNorm = [Float](repeating: 0, count: D), dHead = [Float](repeating: 0, count: V * D)
        for chunk in [1, 2, 64] {
            let head = FusedHeadLoss(vocab: V, dim: D, stackRows: chunk, matmul: MatrixMultiply())
            func loss() -> Double {
                var d2 = dHidden, d3 = dNorm, d4 = dHead
                return d2.withUnsafeMutableBufferPointer { dh in
                    head.run([ExitTail(hidden: hidden, dHidden: dh.baseAddress!, gradientScale: 1)], targets: targets,
                             labelled: labelled, normWeight: normW, headWeight: headW, eps: 1e-5, rows: N,
                             distillation: nil, backward: false, dNormWeight: &d3, dHeadWeight: &d4)[0].nll
                }
            }
            // Independent forward: log-softmax in double over explicit logits.
            var reference = 0.0
            for r in labelled {
                let row = Int(r)
                let x = Array(UnsafeBufferPointer(start: hidden + row * D, count: D))
                let rms = (x.map { Double($0) * Double($0) }.reduce(0, +) / Double(D) + 1e-5).squareRoot()
                let logits = (0..<V).map { v in (0..<D).map { Double(headW[v * D + $0]) * Double(x[$0]) / rms * Double(normW[$0]) }.reduce(0, +) }
                let m = logits.max()!
                reference += m + log(logits.map { exp($0 - m) }.reduce(0, +)) - logits[Int(targets[row])]
            }
            XCTAssertEqual(loss(), reference, accuracy: 1e-4 * reference, "chunk \(chunk)")

            dHidden = [Float](repeating: 7, count: N * D)
            dNorm = [Float](repeating: 0, count: D); dHead = [Float](repeating: 0, count: V * D)
            dHidden.withUnsafeMutableBufferPointer { dh in
                _ = head.run([ExitTail(hidden: hidden, dHidden: dh.baseAddress!, gradientScale: 1)], targets: targets,
                             labelled: labelled, normWeight: normW, headWeight: headW, eps: 1e-5, rows: N,
                             distillation: nil, backward: true, dNormWeight: &dNorm, dHeadWeight: &dHead)
            }
            for row in [1, 4] { for i in 0..<D { XCTAssertEqual(dHidden[row * D + i], 0, "unlabelled row has no gradient") } }
            checkFiniteDifferences(hiddenBuf, indices: sampleIndices(N * D, count: 40, seed: 15),
                                       analytic: dHidden, what: "dhidden(chunk \(chunk))", loss: loss)
            checkFiniteDifferences(normWBuf, indices: Array(0..<D), analytic: dNorm,
                                       what: "dnorm", loss: loss)
            checkFiniteDifferences(headWBuf, indices: sampleIndices(V * D, count: 40, seed: 16),
                                       analytic: dHead, what: "dhead", loss: loss)
        }
    }

    /// The stacked pass of E exits against E single-exit passes of the same kernel: the same
    /// per-exit NLL and dh, and the head and norm gradients their sum — at stack sizes that
    /// split the tokens into uneven chunks and that take them all at once.
    func testStackedExitsMatchSeparateSingleExitPasses() {
        let N = 9, D = 16, V = 23, E = 3
        let hidden = randomArray(E * N * D, seed: 21)
        let normW = randomArray(D, seed: 22, scale: 0.2, offset: 1), headW = randomArray(V * D, seed: 23, scale: 0.5)
        let targets: [Int32] = [3, -100, 18, 0, 22, 7, 7, -100, 1]
        let labelled = targets.indices.compactMap { targets[$0] >= 0 ? Int32($0) : nil }
        let scales: [Float] = [0.25, 0.5, 1]

        /// Per exit (NLL, dh), and the accumulated norm and head gradients, of one pass over `exits`.
        func pass(_ exits: [Int], stackRows: Int) -> (nll: [Double], dHidden: [[Float]], dNorm: [Float], dHead: [Float]) {
            let head = FusedHeadLoss(vocab: V, dim: D, stackRows: stackRows, matmul: MatrixMultiply())
            var dHidden = [Float](repeating: 7, count: exits.count * N * D)
            var dNorm = [Float](repeating: 0, count: D), dHead = [Float](repeating: 0, count: V * D)
            let results = hidden.withUnsafeBufferPointer { h in
                dHidden.withUnsafeMutableBufferPointer { dh in
                    head.run(exits.enumerated().map { j, e in
                        ExitTail(hidden: h.baseAddress! + e * N * D, dHidden: dh.baseAddress! + j * N * D, gradientScale: scales[e])
                    }, targets: targets, labelled: labelled, normWeight: normW, headWeight: headW, eps: 1e-5, rows: N,
                    distillation: nil, backward: true, dNormWeight: &dNorm, dHeadWeight: &dHead)
                }
            }
            return (results.map(\.nll), (0..<exits.count).map { Array(dHidden[$0 * N * D..<($0 + 1) * N * D]) }, dNorm, dHead)
        }
        let separate = (0..<E).map { pass([$0], stackRows: 4) }
        for stackRows in [E, 2 * E + 1, E * N] {
            let stacked = pass(Array(0..<E), stackRows: stackRows)
            for e in 0..<E {
                XCTAssertEqual(stacked.nll[e], separate[e].nll[0], accuracy: 1e-5 * separate[e].nll[0], "exit \(e), \(stackRows) rows")
                assertClose(stacked.dHidden[e], separate[e].dHidden[0], atol: 1e-6, rtol: 1e-4, "dh of exit \(e), \(stackRows) rows")
            }
            let sum = { (parts: [[Float]]) in parts.dropFirst().reduce(parts[0]) { zip($0, $1).map { $0 + $1 } } }
            assertClose(stacked.dNorm, sum(separate.map(\.dNorm)), atol: 1e-5, rtol: 1e-4, "dnorm, \(stackRows) rows")
            assertClose(stacked.dHead, sum(separate.map(\.dHead)), atol: 1e-6, rtol: 1e-4, "dhead, \(stackRows) rows")
        }
    }

    /// CQuant's row exp (attention's softmax) against Double on every path, with the row sum, at
    /// lengths that leave SIMD tails; -inf and huge inputs clamp instead of giving NaN or inf.
    func testCQuantRowExpMatchesFoundation() {
        defer { cq_select_kernel(nil) }
        for kernel in ["avx512", "avx2", "portable"] where cq_select_kernel(kernel) == 1 {
            for n in [1, 7, 8, 15, 16, 17, 100] {
                let xs = (0..<n).map { Float($0 % 23) * 7.3 - 80 + Float(n) * 0.01 }
                var row = xs
                let sum = cq_exp_shifted_f32(&row, Int64(n), 1.5)
                var reference = 0.0
                for (x, e) in zip(xs, row) {
                    let ref = Foundation.exp(Double(x - 1.5))   // the argument as the kernel rounds it
                    reference += ref
                    XCTAssertEqual(Double(e), ref, accuracy: 3e-7 * ref, "\(kernel) n \(n): exp(\(x) - 1.5)")
                }
                XCTAssertEqual(Double(sum), reference, accuracy: 1e-6 * reference, "\(kernel) n \(n): sum")
            }
            var extremes: [Float] = [-.infinity, -1000, 1000]
            _ = cq_exp_shifted_f32(&extremes, 3, 0)
            XCTAssert(extremes[0] >= 0 && extremes[0] < 1e-37 && extremes[1] < 1e-37 && extremes[2].isFinite, "\(kernel): \(extremes)")
        }
    }

    func testExpMatchesFoundation() {
        for x in stride(from: -80.0 as Float, through: 80, by: 0.37) {
            let e = expScalar(x), ref = Foundation.exp(Double(x))
            XCTAssertEqual(Double(e), ref, accuracy: 3e-7 * ref, "exp(\(x))")
        }
        XCTAssertLessThan(expScalar(-200), 1e-37)
    }
}
