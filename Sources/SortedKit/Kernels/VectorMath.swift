// VectorMath: SIMD helpers for the elementwise kernels (exp, dot, sums).

typealias Float8 = SIMD8<Float>

@inline(__always)
func load8(_ p: UnsafePointer<Float>) -> Float8 {
    UnsafeRawPointer(p).loadUnaligned(as: Float8.self)
}

@inline(__always)
func store8(_ v: Float8, _ p: UnsafeMutablePointer<Float>) {
    UnsafeMutableRawPointer(p).storeBytes(of: v, as: Float8.self)
}

/// exp for 8 lanes: Cody–Waite range reduction and Cephes' degree-6 polynomial, within
/// 2 ulp of `Foundation.exp` on [-87, 88]; inputs below -87 return ~1e-38.
/// Rounding and 2^n use the 1.5·2^23 trick: SIMD float↔int conversions are not
/// vectorised by the compiler, integer adds on the bit pattern are. Clamping uses
/// `replace(with:where:)`: `clamped` and `pointwiseMin/Max` are not inlined (3× slower).
@inline(__always)
func exp8(_ input: Float8) -> Float8 {
    let magic = Float8(repeating: 12_582_912)  // 1.5·2^23: adding it rounds to an integer
    var x = input
    x.replace(with: Float8(repeating: -87.0), where: x .< Float8(repeating: -87.0))
    x.replace(with: Float8(repeating: 88.0), where: x .> Float8(repeating: 88.0))
    let shifted = x * 1.44269504088896341 + magic
    let n = shifted - magic
    var r = x - n * 0.693359375
    r = r - n * -2.12194440e-4
    var p = Float8(repeating: 1.9875691500e-4)
    p = p * r + 1.3981999507e-3
    p = p * r + 8.3334519073e-3
    p = p * r + 4.1665795894e-2
    p = p * r + 1.6666665459e-1
    p = p * r + 5.0000001201e-1
    p = p * (r * r) + r + 1
    // The low bits of `shifted` hold n; rebias it as an exponent to build 2^n.
    let exponent = (unsafeBitCast(shifted, to: SIMD8<Int32>.self) &- 0x4B40_0000 &+ 127) &<< 23
    return p * unsafeBitCast(exponent, to: Float8.self)
}

@inline(__always)
func expScalar(_ x: Float) -> Float {
    exp8(Float8(repeating: x))[0]
}

/// Σ a[i]·b[i] over n values.
@inline(__always)
func dot(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ n: Int) -> Float {
    var acc = Float8()
    var i = 0
    while i + 8 <= n {
        acc += load8(a + i) * load8(b + i)
        i += 8
    }
    var sum = acc.sum()
    while i < n {
        sum += a[i] * b[i]
        i += 1
    }
    return sum
}

/// y[i] += x[i] over n values.
@inline(__always)
func addInPlace(_ y: UnsafeMutablePointer<Float>, _ x: UnsafePointer<Float>, _ n: Int) {
    var i = 0
    while i + 8 <= n {
        store8(load8(y + i) + load8(x + i), y + i)
        i += 8
    }
    while i < n {
        y[i] += x[i]
        i += 1
    }
}

/// y[i] += a·x[i] over n values.
@inline(__always)
func axpy(_ y: UnsafeMutablePointer<Float>, _ a: Float, _ x: UnsafePointer<Float>, _ n: Int) {
    let s = Float8(repeating: a)
    var i = 0
    while i + 8 <= n {
        store8(load8(y + i) + s * load8(x + i), y + i)
        i += 8
    }
    while i < n {
        y[i] += a * x[i]
        i += 1
    }
}

/// Largest value of n > 0 floats.
@inline(__always)
func maxValue(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
    var best = Float8(repeating: -.infinity)
    var i = 0
    while i + 8 <= n {
        let v = load8(x + i)
        best.replace(with: v, where: v .> best)
        i += 8
    }
    var m = best.max()
    while i < n {
        m = max(m, x[i])
        i += 1
    }
    return m
}

/// x[i] = exp(x[i] - shift) in place; returns Σ of the results.
@inline(__always)
func expShiftedInPlace(_ x: UnsafeMutablePointer<Float>, _ n: Int, shift: Float) -> Float {
    var acc = Float8()
    let s = Float8(repeating: shift)
    var i = 0
    while i + 8 <= n {
        let e = exp8(load8(x + i) - s)
        store8(e, x + i)
        acc += e
        i += 8
    }
    var sum = acc.sum()
    while i < n {
        let e = expScalar(x[i] - shift)
        x[i] = e
        sum += e
        i += 1
    }
    return sum
}

/// x[i] *= a over n values.
@inline(__always)
func scaleInPlace(_ x: UnsafeMutablePointer<Float>, _ n: Int, by a: Float) {
    let s = Float8(repeating: a)
    var i = 0
    while i + 8 <= n {
        store8(load8(x + i) * s, x + i)
        i += 8
    }
    while i < n {
        x[i] *= a
        i += 1
    }
}
