// The Sorted Fine-Tuning objective: which exits train in a step and with what weight.
// An exit k is the sub-model "first k layers + the shared final norm and LM head".

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

/// An exit trained in one step and its factor in the total loss.
public struct WeightedExit: Sendable, Equatable {
    public let depth: Int
    public let weight: Double
    public init(depth: Int, weight: Double) {
        self.depth = depth
        self.weight = weight
    }
}

public struct SortedObjective: Sendable, Equatable {
    public let exits: [Int]
    public let weights: [Double]
    public let reduction: LossReduction
    public let sampling: ExitSampling
    public let seed: UInt64
    public let numLayers: Int

    /// exits: sorted, unique, within 1...numLayers. weights: one per exit, positive.
    public init(exits: [Int], numLayers: Int, reduction: LossReduction = .mean,
                weights: [Double]? = nil, sampling: ExitSampling = .all, seed: UInt64 = 0) throws {
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
        }
        self.exits = exits
        self.weights = weights ?? Array(repeating: 1, count: exits.count)
        self.reduction = reduction
        self.sampling = sampling
        self.seed = seed
        self.numLayers = numLayers
    }

    /// Plain supervised fine-tuning: the full model only.
    public static func sft(numLayers: Int) -> SortedObjective {
        try! SortedObjective(exits: [numLayers], numLayers: numLayers)
    }

    /// The exits of `step` with their factors in the total loss (summing to 1 for `mean`).
    /// Depends only on (seed, step), so a resumed run draws the same exits.
    public func activeExits(step: Int) -> [WeightedExit] {
        var chosen: [(Int, Double)]
        switch sampling {
        case .all:
            chosen = Array(zip(exits, weights))
        case .random:
            var rng = SplitMix64(seed: seed ^ (UInt64(truncatingIfNeeded: step) &* 0x9E37_79B9_7F4A_7C15))
            let i = Int(rng.next() % UInt64(exits.count))
            chosen = [(exits[i], weights[i])]
            if exits[i] != numLayers {
                let lastWeight = exits.last == numLayers ? weights[weights.count - 1] : 1
                chosen.append((numLayers, lastWeight))
            }
        }
        let total = reduction == .mean ? chosen.reduce(0) { $0 + $1.1 } : 1
        return chosen.map { WeightedExit(depth: $0.0, weight: $0.1 / total) }
    }
}
