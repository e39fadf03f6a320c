// LearningRateSchedule: linear warm-up, then constant, linear or cosine decay to a floor.
import Foundation

public struct LearningRateSchedule: Equatable, Sendable {
    public enum Kind: String, CaseIterable, Sendable { case constant, linear, cosine }

    public var kind: Kind
    public var peak: Double
    public var warmupSteps: Int
    public var minimum: Double
    public var totalSteps: Int

    public init(kind: Kind, peak: Double, warmupSteps: Int, minimum: Double, totalSteps: Int) {
        self.kind = kind
        self.peak = peak
        self.warmupSteps = warmupSteps
        self.minimum = minimum
        self.totalSteps = totalSteps
    }

    /// The rate for 0-based `step`: warm-up reaches `peak` at step warmupSteps − 1.
    public func rate(at step: Int) -> Double {
        if step < warmupSteps { return peak * Double(step + 1) / Double(warmupSteps) }
        let decaySteps = max(totalSteps - warmupSteps, 1)
        let progress = min(max(Double(step - warmupSteps) / Double(decaySteps), 0), 1)
        switch kind {
        case .constant: return peak
        case .linear: return minimum + (peak - minimum) * (1 - progress)
        case .cosine: return minimum + (peak - minimum) * 0.5 * (1 + cos(Double.pi * progress))
        }
    }
}
