// Trainer: the data-parallel SoFT loop. Every rank holds the whole model, runs the nested
// forward/backward on its micro-batches, and the gradients are summed across ranks bucket
// by bucket during the last micro-step's backward (GradientSync). The loss is normalised by
// the global count of labelled tokens, so any world size gives the same update for the
// same global batch, up to summation order. Under ZeRO-1 (distributed.zero_stage 1) the
// buckets are reduce-scattered instead, each rank updates only its owned range (and keeps
// only its moments), and the updated parameters are all-gathered.
import Foundation
import SortedDistributed
import SortedKit

public struct StepMetrics: Codable, Sendable {
    public var step: Int
    /// Mean cross-entropy of each exit over the global batch, keyed by depth.
    public var exitLosses: [String: Double]
    /// Each exit's factor in `loss` this step (the objective's weights, schedule and curriculum).
    public var exitWeights: [String: Double]
    /// With self-distillation: each exit's mean KL(teacher ‖ exit) at the temperature (the
    /// deepest exit, the teacher, has none); `loss` includes α·τ²·Σ of them.
    public var exitKL: [String: Double]?
    public var loss: Double
    public var gradientNorm: Double
    public var lr: Double
    /// Tokens in the global batch, and those of them that carry loss.
    public var tokens: Int
    public var lossTokens: Int
    public var stepSeconds: Double
    public var computeSeconds: Double
    public var exposedCommunicationSeconds: Double
    public var skipped: Bool
    /// This rank's peak resident memory so far (VmHWM), in MiB.
    public var peakRSSMiB: Double

    enum CodingKeys: String, CodingKey {
        case step, exitLosses = "exit_losses", exitWeights = "exit_weights", exitKL = "exit_kl", loss,
             gradientNorm = "grad_norm", lr, tokens, lossTokens = "loss_tokens", stepSeconds = "step_s", computeSeconds = "compute_s",
             exposedCommunicationSeconds = "exposed_comm_s", skipped, peakRSSMiB = "peak_rss_mb"
    }
}

public struct TrainingSummary: Sendable {
    public var stepsRun: Int
    public var finalStep: Int
    public var skippedSteps: Int
    public var stoppedBySignal: Bool
    public var lastMetrics: StepMetrics?
}

public final class Trainer {
    public let config: RunConfig
    public let model: LlamaModel
    public let communicator: Communicator
    private let pass: SortedPass
    public let optimizer: AdamW
    /// Under ZeRO-1 on several ranks, who owns which parameters; nil: every rank owns all.
    public let partition: ParameterPartition?
    private let sync: GradientSync?
    private let data: TrainingBatchSource
    private let schedule: LearningRateSchedule
    /// Called on every rank after every step (rank 0 prints and logs).
    public var onStep: ((StepMetrics) -> Void)?
    /// Where the run stands; advanced by every step, replaced whole by `restore`.
    public private(set) var state = TrainingState.start
    /// Examples in one global batch at this world size.
    public var globalBatchSize: Int {
        config.train.microBatchSize * communicator.size * config.train.accumulationSteps
    }

    public init(config: RunConfig, model: LlamaModel, communicator: Communicator, data: TrainingBatchSource) throws {
        guard data.microBatchSize == config.train.microBatchSize, data.sequenceLength == config.train.sequenceLength else {
            throw TrainingError.batchShapeMismatch(source: [data.microBatchSize, data.sequenceLength], config: [config.train.microBatchSize, config.train.sequenceLength])
        }
        self.config = config
        self.model = model
        self.communicator = communicator
        self.data = data
        pass = try SortedPass(model: model, batchSize: config.train.microBatchSize,
                              sequenceLength: config.train.sequenceLength,
                              recompute: config.train.recompute == .layers, precision: config.train.precision)
        partition = config.distributed.zeroStage == 1 && communicator.size > 1
            ? ParameterPartition(layout: model.layout, ranks: communicator.size) : nil
        optimizer = try AdamW(layout: model.layout, settings: config.optimizer, owned: partition?.ranges[communicator.rank])
        sync = communicator.size > 1
            ? GradientSync(communicator: communicator, model: model, timeout: config.distributed.timeoutSeconds,
                           partition: partition) : nil
        schedule = config.schedule
    }

