// SwiGLU activation: act = silu(gate) · up, with gate|up side by side in each row.

enum SwiGLU {
    /// gateUp: [N, 2F] (gate then up); act: [N, F].
    static func forward(gateUp: UnsafePointer<Float>, act: UnsafeMutablePointer<Float>, rows: Int, width F: Int) {
        Parallel.forEachRange(rows, grain: max(1, 8192 / F)) { range in
            forwardRows(gateUp: gateUp, act: act, rows: range, width: F)
        }
    }

    private static func forwardRows(gateUp: UnsafePointer<Float>, act: UnsafeMutablePointer<Float>, rows: Range<Int>, width F: Int) {
        let one = Float8(repeating: 1)
        for t in rows {
            let g = gateUp + t * 2 * F, u = g + F, a = act + t * F
            var i = 0
            while i + 8 <= F {
                let gv = load8(g + i)
                store8(gv / (one + exp8(-gv)) * load8(u + i), a + i)
                i += 8
            }
            while i < F {
                a[i] = g[i] / (1 + expScalar(-g[i])) * u[i]
                i += 1
            }
        }
    }

    /// dGateUp = [dact·u·σ(g)(1 + g(1−σ(g))) | dact·silu(g)], overwritten.
    static func backward(dAct: UnsafePointer<Float>, gateUp: UnsafePointer<Float>,
                         dGateUp: UnsafeMutablePointer<Float>, rows: Int, width F: Int) {
        Parallel.forEachRange(rows, grain: max(1, 8192 / F)) { range in
            backwardRows(dAct: dAct, gateUp: gateUp, dGateUp: dGateUp, rows: range, width: F)
        }
    }

    private static func backwardRows(dAct: UnsafePointer<Float>, gateUp: UnsafePointer<Float>,
                                     dGateUp: UnsafeMutablePointer<Float>, rows: Range<Int>, width F: Int) {
        let one = Float8(repeating: 1)
        for t in rows {
            let g = gateUp + t * 2 * F, u = g + F, da = dAct + t * F
            let dg = dGateUp + t * 2 * F, du = dg + F
            var i = 0
            while i + 8 <= F {
                let gv = load8(g + i), dav = load8(da + i)
                let sig = one / (one + exp8(-gv))
                store8(dav * load8(u + i) * sig * (one + gv * (one - sig)), dg + i)
                store8(dav * gv * sig, du + i)
                i += 8
            }
            while i < F {
                let sig = 1 / (1 + expScalar(-g[i]))
                dg[i] = da[i] * u[i] * sig * (1 + g[i] * (1 - sig))
                du[i] = da[i] * g[i] * sig
                i += 1
            }
        }
    }
}
