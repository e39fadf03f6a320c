// DistilledHeadLoss: the fused tail of all of a step's exits at once, with self-distillation
// from the deepest. Chunk by chunk of labelled tokens, the teacher's logits are computed once
// and softened at temperature τ; every other exit adds α·τ²·KL(p_teacher ‖ q_exit) to its
// cross-entropy, inside the same pass (no [tokens, V] tensor). The teacher is detached: its
// distribution is a target, never a path for gradients.
import Foundation

/// sorted.distill: self-distillation from the step's deepest exit.
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

/// One exit's part of the tail: its input and scratch, and d total / d Σ NLL (nil: forward only).
struct ExitTail {
    let hidden: UnsafePointer<Float>             // [N, D] residual stream at the exit
    let normed: UnsafeMutablePointer<Float>      // [N, D]
    let inverseRMS: UnsafeMutablePointer<Float>  // [N]
    let dNormed: UnsafeMutablePointer<Float>     // [N, D]
    let dHidden: UnsafeMutablePointer<Float>     // [N, D], overwritten with this exit's gradient
    let gradientScale: Float?
}

extension FusedHeadLoss {
    /// `exits` ascending by depth: the last one is the teacher. With `klScale` (α·τ / the
    /// loss normaliser) the gradients are computed: each dHidden is overwritten, the norm and
    /// head gradients accumulate. Returns per exit Σ NLL and Σ KL over the labelled rows
    /// (KL 0 for the teacher).
    func runDistilled(_ exits: [ExitTail], targets: UnsafePointer<Int32>, labelled: [Int32],
                      normWeight: UnsafePointer<Float>, headWeight: UnsafePointer<Float>, eps: Float, rows N: Int,
                      temperature: Double, klScale: Float?,
                      dNormWeight: UnsafeMutablePointer<Float>, dHeadWeight: UnsafeMutablePointer<Float>) -> [(nll: Double, kl: Double)] {
        let D = dim, V = vocab, E = exits.count
        let backward = klScale != nil
        StepProfiler.measure("norms") {
            for exit in exits {
                ExitHead.normalize(hidden: exit.hidden, rows: N, normWeight: normWeight, eps: eps,
                                   normed: exit.normed, inverseRMS: exit.inverseRMS, dim: D)
                if backward { exit.dNormed.update(repeating: 0, count: N * D) }
            }
        }
        var totals = [(nll: Double, kl: Double)](repeating: (0, 0), count: E)
        var negativeEntropy = [Double](repeating: 0, count: chunkRows)   // Σ p·log p of the teacher's rows
        var start = 0
        while start < labelled.count {
            let C = min(chunkRows, labelled.count - start)
            // The teacher first: its probabilities are every other exit's target.
            for i in stride(from: E - 1, through: 0, by: -1) {
                let exit = exits[i], xc = gathered.pointer, lg = logits.pointer
                for r in 0..<C { (xc + r * D).update(from: exit.normed + Int(labelled[start + r]) * D, count: D) }
                StepProfiler.measure("head") {
                    ExitHead.logits(normed: xc, rows: C, headWeight: headWeight, vocab: V, dim: D, logits: lg)
                }
                let chunk = StepProfiler.measure("cross-entropy") {
                    distillRows(C, start: start, labelled: labelled, targets: targets, teacher: i == E - 1,
                                temperature: Float(temperature), gradientScale: backward ? exit.gradientScale ?? 0 : nil,
                                klScale: klScale ?? 0, negativeEntropy: &negativeEntropy)
                }
                totals[i].nll += chunk.nll
                totals[i].kl += chunk.kl
                if backward {
                    headBackward(rows: C, start: start, labelled: labelled, headWeight: headWeight,
                                 dHeadWeight: dHeadWeight, dNormed: exit.dNormed)
                }
            }
            start += C
        }
        if backward {
            StepProfiler.measure("norms") {
                for exit in exits {
                    RMSNorm.backward(dy: exit.dNormed, x: exit.hidden, weight: normWeight, inverseRMS: exit.inverseRMS,
                                     dx: exit.dHidden, dWeight: dNormWeight, rows: N, dim: D, accumulate: false)
                }
            }
        }
        return totals
    }

    /// One exit's rows of a chunk, in `logits`. The teacher's: store p = softmax(z/τ) and Σ p·log p
    /// per row, then its cross-entropy. Another exit's: KL(p ‖ softmax(z/τ)) from p and the
    /// teacher's entropy, then its cross-entropy; with a gradient scale cs the row becomes
    /// cs·(softmax(z) − onehot) + klScale·(softmax(z/τ) − p).
    private func distillRows(_ C: Int, start: Int, labelled: [Int32], targets: UnsafePointer<Int32>, teacher: Bool,
                             temperature tau: Float, gradientScale: Float?, klScale: Float,
                             negativeEntropy: inout [Double]) -> (nll: Double, kl: Double) {
        let V = vocab, lg = logits.pointer, probabilities = teacherProbabilities.pointer, scratch = workerRows.pointer
        let workers = C >= 16 ? 2 : 1
        var partial = [(nll: Double, kl: Double)](repeating: (0, 0), count: workers)
        partial.withUnsafeMutableBufferPointer { out in
            negativeEntropy.withUnsafeMutableBufferPointer { entropy in
                labelled.withUnsafeBufferPointer { rowsOf in
                    DispatchQueue.concurrentPerform(iterations: workers) { w in
                        var nll = 0.0, kl = 0.0
                        let soft = scratch + w * V
                        for r in C * w / workers..<C * (w + 1) / workers {
                            let row = lg + r * V, p = probabilities + r * V
                            let target = Int(targets[Int(rowsOf[start + r])])
                            let m = maxValue(row, V)
                            // softmax(z/τ) = exp((z − m)/τ) / Σ, into p (teacher) or the worker's row.
                            let q = teacher ? p : soft
                            q.update(from: row, count: V)
                            scaleInPlace(q, V, by: 1 / tau)
                            let softSum = expShiftedInPlace(q, V, shift: m / tau)
                            let logSoftSum = log(Double(softSum))
                            if teacher {
                                scaleInPlace(p, V, by: 1 / softSum)
                                // Σ p·log p with log p = (z − m)/τ − log Σ.
                                entropy[r] = Double(dot(p, row, V) - m) / Double(tau) - logSoftSum
                            } else {
                                // KL = Σ p·log p − Σ p·log q, log q = (z − m)/τ − log Σ_q.
                                kl += entropy[r] - Double(dot(p, row, V) - m) / Double(tau) + logSoftSum
                            }
                            let targetLogit = row[target]
                            let sum = expShiftedInPlace(row, V, shift: m)
                            nll += Double(m) + log(Double(sum)) - Double(targetLogit)
                            guard let cs = gradientScale else { continue }
                            scaleInPlace(row, V, by: cs / sum)
                            if !teacher {
                                axpy(row, klScale / softSum, q, V)
                                axpy(row, -klScale, p, V)
                            }
                            row[target] -= cs
                        }
                        out[w] = (nll, kl)
                    }
                }
            }
        }
        return partial.reduce((0, 0)) { ($0.nll + $1.nll, $0.kl + $1.kl) }
    }
}