    /// Rank 0's parameters go to every rank; every rank then checks that all hold the same
    /// bytes (a checksum compared across ranks).
    public func synchronizeInitialWeights() throws {
        let p = model.parameters
        try communicator.broadcast(UnsafeMutableRawPointer(p.pointer), bytes: p.count * 4, root: 0)
        try verifyIdentical("the weights after the broadcast", [Int64(checksum(p))])
    }

    /// Checks that every rank holds the same values (Communicator.verifyIdentical), else
    /// throws on every rank.
    public func verifyIdentical(_ what: String, _ values: [Int64]) throws {
        try communicator.verifyIdentical(values) { first in
            TrainingError.ranksDiffer(rank: first, what: what)
        }
    }

    /// Weights, moments and position, for checking that a resume left every rank alike.
    /// Under ZeRO-1 each rank holds other moments, so they are left out (their digests were
    /// checked as they were read).
    public func stateFingerprint() -> [Int64] {
        let moments = partition == nil ? [Int64(checksum(optimizer.firstMoment)), Int64(checksum(optimizer.secondMoment))] : []
        return [Int64(checksum(model.parameters))] + moments
            + [Int64(state.step), Int64(state.sampleCursor), Int64(state.optimizerSteps)]
    }

    /// The checksum ranks compare for a buffer (Communicator.checksum).
    private func checksum(_ buffer: FloatBuffer) -> UInt32 {
        communicator.checksum(UnsafeBufferPointer(start: buffer.pointer, count: buffer.count))
    }

    /// Continues the run from `state` (a checkpoint's; the weights and moments are loaded
    /// separately into `model` and `optimizer`).
    public func restore(_ state: TrainingState) {
        self.state = state
    }

    /// Runs steps state.step..<train.max_steps (or ..<until), or until `shouldStop` turns
    /// true on any rank (then every rank stops after the same step).
    public func run(until end: Int? = nil, shouldStop: () -> Bool = { false }) throws -> TrainingSummary {
        var summary = TrainingSummary(stepsRun: 0, finalStep: state.step, skippedSteps: 0, stoppedBySignal: false, lastMetrics: nil)
        while state.step < min(end ?? config.train.maxSteps, config.train.maxSteps) {
            let metrics = try trainStep(state.step, stopRequested: shouldStop)
            state.step += 1
            summary.stepsRun += 1
            summary.finalStep = state.step
            if metrics.0.skipped { summary.skippedSteps += 1 }
            summary.lastMetrics = metrics.0
            onStep?(metrics.0)
            if metrics.stop {
                summary.stoppedBySignal = true
                break
            }
        }
        return summary
    }

