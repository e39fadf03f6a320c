// TrainingStep: one optimizer step on one process — zero gradients, the nested
// forward/backward, gradient clipping, AdamW.
import SortedKit

public struct StepOutcome: Sendable {
    public let losses: [ExitLoss]
    /// Σ_e weight_e · mean CE_e: the objective that was minimised.
    public let totalLoss: Double
    /// Gradient norm before clipping.
    public let gradientNorm: Double
}

public final class TrainingStep {
    public let model: LlamaModel
    public let pass: SortedPass
    public let optimizer: AdamW
    public let objective: SortedObjective
    public let maxGradNorm: Double?

    public init(model: LlamaModel, config: RunConfig) throws {
        self.model = model
        pass = try SortedPass(model: model, batchSize: config.train.microBatchSize,
                              sequenceLength: config.train.sequenceLength)
        optimizer = try AdamW(layout: model.layout, settings: config.optimizer)
        objective = config.objective
        maxGradNorm = config.maxGradNorm
    }

    public func run(_ batch: TokenBatch, step: Int, learningRate: Double) -> StepOutcome {
        StepProfiler.measure("zero gradients") { model.zeroGradients() }
        let exits = objective.activeExits(step: step)
        let losses = pass.run(batch, exits: exits, lossNormalizer: Double(max(batch.labelledCount, 1)))
        let norm = StepProfiler.measure("gradient norm") { gradientNorm(model.gradients) }
        StepProfiler.measure("adamw") {
            optimizer.step(parameters: model.parameters, gradients: model.gradients, learningRate: learningRate,
                           gradientScale: maxGradNorm.map { clippingFactor(norm: norm, maxNorm: $0) } ?? 1)
        }
        let total = zip(exits, losses).map { $0.weight * $1.mean }.reduce(0, +)
        return StepOutcome(losses: losses, totalLoss: total, gradientNorm: norm)
    }
}
