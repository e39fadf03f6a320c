// StepProfiler: optional wall-clock totals per phase of a training step, for
// `sortedtrain bench --breakdown`. Off (nil) by default; then a phase costs one branch.

public final class StepProfiler: @unchecked Sendable {
    /// The profiler phases report to; set it to measure, leave nil otherwise.
    nonisolated(unsafe) public static var active: StepProfiler?

    public private(set) var seconds: [String: Double] = [:]
    public private(set) var order: [String] = []

    public init() {}

    public func add(_ phase: String, _ s: Double) {
        if seconds[phase] == nil { order.append(phase) }
        seconds[phase, default: 0] += s
    }

    public func reset() {
        seconds = [:]
        order = []
    }

    @inline(__always)
    public static func measure<T>(_ phase: String, _ body: () throws -> T) rethrows -> T {
        guard let profiler = active else { return try body() }
        let start = ContinuousClock.now
        defer { profiler.add(phase, (ContinuousClock.now - start).seconds) }
        return try body()
    }
}
