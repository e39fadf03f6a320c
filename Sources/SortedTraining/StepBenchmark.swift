// StepBenchmark: times full training steps (forward, backward, AdamW) for plain SFT and
// for SoFT on the same model and batch, next to the sgemm peak measured in the same process.
import Foundation
import SortedDistributed
import SortedKit

public struct StepBenchmarkResult: Codable, Sendable {
    public var sft_step_s: Double
    public var soft_step_s: Double
    public var sft_gflops: Double
    public var soft_gflops: Double
    public var sgemm_peak_gflops: Double
    public var sft_peak_fraction: Double
    public var soft_peak_fraction: Double
    public var flop_ratio: Double
    public var soft_sft_ratio: Double
    public var sft_peak_rss_mb: Double
    public var soft_peak_rss_mb: Double
    public var sft_tokens_per_s: Double
    public var openblas_core: String
    public var threads: Int
    public var sft_exits: [Int]
    public var soft_exits: [Int]
    public var batch: Int
    public var sequence_length: Int
    public var parameters: Int
    public var timed_steps: Int
    /// Seconds per step in each phase (with --breakdown); "other" is the rest of the step.
    public var sft_breakdown_s: [String: Double]?
    public var soft_breakdown_s: [String: Double]?
}

public enum StepBenchmark {
    /// Median step time over `steps` timed steps after `warmup` untimed ones.
    public static func run(config: RunConfig, steps: Int, warmup: Int, breakdown: Bool = false,
                           progress: @escaping (String) -> Void = { _ in }) throws -> StepBenchmarkResult {
        let c = config.model, B = config.train.microBatchSize, T = config.train.sequenceLength
        var rng = SplitMix64(seed: config.train.seed)
        let tokens = (0..<(B * T)).map { _ in Int32(rng.next() % UInt64(c.vocabSize)) }
        let targets = (0..<(B * T)).map { _ in Int32(rng.next() % UInt64(c.vocabSize)) }
        let batch = TokenBatch(batchSize: B, sequenceLength: T, tokens: tokens, targets: targets)

        // The sgemm reference: the best throughput on the step's two largest GEMM shapes
        // (fused gate|up projection, LM head chunk), measured before and after the steps.
        func sgemmPeak() -> Double {
            progress("sgemm peak on [\(B * T)×\(c.hiddenSize)]·[\(c.hiddenSize)×\(2 * c.intermediateSize)] and [512×\(c.hiddenSize)]·[\(c.hiddenSize)×\(c.vocabSize)]")
            return max(BLAS.measureGFLOPS(m: B * T, n: 2 * c.intermediateSize, k: c.hiddenSize, repeats: 20),
                       BLAS.measureGFLOPS(m: min(512, B * T), n: c.vocabSize, k: c.hiddenSize, repeats: 10))
        }
        let peakBefore = sgemmPeak()

        func measure(_ objective: SortedObjective, label: String)
            throws -> (seconds: Double, flops: Double, rss: Double, params: Int, phases: [String: Double]?) {
            ProcessMemory.resetPeak()
            var run = config
            run.objective = objective
            run.train.maxSteps = warmup + steps
            let model = try LlamaModel(config: c)
            model.initializeRandomly(seed: config.train.seed)
            // The trainer's own step, on one process, fed the same batch every step.
            let trainer = try Trainer(config: run, model: model, communicator: SingleProcessCommunicator(),
                                      data: FixedBatchSource(batch: batch))
            var times: [Double] = []
            let profiler = StepProfiler()
            defer { StepProfiler.active = nil }
            trainer.onStep = { m in
                let i = m.step - 1
                if i >= warmup { times.append(m.step_s) }
                if breakdown && i + 1 == warmup { StepProfiler.active = profiler }
                progress(String(format: "%@ step %d/%d: %.3f s, loss %.4f%@", label, m.step, warmup + steps, m.step_s,
                                m.loss, i < warmup ? " (warm-up)" : ""))
            }
            if breakdown && warmup == 0 { StepProfiler.active = profiler }
            _ = try trainer.run()
            let flops = StepFLOPs.trainingStep(c, batch: B, sequence: T, exits: objective.exits,
                                               labelledTokens: batch.labelledCount)
            var phases: [String: Double]? = nil
            if breakdown {
                var perStep = profiler.seconds.mapValues { $0 / Double(steps) }
                perStep["other"] = times.reduce(0, +) / Double(steps) - perStep.values.reduce(0, +)
                phases = perStep
            }
            return (median(times), flops, ProcessMemory.peakMiB(), model.layout.count, phases)
        }

        let sftObjective = SortedObjective.sft(numLayers: c.numHiddenLayers)
        let sft = try measure(sftObjective, label: "SFT")
        let soft = try measure(config.objective, label: "SoFT")
        let peak = max(peakBefore, sgemmPeak())
        let sftGflops = sft.flops / sft.seconds / 1e9, softGflops = soft.flops / soft.seconds / 1e9
        return StepBenchmarkResult(
            sft_step_s: sft.seconds, soft_step_s: soft.seconds,
            sft_gflops: sftGflops, soft_gflops: softGflops, sgemm_peak_gflops: peak,
            sft_peak_fraction: sftGflops / peak, soft_peak_fraction: softGflops / peak,
            flop_ratio: soft.flops / sft.flops, soft_sft_ratio: soft.seconds / sft.seconds,
            sft_peak_rss_mb: sft.rss, soft_peak_rss_mb: soft.rss,
            sft_tokens_per_s: Double(B * T) / sft.seconds,
            openblas_core: BLAS.coreName, threads: BLAS.threads,
            sft_exits: sftObjective.exits, soft_exits: config.objective.exits,
            batch: B, sequence_length: T, parameters: sft.params, timed_steps: steps,
            sft_breakdown_s: sft.phases, soft_breakdown_s: soft.phases)
    }

    /// The same batch at every cursor, so every timed step does identical work.
    final class FixedBatchSource: TrainingBatchSource {
        let batch: TokenBatch
        var microBatchSize: Int { batch.batchSize }
        var sequenceLength: Int { batch.sequenceLength }
        init(batch: TokenBatch) { self.batch = batch }
        func microBatches(cursor: Int, rank: Int, worldSize: Int, accumulationSteps: Int) throws -> [TokenBatch] {
            Array(repeating: batch, count: accumulationSteps)
        }
    }

    static func median(_ values: [Double]) -> Double {
        let s = values.sorted()
        guard !s.isEmpty else { return .nan }
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }
}
