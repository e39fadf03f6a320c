// LogisticRegression: a ridge-regularised logistic classifier fitted by Newton's method
// (iteratively reweighted least squares), what the exit probes are. The Hessian Xᵀ·diag(w)·X
// is one GEMM over the samples; the Newton step is solved in Double by Cholesky.
import Foundation
import SortedKit

public enum LogisticRegression {
    /// Weights [F] and bias minimising Σ log-loss + ridge/2 · |w|² (the bias is not shrunk).
    /// features: [N, F] row-major.
    public static func fit(features X: [Float], labels y: [Bool], count F: Int, ridge: Double,
                           iterations: Int = 25) -> (weights: [Double], bias: Double) {
        let N = y.count
        precondition(X.count == N * F && N > 0, "LogisticRegression.fit: features do not match labels")
        let P = F + 1   // the bias is the last coefficient
        var beta = [Double](repeating: 0, count: P)
        let positives = Double(y.filter { $0 }.count)
        // Start from the base rate, so the first step is a small one.
        beta[F] = log(max(positives, 0.5) / max(Double(N) - positives, 0.5))
        var scaled = [Float](repeating: 0, count: N * P)
        var hessian = [Float](repeating: 0, count: P * P)
        for _ in 0..<iterations {
            var gradient = [Double](repeating: 0, count: P)
            for n in 0..<N {
                var z = beta[F]
                for f in 0..<F { z += beta[f] * Double(X[n * F + f]) }
                let p = sigmoid(z), r = p - (y[n] ? 1 : 0), w = max(p * (1 - p), 1e-10)
                let s = Float(w.squareRoot())
                for f in 0..<F {
                    gradient[f] += r * Double(X[n * F + f])
                    scaled[n * P + f] = s * X[n * F + f]
                }
                gradient[F] += r
                scaled[n * P + F] = s
            }
            // H = (√w·X)ᵀ(√w·X) + ridge·I (not on the bias).
            scaled.withUnsafeBufferPointer { a in
                hessian.withUnsafeMutableBufferPointer { h in
                    BLAS.gemm(transposeA: true, transposeB: false, m: P, n: P, k: N, a: a.baseAddress!, lda: P,
                              b: a.baseAddress!, ldb: P, beta: 0, c: h.baseAddress!, ldc: P)
                }
            }
            var H = hessian.map(Double.init)
            for f in 0..<F {
                H[f * P + f] += ridge
                gradient[f] += ridge * beta[f]
            }
            H[F * P + F] += 1e-9
            guard let step = solveSymmetric(H, gradient, size: P) else { break }
            for i in 0..<P { beta[i] -= step[i] }
            if step.map(abs).max()! < 1e-6 { break }
        }
        return (Array(beta[0..<F]), beta[F])
    }

    /// Mean log-loss of the classifier on (X, y).
    public static func logLoss(features X: [Float], labels y: [Bool], count F: Int, weights: [Double], bias: Double) -> Double {
        var total = 0.0
        for n in y.indices {
            var z = bias
            for f in 0..<F { z += weights[f] * Double(X[n * F + f]) }
            // log(1 + e^−z) for a positive, log(1 + e^z) for a negative, without overflow.
            let m = y[n] ? -z : z
            total += max(m, 0) + log(1 + exp(-abs(m)))
        }
        return total / Double(max(y.count, 1))
    }

    static func sigmoid(_ z: Double) -> Double { z >= 0 ? 1 / (1 + exp(-z)) : exp(z) / (1 + exp(z)) }

    /// x with A·x = b for a symmetric positive definite A [n, n] (Cholesky), or nil.
    static func solveSymmetric(_ A: [Double], _ b: [Double], size n: Int) -> [Double]? {
        var L = [Double](repeating: 0, count: n * n)
        for i in 0..<n {
            for j in 0...i {
                var sum = A[i * n + j]
                for k in 0..<j { sum -= L[i * n + k] * L[j * n + k] }
                if i == j {
                    guard sum > 0 else { return nil }
                    L[i * n + i] = sum.squareRoot()
                } else {
                    L[i * n + j] = sum / L[j * n + j]
                }
            }
        }
        var y = b
        for i in 0..<n {
            for k in 0..<i { y[i] -= L[i * n + k] * y[k] }
            y[i] /= L[i * n + i]
        }
        for i in stride(from: n - 1, through: 0, by: -1) {
            for k in (i + 1)..<n { y[i] -= L[k * n + i] * y[k] }
            y[i] /= L[i * n + i]
        }
        return y
    }
}
