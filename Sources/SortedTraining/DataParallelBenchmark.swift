// DataParallelBenchmark: under mpirun, how much gradient communication the backward hides
// (exposed communication / step time), and the bucketed all-reduce's bandwidth next to one
// plain blocking all-reduce of the same bytes, measured in the same run; then the same steps
// under ZeRO-1, for its step time and optimizer memory per rank next to stage 0's.
import Foundation
import SortedDistributed
import SortedKit

public struct DataParallelBenchmarkResult: Codable, Sendable {
    public var ranks: Int
    public var stepSeconds: Double
    public var exposedCommunicationSeconds: Double
    public var exposedCommunicationFraction: Double
    public var gradientMiB: Double
    public var bucketedAllReduceGBPerSecond: Double
    public var plainAllReduceGBPerSecond: Double
    public var bucketedVsPlain: Double
    /// AdamW moments held per rank (the largest share) at stage 0 and under ZeRO-1.
    public var optimizerMiBPerRank: Double
    public var zeroOptimizerMiBPerRank: Double
    /// ZeRO-1's step time and exposed communication (reduce-scatter and all-gather), and
    /// its step time over stage 0's.
    public var zeroStepSeconds: Double
    public var zeroExposedCommunicationSeconds: Double
    public var zeroVsPlainStep: Double
    public var openBLASCore: String
    public var threadsPerRank: Int
    public var timedSteps: Int

    enum CodingKeys: String, CodingKey {
        case ranks, stepSeconds = "step_s", exposedCommunicationSeconds = "exposed_comm_s",
             exposedCommunicationFraction = "exposed_comm_fraction", gradientMiB = "gradient_mb",
             bucketedAllReduceGBPerSecond = "bucketed_allreduce_gbps",
             plainAllReduceGBPerSecond = "plain_allreduce_gbps", bucketedVsPlain = "bucketed_vs_plain",
             optimizerMiBPerRank = "optimizer_mb_per_rank", zeroOptimizerMiBPerRank = "zero1_optimizer_mb_per_rank",
             zeroStepSeconds = "zero1_step_s", zeroExposedCommunicationSeconds = "zero1_exposed_comm_s",
             zeroVsPlainStep = "zero1_vs_stage0_step",
             openBLASCore = "openblas_core", threadsPerRank = "threads_per_rank", timedSteps = "timed_steps"
    }
}

public enum DataParallelBenchmark {
    public static func run(config: RunConfig, communicator: Communicator, steps: Int, warmup: Int,
                           progress: @escaping (String) -> Void = { _ in }) throws -> DataParallelBenchmarkResult {
        let (model, figures, optimizerBytes) = try timeSteps(config: config, zeroStage: 0, communicator: communicator,
                                                             steps: steps, warmup: warmup, progress: progress)
        let (_, zero, zeroOptimizerBytes) = try timeSteps(config: config, zeroStage: 1, communicator: communicator,
                                                          steps: steps, warmup: warmup, progress: progress)

        // Bandwidth: all buckets started back to back and finished, vs one MPI_Allreduce.
        let bytes = Double(model.layout.count * 4)
        let sync = GradientSync(communicator: communicator, model: model, timeout: config.distributed.timeoutSeconds)
        var bucketed: [Double] = [], plain: [Double] = []
        for _ in 0..<3 {
            try communicator.barrier()
            var start = ContinuousClock.now
            for bucket in model.layout.gradientBucketOrder { try sync.bucketReady(bucket) }
            _ = try sync.finish()
            bucketed.append((ContinuousClock.now - start).seconds)
            try communicator.barrier()
            start = ContinuousClock.now
            try communicator.allReduceSum(model.gradients.pointer, count: model.layout.count)
            plain.append((ContinuousClock.now - start).seconds)
        }
        let times = try communicator.maximum([bucketed.min()!, plain.min()!])
        let gigabytes = bytes / 1e9
        return DataParallelBenchmarkResult(
            ranks: communicator.size, stepSeconds: figures[0], exposedCommunicationSeconds: figures[1],
            exposedCommunicationFraction: figures[1] / figures[0], gradientMiB: bytes / 1_048_576,
            bucketedAllReduceGBPerSecond: gigabytes / times[0], plainAllReduceGBPerSecond: gigabytes / times[1],
            bucketedVsPlain: times[1] / times[0], optimizerMiBPerRank: optimizerBytes / 1_048_576,
            zeroOptimizerMiBPerRank: zeroOptimizerBytes / 1_048_576, zeroStepSeconds: zero[0],
            zeroExposedCommunicationSeconds: zero[1], zeroVsPlainStep: zero[0] / figures[0],
            openBLASCore: BLAS.coreName, threadsPerRank: BLAS.threads, timedSteps: steps)
    }

    /// Trains warm-up + timed steps from fresh weights at `zeroStage`. Returns the model, the
    /// maxima over ranks of the median step time and exposed communication, and the most
    /// optimizer bytes any rank holds.
    private static func timeSteps(config: RunConfig, zeroStage: Int, communicator: Communicator, steps: Int, warmup: Int,
                                  progress: @escaping (String) -> Void) throws -> (LlamaModel, [Double], Double) {
        let model = try LlamaModel(config: config.model)
        if communicator.rank == 0 { model.initializeRandomly(seed: config.train.seed) }
        var run = config
        run.train.maxSteps = warmup + steps
        run.distributed.zeroStage = zeroStage
        let data = SyntheticBatchSource(microBatchSize: config.train.microBatchSize,
                                        sequenceLength: config.train.sequenceLength, vocabSize: config.model.vocabSize)
        let trainer = try Trainer(config: run, model: model, communicator: communicator, data: data)
        try trainer.synchronizeInitialWeights()
        var metrics: [StepMetrics] = []
        trainer.onStep = { m in
            metrics.append(m)
            progress(String(format: "data-parallel step %d/%d (ZeRO stage %d): %.3f s, exposed communication %.3f s%@",
                            m.step, warmup + steps, zeroStage, m.stepSeconds, m.exposedCommunicationSeconds,
                            m.step <= warmup ? " (warm-up)" : ""))
        }
        _ = try trainer.run()
        let timed = metrics.dropFirst(warmup)
        // The slowest rank sets the pace: take the maximum over ranks of the medians.
        let figures = try communicator.maximum([median(timed.map(\.stepSeconds)), median(timed.map(\.exposedCommunicationSeconds)),
                                                Double(trainer.optimizer.momentBytes)])
        return (model, Array(figures[0..<2]), figures[2])
    }

    static func median(_ values: [Double]) -> Double { StepBenchmark.median(values) }
}
