// StepBenchmark: times full training steps (forward, backward, AdamW) for plain SFT, for
// SoFT, for SoFT with self-distillation and for SoFT recomputing its layers in the backward
// on the same model and batch, next to the GEMM peak (in the run's precision) measured in the
// same process.
import Foundation
import SortedDistributed
import SortedKit

public struct StepBenchmarkResult: Codable, Sendable {
    public var sftStepSeconds: Double
    public var softStepSeconds: Double
    public var sftGFLOPS: Double
    public var softGFLOPS: Double
    /// The GEMM peak in train.precision (OpenBLAS sgemm in fp32, oneDNN with rounding in bf16),
    /// which the peak fractions are of.
    public var sgemmPeakGFLOPS: Double
    public var sftPeakFraction: Double
    public var softPeakFraction: Double
    public var flopRatio: Double
    public var softSFTRatio: Double
    public var sftPeakRSSMiB: Double
    public var softPeakRSSMiB: Double
    public var sftTokensPerSecond: Double
    public var openBLASCore: String
    /// train.precision of the measured steps (fp32 or bf16).
    public var precision: String
    public var threads: Int
    public var sftExits: [Int]
    public var softExits: [Int]
    public var batch: Int
    public var sequenceLength: Int
    public var parameters: Int
    public var timedSteps: Int
    /// Seconds per step in each phase (with --breakdown); "other" is the rest of the step.
    public var sftBreakdownSeconds: [String: Double]?
    public var softBreakdownSeconds: [String: Double]?
    /// SoFT with self-distillation (the config's sorted.distill, else α 1, τ 2): its step, and
    /// its step and peak memory as ratios to SoFT's without it; nil when not measured.
    public var distillStepSeconds: Double?
    public var distillSoFTRatio: Double?
    public var distillMemoryRatio: Double?
    public var distillation: [String: Double]?
    /// SoFT with train.recompute "layers": its step and peak memory, and both as ratios to
    /// SoFT's as the config has it; nil when not measured.
    public var recomputeStepSeconds: Double?
    public var recomputePeakRSSMiB: Double?
    public var recomputeSoFTRatio: Double?
    public var recomputeMemoryRatio: Double?

    enum CodingKeys: String, CodingKey {
        case sftStepSeconds = "sft_step_s", softStepSeconds = "soft_step_s", sftGFLOPS = "sft_gflops",
             softGFLOPS = "soft_gflops", sgemmPeakGFLOPS = "sgemm_peak_gflops",
             sftPeakFraction = "sft_peak_fraction", softPeakFraction = "soft_peak_fraction",
             flopRatio = "flop_ratio", softSFTRatio = "soft_sft_ratio", sftPeakRSSMiB = "sft_peak_rss_mb",
             softPeakRSSMiB = "soft_peak_rss_mb", sftTokensPerSecond = "sft_tokens_per_s",
             openBLASCore = "openblas_core", precision, threads, sftExits = "sft_exits", softExits = "soft_exits", batch,
             sequenceLength = "sequence_length", parameters, timedSteps = "timed_steps",
             sftBreakdownSeconds = "sft_breakdown_s", softBreakdownSeconds = "soft_breakdown_s",
             distillStepSeconds = "distill_step_s", distillSoFTRatio = "distill_soft_ratio",
             distillMemoryRatio = "distill_memory_ratio", distillation,
             recomputeStepSeconds = "recompute_step_s", recomputePeakRSSMiB = "recompute_peak_rss_mb",
             recomputeSoFTRatio = "recompute_soft_ratio", recomputeMemoryRatio = "recompute_memory_ratio"
    }
}

