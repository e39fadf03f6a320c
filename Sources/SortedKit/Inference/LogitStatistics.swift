// LogitStatistics: what inference and evaluation read off one row of V logits — the
// argmax, an exit's confidence, log-probabilities, the KL between two exits — over raw
// pointers with the SIMD kernels, since every generated token and evaluated position
// pays for them once per exit.
import Foundation

public enum ConfidenceMeasure: String, Sendable, CaseIterable {
    /// The top softmax probability.
    case probability
    /// Top-1 minus top-2 softmax probability.
    case margin
}

public enum LogitStatistics {
    /// Index of the largest logit (the first on ties).
    public static func argmax(_ row: UnsafePointer<Float>, count n: Int) -> Int {
        var best = 0
        var value = row[0]
        for v in 1..<n where row[v] > value {
            value = row[v]
            best = v
        }
        return best
    }

    /// log Σ exp(row) without overflow.
    public static func logSumExp(_ row: UnsafePointer<Float>, count n: Int) -> Double {
        let m = maxValue(row, n)
        return Double(m) + log(Double(sumExp(row, n, shift: m)))
    }

    /// The exit's confidence in its top token under `measure`.
    public static func confidence(_ row: UnsafePointer<Float>, count n: Int, measure: ConfidenceMeasure) -> Double {
        var first = -Float.infinity, second = -Float.infinity
        for v in 0..<n {
            let x = row[v]
            if x > first {
                second = first
                first = x
            } else if x > second {
                second = x
            }
        }
        let sum = Double(sumExp(row, n, shift: first))
        switch measure {
        case .probability: return 1 / sum
        case .margin: return (1 - Double(expScalar(second - first))) / sum
        }
    }

    /// KL(softmax(p) ‖ softmax(q)) of two logit rows, in nats.
    public static func klDivergence(_ p: UnsafePointer<Float>, _ q: UnsafePointer<Float>, count n: Int) -> Double {
        let lp = logSumExp(p, count: n), lq = logSumExp(q, count: n)
        var total = 0.0
        var i = 0
        // Σ p_i (log p_i − log q_i) with log p_i = p_i − lp; blocks of 8 in Float, summed in Double.
        let shift = Float8(repeating: Float(lp))
        while i + 8 <= n {
            let a = load8(p + i), b = load8(q + i)
            let prob = exp8(a - shift)
            total += Double((prob * (a - b)).sum())
            i += 8
        }
        while i < n {
            total += Double(expScalar(p[i] - Float(lp)) * (p[i] - q[i]))
            i += 1
        }
        return max(0, total - lp + lq)
    }

    /// out[i] = softmax(row / temperature)[i].
    public static func softmax(_ row: UnsafePointer<Float>, count n: Int, temperature: Float = 1,
                               into out: UnsafeMutablePointer<Float>) {
        scaleCopy(row, n, by: 1 / temperature, into: out)
        let m = maxValue(out, n)
        let sum = expShiftedInPlace(out, n, shift: m)
        scaleInPlace(out, n, by: 1 / sum)
    }

    private static func sumExp(_ x: UnsafePointer<Float>, _ n: Int, shift: Float) -> Float {
        var acc = Float8()
        let s = Float8(repeating: shift)
        var i = 0
        while i + 8 <= n {
            acc += exp8(load8(x + i) - s)
            i += 8
        }
        var sum = acc.sum()
        while i < n {
            sum += expScalar(x[i] - shift)
            i += 1
        }
        return sum
    }

    private static func scaleCopy(_ x: UnsafePointer<Float>, _ n: Int, by a: Float, into y: UnsafeMutablePointer<Float>) {
        let s = Float8(repeating: a)
        var i = 0
        while i + 8 <= n {
            store8(load8(x + i) * s, y + i)
            i += 8
        }
        while i < n {
            y[i] = x[i] * a
            i += 1
        }
    }
}
