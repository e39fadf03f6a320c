// DataParallelBenchmark: under mpirun, how much gradient communication the backward hides
// (exposed communication / step time), and the bucketed all-reduce's bandwidth next to one
// plain blocking all-reduce of the same bytes, measured in the same run.
import Foundation
import SortedDistributed
import SortedKit

public struct DataParallelBenchmarkResult: Codable, Sendable {
    public var ranks: Int
    public var step_s: Double
    public var exposed_comm_s: Double
    public var exposed_comm_fraction: Double
    public var gradient_mb: Double
    public var bucketed_allreduce_gbps: Double
    public var plain_allreduce_gbps: Double
    public var bucketed_vs_plain: Double
    public var openblas_core: String
    public var threads_per_rank: Int
    public var timed_steps: Int
}

public enum DataParallelBenchmark {
    public static func run(config: RunConfig, communicator: Communicator, steps: Int, warmup: Int,
                           progress: @escaping (String) -> Void = { _ in }) throws -> DataParallelBenchmarkResult {
        let model = try LlamaModel(config: config.model)
        if communicator.rank == 0 { model.initializeRandomly(seed: config.train.seed) }
        var run = config
        run.train.maxSteps = warmup + steps
        let data = SyntheticBatchSource(microBatchSize: config.train.microBatchSize,
                                        sequenceLength: config.train.sequenceLength, vocabSize: config.model.vocabSize)
        let trainer = try Trainer(config: run, model: model, communicator: communicator, data: data)
        try trainer.synchronizeInitialWeights()
        var metrics: [StepMetrics] = []
        trainer.onStep = { m in
            metrics.append(m)
            progress(String(format: "data-parallel step %d/%d: %.3f s, exposed communication %.3f s%@",
                            m.step, warmup + steps, m.step_s, m.exposed_comm_s, m.step <= warmup ? " (warm-up)" : ""))
        }
        _ = try trainer.run()
        let timed = metrics.dropFirst(warmup)
        // The slowest rank sets the pace: take the maximum over ranks of the medians.
        var figures = [median(timed.map(\.step_s)), median(timed.map(\.exposed_comm_s))]
        figures = try communicator.maximum(figures)

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
            ranks: communicator.size, step_s: figures[0], exposed_comm_s: figures[1],
            exposed_comm_fraction: figures[1] / figures[0], gradient_mb: bytes / 1_048_576,
            bucketed_allreduce_gbps: gigabytes / times[0], plain_allreduce_gbps: gigabytes / times[1],
            bucketed_vs_plain: times[1] / times[0], openblas_core: BLAS.coreName, threads_per_rank: BLAS.threads,
            timed_steps: steps)
    }

    static func median(_ values: [Double]) -> Double { StepBenchmark.median(values) }
}
