// RMSNorm over rows of D features: y = x · w / sqrt(mean(x²) + eps), as HF LlamaRMSNorm.

enum RMSNorm {
    /// x, y: [N, D]; weight: [D]; inverseRMS: [N] saved for the backward.
    static func forward(x: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                        y: UnsafeMutablePointer<Float>, inverseRMS: UnsafeMutablePointer<Float>,
                        rows: Int, dim D: Int, eps: Float) {
        for t in 0..<rows {
            let xr = x + t * D, yr = y + t * D
            let inv = 1 / (dot(xr, xr, D) / Float(D) + eps).squareRoot()
            inverseRMS[t] = inv
            var i = 0
            let s = Float8(repeating: inv)
            while i + 8 <= D {
                store8(load8(xr + i) * s * load8(weight + i), yr + i)
                i += 8
            }
            while i < D {
                yr[i] = xr[i] * inv * weight[i]
                i += 1
            }
        }
    }

    /// dx (+)= r·(g − x·r²·mean(g·x)) with g = w·dy, r = inverseRMS; dw += Σ_t dy·x·r.
    /// With `accumulate` false dx is overwritten.
    static func backward(dy: UnsafePointer<Float>, x: UnsafePointer<Float>,
                         weight: UnsafePointer<Float>, inverseRMS: UnsafePointer<Float>,
                         dx: UnsafeMutablePointer<Float>, dWeight: UnsafeMutablePointer<Float>,
                         rows: Int, dim D: Int, accumulate: Bool) {
        for t in 0..<rows {
            let xr = x + t * D, dyr = dy + t * D, dxr = dx + t * D
            let r = inverseRMS[t]
            // Σ_i w_i·dy_i·x_i
            var acc = Float8()
            var i = 0
            while i + 8 <= D {
                acc += load8(weight + i) * load8(dyr + i) * load8(xr + i)
                i += 8
            }
            var gx = acc.sum()
            while i < D {
                gx += weight[i] * dyr[i] * xr[i]
                i += 1
            }
            let c = r * r * r * gx / Float(D)
            let rv = Float8(repeating: r), cv = Float8(repeating: c)
            i = 0
            while i + 8 <= D {
                let xv = load8(xr + i), dyv = load8(dyr + i)
                let g = load8(weight + i) * dyv
                let d = rv * g - cv * xv
                store8(accumulate ? load8(dxr + i) + d : d, dxr + i)
                store8(load8(dWeight + i) + dyv * xv * rv, dWeight + i)
                i += 8
            }
            while i < D {
                let d = r * weight[i] * dyr[i] - c * xr[i]
                dxr[i] = accumulate ? dxr[i] + d : d
                dWeight[i] += dyr[i] * xr[i] * r
                i += 1
            }
        }
    }
}