    /// One global step. Returns its metrics and whether any rank asked to stop.
    /// `stopRequested` is asked after the backward, so a signal during the step stops the
    /// run after it rather than one step later.
    func trainStep(_ step: Int, stopRequested: () -> Bool) throws -> (StepMetrics, stop: Bool) {
        let start = ContinuousClock.now
        var exposed = 0.0
        let rank = communicator.rank, world = communicator.size
        let batches = try data.microBatches(cursor: state.sampleCursor, rank: rank, worldSize: world,
                                            accumulationSteps: config.train.accumulationSteps)
        for batch in batches { try batch.validate(vocabSize: model.config.vocabSize) }

        // The loss is averaged over the labelled tokens of the whole global batch.
        var counts = [Double(batches.reduce(0) { $0 + $1.labelledCount })]
        exposed += try timed { try communicator.allReduceSum(&counts) }
        let normalizer = max(counts[0], 1)

        let exits = config.objective.activeExits(step: step)
        StepProfiler.measure("zero gradients") { model.zeroGradients() }
        var nll = [Double](repeating: 0, count: exits.count), kl = nll
        let distillation = config.objective.distillation
        var syncError: Error?
        for (i, batch) in batches.enumerated() {
            let last = i == batches.count - 1
            let hook: ((GradientBucket) -> Void)? = (last && sync != nil) ? { bucket in
                guard syncError == nil else { return }
                do { try self.sync!.bucketReady(bucket) } catch { syncError = error }
            } : nil
            let losses = pass.run(batch, exits: exits, lossNormalizer: normalizer, distillation: distillation, onGradientsReady: hook)
            for (j, loss) in losses.enumerated() {
                nll[j] += loss.negativeLogLikelihood
                kl[j] += loss.klDivergence
            }
        }
        if let error = syncError { throw error }
        var gradients = model.gradients
        if let sync {
            exposed += try sync.finish()
            gradients = sync.reduced
        }

        // Per-exit losses (and KL) over the global batch, the stop votes of all ranks and,
        // under ZeRO-1, the ranks' shares of the squared gradient norm.
        let partialNorm = partition == nil ? [] : [StepProfiler.measure("gradient norm") { squaredNorm(gradients) }]
        var totals = nll + (distillation != nil ? kl : []) + partialNorm + [stopRequested() ? 1 : 0]
        exposed += try timed { try communicator.allReduceSum(&totals) }
        let exitLosses = exits.indices.map { totals[$0] / normalizer }
        let exitKL = distillation != nil ? exits.indices.map { totals[exits.count + $0] / normalizer } : []
        let distilled = distillation.map { d in d.weight * d.temperature * d.temperature * exitKL.reduce(0, +) } ?? 0
        let loss = zip(exits, exitLosses).map { $0.weight * $1 }.reduce(0, +) + distilled

        let norm = partition == nil ? StepProfiler.measure("gradient norm") { gradientNorm(gradients) }
            : totals[totals.count - 2].squareRoot()
        // Clipping is applied inside the AdamW pass (one pass over the gradients fewer).
        let clip = config.maxGradNorm.map { clippingFactor(norm: norm, maxNorm: $0) } ?? 1
        let lr = schedule.rate(at: step)
        var skipped = false
        if !loss.isFinite || !norm.isFinite {
            guard config.train.skipNonFiniteSteps else {
                throw TrainingError.nonFinite(step: step + 1, quantity: loss.isFinite ? "gradient norm" : "loss",
                                              value: loss.isFinite ? norm : loss)
            }
            skipped = true
        } else {
            state.optimizerSteps += 1
            StepProfiler.measure("adamw") {
                optimizer.step(state.optimizerSteps, parameters: model.parameters, gradients: gradients, learningRate: lr,
                               gradientScale: clip)
            }
            if let partition {
                // Every rank's updated range to every rank: all hold the whole model again.
                exposed += try timed {
                    try communicator.allGather(model.parameters.pointer, counts: partition.ranges.map(\.count))
                }
            }
        }
        state.sampleCursor += globalBatchSize
        let seconds = (ContinuousClock.now - start).seconds
        var byDepth: [String: Double] = [:], weights: [String: Double] = [:], divergences: [String: Double] = [:]
        for (i, exit) in exits.enumerated() {
            byDepth[String(exit.depth)] = exitLosses[i]
            weights[String(exit.depth)] = exit.weight
            if !exitKL.isEmpty && i < exits.count - 1 { divergences[String(exit.depth)] = exitKL[i] }
        }
        let metrics = StepMetrics(step: step + 1, exitLosses: byDepth, exitWeights: weights,
                                  exitKL: distillation != nil ? divergences : nil, loss: loss, gradientNorm: norm, lr: lr,
                                  tokens: globalBatchSize * config.train.sequenceLength, lossTokens: Int(counts[0]), stepSeconds: seconds, computeSeconds: seconds - exposed,
                                  exposedCommunicationSeconds: exposed, skipped: skipped, peakRSSMiB: ProcessMemory.peakMiB())
        return (metrics, totals[totals.count - 1] > 0)
    }

    private func timed(_ body: () throws -> Void) throws -> Double {
        let start = ContinuousClock.now
        try body()
        return (ContinuousClock.now - start).seconds
    }
}
