// The shared tail of every exit, fused and stacked: final RMSNorm → LM head → cross-entropy
// (and, distilling, the KL to the deepest exit), forward and backward in one pass over chunks
// of labelled tokens. A chunk stacks the rows of all exits, so the head weight is streamed
// once per chunk for every exit and its gradient is one GEMM over all of them; no
// [tokens, V] logits tensor exists, only one chunk's [E·C, V].
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

/// sorted.distill: self-distillation from the step's deepest exit. Every other exit adds
/// α·τ²·KL(p_teacher ‖ q_exit) to its cross-entropy; the teacher is detached: its
/// distribution is a target, never a path for gradients.
public struct Distillation: Sendable, Equatable {
    /// α, the KL term's factor (the loss adds α·τ²·KL per exit, averaged over labelled tokens).
    public var weight: Double
    /// τ, the temperature both distributions are softened by.
    public var temperature: Double

    public init(weight: Double, temperature: Double) {
        self.weight = weight
        self.temperature = temperature
    }
}

/// One exit's part of the tail: its input, where its gradient goes, and d total / d Σ NLL.
struct ExitTail {
    let hidden: UnsafePointer<Float>          // [N, D] residual stream at the exit
    let dHidden: UnsafeMutablePointer<Float>  // [N, D], overwritten with this exit's gradient
    let gradientScale: Float
}

final class FusedHeadLoss {
    let vocab: Int          // V
    let dim: Int            // D
    /// Rows of one stacked head GEMM, all exits together: with E exits a chunk holds
    /// stackRows / E labelled tokens of each (memory ≈ stackRows·V floats).
    let stackRows: Int
    let logits: FloatBuffer      // [stackRows, V]
    let hidden: FloatBuffer      // [stackRows, D] the chunk's residual rows, exit-major
    let normed: FloatBuffer      // [stackRows, D]
    let inverseRMS: FloatBuffer  // [stackRows]
    let dNormed: FloatBuffer     // [stackRows, D]
    let dHidden: FloatBuffer     // [stackRows, D]
    /// Per worker: the teacher's softened probabilities of its current token and an exit's
    /// softened row, for self-distillation.
    let workerRows: FloatBuffer  // [workers, 2, V]
    private static var workers: Int { Parallel.workers }

    /// The head's GEMMs, in the pass's precision.
    let matmul: MatrixMultiply

    init(vocab: Int, dim: Int, stackRows: Int, matmul: MatrixMultiply) {
        self.matmul = matmul
        self.vocab = vocab
        self.dim = dim
        self.stackRows = stackRows
        logits = FloatBuffer(count: stackRows * vocab)
        hidden = FloatBuffer(count: stackRows * dim)
        normed = FloatBuffer(count: stackRows * dim)
        inverseRMS = FloatBuffer(count: stackRows)
        dNormed = FloatBuffer(count: stackRows * dim)
        dHidden = FloatBuffer(count: stackRows * dim)
        workerRows = FloatBuffer(count: Self.workers * 2 * vocab)
    }

    /// The floats the buffers above take.
    static func floatsNeeded(vocab V: Int, dim D: Int, stackRows S: Double) -> Double {
        S * (Double(V) + 4 * Double(D) + 1) + Double(workers * 2 * V)
    }

    /// `exits` ascending by depth; targets: [N] (negative = ignored); labelled: indices of
    /// the rows with a target. With `distillation` (τ, and klScale = α·τ / the loss
    /// normaliser) the last exit is the teacher. With `backward` each exit's dHidden is
    /// overwritten and the norm and head gradients accumulate. Returns per exit Σ NLL and
    /// Σ KL over the labelled rows (KL 0 without distillation and for the teacher).
    func run(_ exits: [ExitTail], targets: UnsafePointer<Int32>, labelled: [Int32],
             normWeight: UnsafePointer<Float>, headWeight: UnsafePointer<Float>, eps: Float, rows N: Int,
             distillation: (temperature: Float, klScale: Float)?, backward: Bool,
             dNormWeight: UnsafeMutablePointer<Float>, dHeadWeight: UnsafeMutablePointer<Float>) -> [(nll: Double, kl: Double)] {
        let D = dim, V = vocab, E = exits.count
        precondition(E >= 1 && E <= stackRows, "FusedHeadLoss: \(E) exits do not fit \(stackRows) stacked rows")
        let perExit = stackRows / E
        if backward {
            for exit in exits { exit.dHidden.update(repeating: 0, count: N * D) }   // unlabelled rows
        }
        var totals = [(nll: Double, kl: Double)](repeating: (0, 0), count: E)
        var start = 0
        while start < labelled.count {
            let C = min(perExit, labelled.count - start), rows = E * C
            StepProfiler.measure("norms") {
                for (i, exit) in exits.enumerated() {
                    for r in 0..<C {
                        (hidden.pointer + (i * C + r) * D).update(from: exit.hidden + Int(labelled[start + r]) * D, count: D)
                    }
                }
                ExitHead.normalize(hidden: hidden.pointer, rows: rows, normWeight: normWeight, eps: eps,
                                   normed: normed.pointer, inverseRMS: inverseRMS.pointer, dim: D)
            }
            StepProfiler.measure("head") {
                ExitHead.logits(normed: normed.pointer, rows: rows, headWeight: headWeight, vocab: V, dim: D, matmul: matmul,
                                logits: logits.pointer)
            }
            let chunk = StepProfiler.measure("cross-entropy") {
                lossRows(C, exits: exits, start: start, labelled: labelled, targets: targets,
                         distillation: distillation, backward: backward)
            }
            for i in 0..<E {
                totals[i].nll += chunk[i].nll
                totals[i].kl += chunk[i].kl
            }
            if backward {
                // dW_head += dlogitsᵀ·normed; d normed = dlogits·W_head, for all exits' rows at once.
                StepProfiler.measure("head") {
                    matmul.gemm(transposeA: true, transposeB: false, m: V, n: D, k: rows,
                              a: logits.pointer, lda: V, b: normed.pointer, ldb: D, beta: 1, c: dHeadWeight, ldc: D)
                    matmul.gemm(transposeA: false, transposeB: false, m: rows, n: D, k: V,
                              a: logits.pointer, lda: V, b: headWeight, ldb: D, beta: 0, c: dNormed.pointer, ldc: D)
                }
                StepProfiler.measure("norms") {
                    RMSNorm.backward(dy: dNormed.pointer, x: hidden.pointer, weight: normWeight,
                                     inverseRMS: inverseRMS.pointer, dx: dHidden.pointer, dWeight: dNormWeight,
                                     rows: rows, dim: D, accumulate: false)
                    for (i, exit) in exits.enumerated() {
                        for r in 0..<C {
                            (exit.dHidden + Int(labelled[start + r]) * D).update(from: dHidden.pointer + (i * C + r) * D, count: D)
                        }
                    }
                }
            }
            start += C
        }
        return totals
    }

