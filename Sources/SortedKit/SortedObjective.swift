// The Sorted Fine-Tuning objective: which exits train in a step and with what weight.
// An exit k is the sub-model "first k layers + the shared final norm and LM head".

import Foundation

public enum LossReduction: String, CaseIterable, Codable, Sendable {
    /// Σ_e w_e·CE_e / Σ_e w_e over the step's exits (the paper's Eq. 1 with uniform w).
    case mean
    /// Σ_e w_e·CE_e (the paper's text).
    case sum
}

public enum ExitSampling: String, CaseIterable, Codable, Sendable {
    /// Every exit every step, as in Sorted LLaMA.
    case all
    /// One exit drawn per step (seeded, from the step number) plus the last layer, as SortedNet.
    case random
}

/// sorted.scale: each active exit's weight as a function of its depth l, normalised to sum 1
/// over the step's exits — torchtune's early-exit loss scales (uniform: 1, linear: l, sum: the
/// running sum of the active depths up to l, sqrt: √l, inverse: 1/l, inverse_sqrt: 1/√l).
public enum ExitScale: String, CaseIterable, Codable, Sendable {
    case uniform, linear, sum, sqrt, inverse
    case inverseSqrt = "inverse_sqrt"

    /// The weights of `depths` (ascending), summing to 1.
    public func weights(_ depths: [Int]) -> [Double] {
        let l = depths.map(Double.init)
        var raw: [Double]
        switch self {
        case .uniform: raw = l.map { _ in 1 }
        case .linear: raw = l
        case .sum:
            var running = 0.0
            raw = l.map { running += $0; return running }
        case .sqrt: raw = l.map { $0.squareRoot() }
        case .inverse: raw = l.map { 1 / $0 }
        case .inverseSqrt: raw = l.map { 1 / $0.squareRoot() }
        }
        let total = raw.reduce(0, +)
        return raw.map { $0 / total }
    }
}

/// sorted.curriculum: which exits train at a step, as torchtune's early-exit curricula define
/// it over the mask of layers that have an exit; the last layer always trains.
public enum ExitCurriculum: String, CaseIterable, Codable, Sendable {
    /// Every exit every step.
    case none
    /// The mask moves one layer deeper every step, wrapping around (so, over L steps, every
    /// depth trains as an exit).
    case rotational
    /// Exits switch on from the deepest down: layer i (of L) joins once the fraction of steps
    /// done reaches ½·(L − i + 1)/L, so all have joined by half of max_steps.
    case gradual
}

/// How an exit's weight ramps from its start value to its target (EE-LLM's warm-up).
public enum WarmupShape: String, CaseIterable, Codable, Sendable {
    case linear, cosine
}

/// An exit trained in one step and its factor in the total loss.
public struct WeightedExit: Sendable, Equatable {
    public let depth: Int
    public let weight: Double
    public init(depth: Int, weight: Double) {
        self.depth = depth
        self.weight = weight
    }
}

/// An exit weight's warm-up: from `start` to its target over `steps` steps (EE-LLM).
public struct ExitWarmup: Sendable, Equatable {
    /// Per exit of the objective (the same order), the weight at step 0 and the ramp's length.
    public var start: [Double]
    public var steps: [Int]
    public var shape: WarmupShape

    public init(start: [Double], steps: [Int], shape: WarmupShape) {
        self.start = start
        self.steps = steps
        self.shape = shape
    }

    /// The weight at `step` of an exit whose target is `target`.
    func weight(exit i: Int, target: Double, step: Int) -> Double {
        guard step < steps[i] else { return target }
        let t = Double(step) / Double(steps[i])
        let r = shape == .linear ? t : (1 - cos(Double.pi * t)) / 2
        return start[i] + (target - start[i]) * r
    }
}

public struct SortedObjective: Sendable, Equatable {
    public let exits: [Int]
    public let weights: [Double]
    public let reduction: LossReduction
    public let sampling: ExitSampling
    public let seed: UInt64
    public let numLayers: Int
    /// When set, the weights come from the exits' depths (normalised), not from `weights`.
    public let scale: ExitScale?
    public let curriculum: ExitCurriculum
    public let warmup: ExitWarmup?
    /// The run's length, which the gradual curriculum is a fraction of.
    public let totalSteps: Int
    /// Self-distillation of every exit from the step's deepest one.
    public var distillation: Distillation?

