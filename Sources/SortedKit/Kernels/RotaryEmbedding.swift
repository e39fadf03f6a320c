// RotaryEmbedding: RoPE in HF's rotate-half layout. Within a head of Dh values the pair
// (i, i + Dh/2) is rotated by angle pos · theta^(-2i/Dh).
import Foundation

struct RotaryEmbedding {
    let headDim: Int
    let maxLength: Int
    /// cos and sin of pos · inv_freq[i]: [maxLength, Dh/2] each.
    let cosTable: [Float]
    let sinTable: [Float]

    init(headDim: Int, maxLength: Int, theta: Double) {
        self.headDim = headDim
        self.maxLength = maxLength
        let half = headDim / 2
        var c = [Float](repeating: 0, count: maxLength * half)
        var s = c
        for i in 0..<half {
            // As HF: inv_freq is computed in float32, the angle pos·inv_freq in float32.
            let invFreq = Float(1.0 / pow(theta, Double(2 * i) / Double(headDim)))
            for p in 0..<maxLength {
                let angle = Double(Float(p) * invFreq)
                c[p * half + i] = Float(cos(angle))
                s[p * half + i] = Float(sin(angle))
            }
        }
        cosTable = c
        sinTable = s
    }

    /// Rotates `heads` heads laid side by side in each of T rows (row stride `stride`),
    /// rows at positions firstPosition..<firstPosition+T; `inverse` applies the transpose
    /// (for the backward).
    func apply(_ x: UnsafeMutablePointer<Float>, rows T: Int, heads: Int, stride: Int, inverse: Bool,
               firstPosition: Int = 0) {
        precondition(firstPosition + T <= maxLength, "RotaryEmbedding: position beyond the table")
        let half = headDim / 2
        cosTable.withUnsafeBufferPointer { cp in
            sinTable.withUnsafeBufferPointer { sp in
                for t in 0..<T {
                    let p = firstPosition + t
                    let cr = cp.baseAddress! + p * half, sr = sp.baseAddress! + p * half
                    for h in 0..<heads {
                        let a = x + t * stride + h * headDim, b = a + half
                        var i = 0
                        while i + 8 <= half {
                            let c = load8(cr + i)
                            let s = inverse ? -load8(sr + i) : load8(sr + i)
                            let x1 = load8(a + i), x2 = load8(b + i)
                            store8(x1 * c - x2 * s, a + i)
                            store8(x2 * c + x1 * s, b + i)
                            i += 8
                        }
                        while i < half {
                            let c = cr[i], s = inverse ? -sr[i] : sr[i]
                            let x1 = a[i], x2 = b[i]
                            a[i] = x1 * c - x2 * s
                            b[i] = x2 * c + x1 * s
                            i += 1
                        }
                    }
                }
            }
        }
    }
}
