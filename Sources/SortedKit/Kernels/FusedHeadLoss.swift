// The shared tail of every exit, fused: final RMSNorm → LM head → cross-entropy, forward
// and backward in one pass, chunked over tokens so no [tokens, V] logits tensor exists.
import Foundation

/// Loss of one exit on the local batch: Σ −log p(target) over `tokens` labelled tokens, and
/// with self-distillation Σ KL(p_teacher ‖ q_exit) at the temperature over the same tokens.
public struct ExitLoss: Sendable, Equatable {
    public let depth: Int
    public var negativeLogLikelihood: Double
    public var tokens: Int
    public var klDivergence: Double

    public init(depth: Int, negativeLogLikelihood: Double, tokens: Int, klDivergence: Double = 0) {
        self.depth = depth
        self.negativeLogLikelihood = negativeLogLikelihood
        self.tokens = tokens
        self.klDivergence = klDivergence
    }
    /// Mean cross-entropy over the labelled tokens (0 when there are none).
    public var mean: Double { tokens > 0 ? negativeLogLikelihood / Double(tokens) : 0 }
}

final class FusedHeadLoss {
    let vocab: Int          // V
    let dim: Int            // D
    let chunkRows: Int      // tokens per head GEMM
    let logits: FloatBuffer     // [chunkRows, V]
    let gathered: FloatBuffer   // [chunkRows, D]
    let dGathered: FloatBuffer  // [chunkRows, D]
    /// The teacher's softened probabilities of one chunk, and per-worker rows, for
    /// self-distillation only (allocated on first use).
    lazy var teacherProbabilities = FloatBuffer(count: chunkRows * vocab)
    lazy var workerRows = FloatBuffer(count: 2 * vocab)

    init(vocab: Int, dim: Int, chunkRows: Int) {
        self.vocab = vocab
        self.dim = dim
        self.chunkRows = chunkRows
        logits = FloatBuffer(count: chunkRows * vocab)
        gathered = FloatBuffer(count: chunkRows * dim)
        dGathered = FloatBuffer(count: chunkRows * dim)
    }

    /// hidden: [N, D] residual stream at the exit; targets: [N] (-100 or any negative =
    /// ignored); labelled: indices of rows with a target. normed: [N, D] and inverseRMS:
    /// [N] are scratch. With `gradientScale` set (d total / d Σ NLL), dHidden [N, D] is
    /// overwritten with this exit's gradient and the norm and head gradients accumulate.
    func run(hidden: UnsafePointer<Float>, targets: UnsafePointer<Int32>, labelled: [Int32],
             normWeight: UnsafePointer<Float>, headWeight: UnsafePointer<Float>, eps: Float,
             normed: UnsafeMutablePointer<Float>, inverseRMS: UnsafeMutablePointer<Float>,
             rows N: Int, gradientScale: Float?,
             dNormed: UnsafeMutablePointer<Float>, dHidden: UnsafeMutablePointer<Float>,
             dNormWeight: UnsafeMutablePointer<Float>, dHeadWeight: UnsafeMutablePointer<Float>) -> Double {
        let D = dim, V = vocab
        StepProfiler.measure("norms") {
            ExitHead.normalize(hidden: hidden, rows: N, normWeight: normWeight, eps: eps,
                               normed: normed, inverseRMS: inverseRMS, dim: D)
        }
        let backward = gradientScale != nil
        if backward { dNormed.update(repeating: 0, count: N * D) }
        var nll = 0.0
        var start = 0
        while start < labelled.count {
            let C = min(chunkRows, labelled.count - start)
            let xc = gathered.pointer, lg = logits.pointer
            for r in 0..<C {
                (xc + r * D).update(from: normed + Int(labelled[start + r]) * D, count: D)
            }
            StepProfiler.measure("head") {
                ExitHead.logits(normed: xc, rows: C, headWeight: headWeight, vocab: V, dim: D, logits: lg)
            }
            nll += StepProfiler.measure("cross-entropy") {
                softmaxCrossEntropy(logits: lg, rows: C, labelled: labelled, start: start,
                                    targets: targets, gradientScale: gradientScale)
            }
            if backward {
                headBackward(rows: C, start: start, labelled: labelled, headWeight: headWeight,
                             dHeadWeight: dHeadWeight, dNormed: dNormed)
            }
            start += C
        }
        if backward {
            StepProfiler.measure("norms") {
                RMSNorm.backward(dy: dNormed, x: hidden, weight: normWeight, inverseRMS: inverseRMS,
                                 dx: dHidden, dWeight: dNormWeight, rows: N, dim: D, accumulate: false)
            }
        }
        return nll
    }

    /// The head's backward for one chunk whose logits rows hold d loss / d logits and whose
    /// gathered rows hold the normed inputs: dW_head += dlogitsᵀ·x; dx = dlogits·W_head,
    /// scattered back to the chunk's rows of dNormed.
    func headBackward(rows C: Int, start: Int, labelled: [Int32], headWeight: UnsafePointer<Float>,
                      dHeadWeight: UnsafeMutablePointer<Float>, dNormed: UnsafeMutablePointer<Float>) {
        let D = dim, V = vocab, lg = logits.pointer, xc = gathered.pointer
        StepProfiler.measure("head") {
            BLAS.gemm(transposeA: true, transposeB: false, m: V, n: D, k: C,
                      a: lg, lda: V, b: xc, ldb: D, beta: 1, c: dHeadWeight, ldc: D)
            BLAS.gemm(transposeA: false, transposeB: false, m: C, n: D, k: V,
                      a: lg, lda: V, b: headWeight, ldb: D, beta: 0, c: dGathered.pointer, ldc: D)
        }
        for r in 0..<C {
            (dNormed + Int(labelled[start + r]) * D).update(from: dGathered.pointer + r * D, count: D)
        }
    }

    /// Per row: NLL of its target; with a gradient scale the row becomes
    /// scale·(softmax − onehot). Rows are split over two workers: this is the only
    /// O(tokens·V) elementwise work of the step.
    private func softmaxCrossEntropy(logits: UnsafeMutablePointer<Float>, rows C: Int, labelled: [Int32],
                                     start: Int, targets: UnsafePointer<Int32>, gradientScale: Float?) -> Double {
        let V = vocab
        let workers = C >= 16 ? 2 : 1
        var partial = [Double](repeating: 0, count: workers)
        partial.withUnsafeMutableBufferPointer { out in
            labelled.withUnsafeBufferPointer { rowsOf in
                DispatchQueue.concurrentPerform(iterations: workers) { w in
                    var nll = 0.0
                    let lo = C * w / workers, hi = C * (w + 1) / workers
                    for r in lo..<hi {
                        let row = logits + r * V
                        let target = Int(targets[Int(rowsOf[start + r])])
                        let m = maxValue(row, V)
                        let targetLogit = row[target]
                        let sum = expShiftedInPlace(row, V, shift: m)
                        nll += Double(m) + log(Double(sum)) - Double(targetLogit)
                        if let scale = gradientScale {
                            scaleInPlace(row, V, by: scale / sum)
                            row[target] -= scale
                        }
                    }
                    out[w] = nll
                }
            }
        }
        return partial.reduce(0, +)
    }
}