    /// exits: sorted, unique, within 1...numLayers. weights: one per exit, positive.
    public init(exits: [Int], numLayers: Int, reduction: LossReduction = .mean,
                weights: [Double]? = nil, sampling: ExitSampling = .all, seed: UInt64 = 0,
                scale: ExitScale? = nil, curriculum: ExitCurriculum = .none, warmup: ExitWarmup? = nil,
                totalSteps: Int = 0, distillation: Distillation? = nil) throws {
        if exits.isEmpty { throw ConfigError(key: "sorted.exits", "is empty; give at least one depth, e.g. [\(numLayers)]") }
        for (i, e) in exits.enumerated() {
            if e < 1 || e > numLayers {
                throw ConfigError(key: "sorted.exits", "depth \(e) is outside 1...\(numLayers) (the model has \(numLayers) layers)")
            }
            if i > 0 && exits[i - 1] >= e {
                throw ConfigError(key: "sorted.exits", "must be sorted and unique, got \(exits)")
            }
        }
        if let w = weights {
            if w.count != exits.count {
                throw ConfigError(key: "sorted.weights", "has \(w.count) values for \(exits.count) exits")
            }
            if let bad = w.first(where: { !($0 > 0 && $0.isFinite) }) {
                throw ConfigError(key: "sorted.weights", "must be positive numbers, got \(bad)")
            }
            // They are normalised by their sum: it must be a finite positive number too.
            let sum = w.reduce(0, +)
            if !(sum.isFinite && sum > 0) {
                throw ConfigError(key: "sorted.weights", "sum to \(sum), which cannot normalise them; use smaller values (only their ratios matter)")
            }
        }
        if scale != nil && weights != nil {
            throw ConfigError(key: "sorted.scale", "sets the exits' weights, as sorted.weights does; keep one")
        }
        if curriculum != .none && sampling != .all {
            throw ConfigError(key: "sorted.curriculum", "chooses the exits of each step, as sorted.sampling \"\(sampling.rawValue)\" does; keep one")
        }
        // A rotated mask trains depths that are not among the exits: they have no weight or warm-up of their own.
        if curriculum == .rotational && (weights != nil || warmup != nil) {
            throw ConfigError(key: "sorted.curriculum", "rotational trains depths outside sorted.exits, which per-exit weights and warm-ups cannot name; use sorted.scale")
        }
        if let warmup {
            guard warmup.start.count == exits.count, warmup.steps.count == exits.count else {
                throw ConfigError(key: "sorted.weight_start", "needs one value per exit (\(exits.count)), or one for all")
            }
            if let bad = warmup.start.first(where: { !($0 >= 0 && $0.isFinite) }) {
                throw ConfigError(key: "sorted.weight_start", "must be numbers ≥ 0, got \(bad)")
            }
            if let bad = warmup.steps.first(where: { $0 < 0 }) {
                throw ConfigError(key: "sorted.warmup_steps", "must be ≥ 0, got \(bad)")
            }
        }
        if let d = distillation {
            if !(d.weight >= 0 && d.weight.isFinite) { throw ConfigError(key: "sorted.distill.weight", "must be a number ≥ 0, got \(d.weight)") }
            if !(d.temperature > 0 && d.temperature.isFinite) {
                throw ConfigError(key: "sorted.distill.temperature", "must be a positive number, got \(d.temperature)")
            }
        }
        self.distillation = distillation
        self.exits = exits
        self.weights = weights ?? Array(repeating: 1, count: exits.count)
        self.reduction = reduction
        self.sampling = sampling
        self.seed = seed
        self.numLayers = numLayers
        self.scale = scale
        self.curriculum = curriculum
        self.warmup = warmup
        self.totalSteps = totalSteps
    }

    /// Plain supervised fine-tuning: the full model only.
    public static func sft(numLayers: Int) -> SortedObjective {
        try! SortedObjective(exits: [numLayers], numLayers: numLayers)
    }

    /// The exits of `step` (0-based) with their factors in the total loss (summing to 1 for
    /// `mean`). A pure function of (config, step), so a resumed run trains the same exits with
    /// the same weights.
    public func activeExits(step: Int) -> [WeightedExit] {
        let depths = activeDepths(step: step)
        var chosen: [(depth: Int, weight: Double)]
        if let scale {
            chosen = Array(zip(depths, scale.weights(depths)))
        } else {
            // The last layer outside the exits (random sampling adds it) weighs 1.
            chosen = depths.map { d in (d, exits.firstIndex(of: d).map { weights[$0] } ?? 1) }
        }
        if let warmup {
            chosen = chosen.map { exit in
                guard let i = exits.firstIndex(of: exit.depth) else { return exit }
                return (exit.depth, warmup.weight(exit: i, target: exit.weight, step: step))
            }
        }
        let total = reduction == .mean ? chosen.reduce(0) { $0 + $1.weight } : 1
        return chosen.map { WeightedExit(depth: $0.depth, weight: total > 0 ? $0.weight / total : 0) }
    }

    /// The depths that train at `step`, ascending.
    func activeDepths(step: Int) -> [Int] {
        switch (sampling, curriculum) {
        case (.random, _):
            var rng = SplitMix64(seed: seed ^ (UInt64(truncatingIfNeeded: step) &* 0x9E37_79B9_7F4A_7C15))
            let drawn = exits[Int(rng.next() % UInt64(exits.count))]
            return drawn == numLayers ? [drawn] : [drawn, numLayers]
        case (.all, .none):
            return exits
        case (.all, .rotational):
            // torchtune rolls the layer mask one place per step: layer i has an exit at step s
            // when layer (i − s) mod L had one at the start.
            let L = numLayers, s = step % L
            let rotated = Set(exits.map { ($0 - 1 + s) % L + 1 })
            return (1...L).filter { rotated.contains($0) || $0 == L }
        case (.all, .gradual):
            // torchtune's recipe reads the mask before each step and updates it after, from the
            // steps done before: step 0 trains the last layer only, step s the exits whose layer
            // index i (0-based) has (s − 1)/max_steps ≥ ½·(L − i)/L.
            // The last layer trains from step 0, also when it is not one of the exits.
            let L = Double(numLayers)
            let done = step == 0 ? -1 : Double(step - 1) / Double(max(totalSteps, 1))
            let joined = exits.filter { $0 < numLayers && done >= 0.5 * (L - Double($0 - 1)) / L }
            return joined + [numLayers]
        }
    }
}
