// Shared helpers for SortedKit tests: seeded data, tolerances, finite differences.
import XCTest
@testable import SortedKit

func randomArray(_ n: Int, seed: UInt64, scale: Double = 1, offset: Double = 0) -> [Float] {
    var rng = SplitMix64(seed: seed)
    return (0..<n).map { _ in Float(offset + scale * rng.nextNormal()) }
}

/// A heap buffer holding `values`: what finite differences perturb while the loss reads it.
func buffer(_ values: [Float]) -> FloatBuffer {
    let b = FloatBuffer(count: values.count)
    b.copy(from: values)
    return b
}

/// |actual − expected| ≤ atol + rtol·|expected| for every element, else a failure naming
/// the worst element.
func assertClose(_ actual: [Float], _ expected: [Float], atol: Double, rtol: Double,
                 _ what: String, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(actual.count, expected.count, "\(what): sizes differ", file: file, line: line)
    var worst = -1.0, worstIndex = 0
    for i in 0..<min(actual.count, expected.count) {
        let excess = abs(Double(actual[i]) - Double(expected[i])) - (atol + rtol * abs(Double(expected[i])))
        if excess > worst { worst = excess; worstIndex = i }
    }
    if worst > 0 {
        XCTFail("\(what): element \(worstIndex) is \(actual[worstIndex]), expected \(expected[worstIndex]) (atol \(atol), rtol \(rtol))",
                file: file, line: line)
    }
}

/// Central finite differences of `loss` with respect to `values[i]` for the given indices,
/// compared with `analytic[i]`. The loss is evaluated in Float32, so the step is large
/// and the tolerance relative to the gradient's scale.
func checkFiniteDifferences(_ buffer: FloatBuffer, indices: [Int], analytic: [Float],
                            step h: Float = 1e-2, rtol: Double = 2e-2, what: String,
                            loss: () -> Double, file: StaticString = #filePath, line: UInt = #line) {
    let values = buffer.pointer
    let scale = max(analytic.map { abs(Double($0)) }.max() ?? 0, 1e-6)
    for i in indices {
        let saved = values[i]
        values[i] = saved + h
        let up = loss()
        values[i] = saved - h
        let down = loss()
        values[i] = saved
        let numeric = (up - down) / Double(2 * h)
        let error = abs(numeric - Double(analytic[i]))
        XCTAssertLessThanOrEqual(error, rtol * max(abs(numeric), scale * 0.05),
                                 "\(what)[\(i)]: analytic \(analytic[i]) vs numeric \(numeric)", file: file, line: line)
    }
}

/// `count` distinct indices in 0..<n, spread deterministically.
func sampleIndices(_ n: Int, count: Int, seed: UInt64) -> [Int] {
    var rng = SplitMix64(seed: seed)
    var set = Set<Int>()
    while set.count < min(count, n) { set.insert(Int(rng.next() % UInt64(n))) }
    return set.sorted()
}

/// Σ a·b in double precision.
func weightedSum(_ a: UnsafePointer<Float>, _ b: [Float]) -> Double {
    var s = 0.0
    for i in 0..<b.count { s += Double(a[i]) * Double(b[i]) }
    return s
}