public enum StepBenchmark {
    /// Median step time over `steps` timed steps after `warmup` untimed ones, at the config's
    /// micro_batch_size × sequence_length. `distill`: also SoFT with self-distillation;
    /// `recompute`: also SoFT with train.recompute "layers".
    public static func run(config: RunConfig, steps: Int, warmup: Int, breakdown: Bool = false, distill: Bool = true,
                           recompute: Bool = false,
                           progress: @escaping (String) -> Void = { _ in }) throws -> StepBenchmarkResult {
        let c = config.model, B = config.train.microBatchSize, T = config.train.sequenceLength
        var rng = SplitMix64(seed: config.train.seed)
        let tokens = (0..<(B * T)).map { _ in Int32(rng.next() % UInt64(c.vocabSize)) }
        let targets = (0..<(B * T)).map { _ in Int32(rng.next() % UInt64(c.vocabSize)) }
        let batch = TokenBatch(batchSize: B, sequenceLength: T, tokens: tokens, targets: targets)

        // The GEMM reference: the best throughput on the step's two largest GEMM shapes (fused
        // gate|up projection, LM head chunk) in the run's precision, before and after the steps.
        let matmul = try MatrixMultiply(precision: config.train.precision)
        func sgemmPeak() -> Double {
            progress("\(config.train.precision) GEMM peak on [\(B * T)×\(c.hiddenSize)]·[\(c.hiddenSize)×\(2 * c.intermediateSize)] and [512×\(c.hiddenSize)]·[\(c.hiddenSize)×\(c.vocabSize)]")
            return max(matmul.measureGFLOPS(m: B * T, n: 2 * c.intermediateSize, k: c.hiddenSize, repeats: 20),
                       matmul.measureGFLOPS(m: min(512, B * T), n: c.vocabSize, k: c.hiddenSize, repeats: 10))
        }
        let peakBefore = sgemmPeak()

        func measure(_ objective: SortedObjective, label: String, recomputing: Bool = false)
            throws -> (seconds: Double, flops: Double, rss: Double, params: Int, phases: [String: Double]?) {
            ProcessMemory.resetPeak()
            var run = config
            run.objective = objective
            if recomputing { run.train.recompute = .layers }
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
                if i >= warmup { times.append(m.stepSeconds) }
                if breakdown && i + 1 == warmup { StepProfiler.active = profiler }
                progress(String(format: "%@ step %d/%d: %.3f s, loss %.4f%@", label, m.step, warmup + steps, m.stepSeconds,
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
        var plain = config.objective
        plain.distillation = nil
        let soft = try measure(plain, label: "SoFT")
        var distilledObjective = config.objective
        let distillation = config.objective.distillation ?? Distillation(weight: 1, temperature: 2)
        distilledObjective.distillation = distillation
        let distilled = distill ? try measure(distilledObjective, label: "SoFT + distillation") : nil
        let recomputed = recompute ? try measure(plain, label: "SoFT + recompute", recomputing: true) : nil
        let peak = max(peakBefore, sgemmPeak())
        let sftGflops = sft.flops / sft.seconds / 1e9, softGflops = soft.flops / soft.seconds / 1e9
        return StepBenchmarkResult(
            sftStepSeconds: sft.seconds, softStepSeconds: soft.seconds,
            sftGFLOPS: sftGflops, softGFLOPS: softGflops, sgemmPeakGFLOPS: peak,
            sftPeakFraction: sftGflops / peak, softPeakFraction: softGflops / peak,
            flopRatio: soft.flops / sft.flops, softSFTRatio: soft.seconds / sft.seconds,
            sftPeakRSSMiB: sft.rss, softPeakRSSMiB: soft.rss,
            sftTokensPerSecond: Double(B * T) / sft.seconds,
            openBLASCore: BLAS.coreName, precision: config.train.precision.rawValue, threads: BLAS.threads,
            sftExits: sftObjective.exits, softExits: config.objective.exits,
            batch: B, sequenceLength: T, parameters: sft.params, timedSteps: steps,
            sftBreakdownSeconds: sft.phases, softBreakdownSeconds: soft.phases,
            distillStepSeconds: distilled?.seconds, distillSoFTRatio: distilled.map { $0.seconds / soft.seconds },
            distillMemoryRatio: distilled.map { $0.rss / soft.rss },
            distillation: distill ? ["weight": distillation.weight, "temperature": distillation.temperature] : nil,
            recomputeStepSeconds: recomputed?.seconds, recomputePeakRSSMiB: recomputed?.rss,
            recomputeSoFTRatio: recomputed.map { $0.seconds / soft.seconds },
            recomputeMemoryRatio: recomputed.map { $0.rss / soft.rss })
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