    /// The chunk's stacked rows in `logits` (exit i's token r at row i·C + r), split by token
    /// over the workers; a worker takes one token through every exit, the teacher first.
    /// Every row: its NLL; with `backward` it becomes cs·(softmax(z) − onehot), cs its exit's
    /// gradient scale. Distilling, the teacher's row also leaves p = softmax(z/τ) and Σ p·log p;
    /// each other exit's row adds KL(p ‖ softmax(z/τ)), and with `backward`
    /// klScale·(softmax(z/τ) − p). This is the only O(tokens·V) elementwise work of the step.
    private func lossRows(_ C: Int, exits: [ExitTail], start: Int, labelled: [Int32], targets: UnsafePointer<Int32>,
                          distillation: (temperature: Float, klScale: Float)?, backward: Bool) -> [(nll: Double, kl: Double)] {
        let V = vocab, E = exits.count, lg = logits.pointer, scratch = workerRows.pointer
        let workers = C >= 2 && E * C >= 16 ? Self.workers : 1
        var partial = [(nll: Double, kl: Double)](repeating: (0, 0), count: workers * E)
        let scales = exits.map(\.gradientScale)
        partial.withUnsafeMutableBufferPointer { out in
            labelled.withUnsafeBufferPointer { rowsOf in
                DispatchQueue.concurrentPerform(iterations: workers) { w in
                    let p = scratch + 2 * w * V, soft = p + V
                    for r in C * w / workers..<C * (w + 1) / workers {
                        let target = Int(targets[Int(rowsOf[start + r])])
                        var negativeEntropy = 0.0   // Σ p·log p of the teacher's row
                        for i in stride(from: E - 1, through: 0, by: -1) {
                            let row = lg + (i * C + r) * V
                            let m = maxValue(row, V)
                            var softSum: Float = 0
                            if let d = distillation {
                                // softmax(z/τ) = exp((z − m)/τ) / Σ, into p (teacher) or the worker's row.
                                let tau = d.temperature, teacher = i == E - 1
                                let q = teacher ? p : soft
                                q.update(from: row, count: V)
                                scaleInPlace(q, V, by: 1 / tau)
                                softSum = expShiftedInPlace(q, V, shift: m / tau)
                                let logSoftSum = log(Double(softSum))
                                if teacher {
                                    scaleInPlace(p, V, by: 1 / softSum)
                                    // Σ p·log p with log p = (z − m)/τ − log Σ.
                                    negativeEntropy = Double(dot(p, row, V) - m) / Double(tau) - logSoftSum
                                } else {
                                    // KL = Σ p·log p − Σ p·log q, log q = (z − m)/τ − log Σ_q.
                                    out[w * E + i].kl += negativeEntropy - Double(dot(p, row, V) - m) / Double(tau) + logSoftSum
                                }
                            }
                            let targetLogit = row[target]
                            let sum = expShiftedInPlace(row, V, shift: m)
                            out[w * E + i].nll += Double(m) + log(Double(sum)) - Double(targetLogit)
                            guard backward else { continue }
                            let cs = scales[i]
                            scaleInPlace(row, V, by: cs / sum)
                            if let d = distillation, i != E - 1 {
                                axpy(row, d.klScale / softSum, soft, V)
                                axpy(row, -d.klScale, p, V)
                            }
                            row[target] -= cs
                        }
                    }
                }
            }
        }
        return (0..<E).map { i in
            (0..<workers).reduce((0, 0)) { ($0.nll + partial[$1 * E + i].nll, $0.kl + partial[$1 * E + i].kl) }
        }
    }
}
