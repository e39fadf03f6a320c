// `sortedtrain bench [step]`: training-step throughput of SFT and SoFT against the sgemm peak.
import ArgumentParser
import Foundation
import SortedDistributed
import SortedTraining

struct StepBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "step",
        abstract: "Time full training steps (forward, backward, AdamW) for SFT and SoFT.",
        discussion: """
        Runs SFT (the last exit only) and SoFT (the config's exits) on the same model and a
        random batch of micro_batch_size × sequence_length tokens, and reports the median step
        time, achieved GFLOP/s as a fraction of the sgemm peak measured in the same process,
        the SoFT/SFT time ratio next to the FLOP ratio, and peak memory of each; and SoFT with
        self-distillation from the last exit (the config's sorted.distill, else α 1, τ 2) as
        ratios of time and memory to SoFT without it.

        Under mpirun (e.g. launch/bench-mpi 2) it instead measures data-parallel SoFT
        training: exposed communication / step time, and the bucketed gradient all-reduce's
        bandwidth next to one plain MPI_Allreduce of the same bytes.
        """)

    @Option(help: "Run config JSON (model, sorted.exits, train.micro_batch_size, train.sequence_length).")
    var config: String = "configs/bench-58m.json"

    @Option(parsing: .unconditional, help: "Timed steps per mode (the median is reported).")
    var steps: Int = 5

    @Option(parsing: .unconditional, help: "Untimed warm-up steps per mode.")
    var warmup: Int = 1

    @Flag(help: "Print one JSON object instead of a table.")
    var json = false

    @Flag(help: "Also report the seconds per step spent in each phase (projections, attention, head, …).")
    var breakdown = false

    func validate() throws {
        guard steps >= 1 else { throw ValidationError("--steps must be at least 1") }
        guard warmup >= 0 else { throw ValidationError("--warmup must be non-negative") }
    }

    func run() throws {
        let runConfig = try RunConfig.load(path: config)
        // Under mpirun: the data-parallel measurement.
        if let communicator = try communicatorFromEnvironment() as? MPICommunicator {
            try runDataParallel(runConfig, communicator)
            return
        }
        let result = try StepBenchmark.run(config: runConfig, steps: steps, warmup: warmup, breakdown: breakdown) { line in
            if !json { printProgress(line) }
        }
        if json {
            try printJSON(result)
            return
        }
        let r = result
        print("model \(runConfig.source): \(r.parameters / 1_000_000)M parameters, batch \(r.batch) × \(r.sequenceLength) tokens")
        print("OpenBLAS kernel \(r.openBLASCore), \(r.threads) threads; sgemm peak \(fmt(r.sgemmPeakGFLOPS, 1)) GFLOP/s")
        print("")
        print("mode   exits          step (s)   GFLOP/s   of peak   peak RSS (MiB)")
        print("SFT    \(pad("\(r.sftExits)", 14)) \(pad(fmt(r.sftStepSeconds, 3), 10)) \(pad(fmt(r.sftGFLOPS, 1), 9)) \(pad(fmt(100 * r.sftPeakFraction, 1) + "%", 9)) \(fmt(r.sftPeakRSSMiB, 0))")
        print("SoFT   \(pad("\(r.softExits)", 14)) \(pad(fmt(r.softStepSeconds, 3), 10)) \(pad(fmt(r.softGFLOPS, 1), 9)) \(pad(fmt(100 * r.softPeakFraction, 1) + "%", 9)) \(fmt(r.softPeakRSSMiB, 0))")
        print("")
        if let sft = r.sftBreakdownSeconds, let soft = r.softBreakdownSeconds {
            print("")
            print("phase            SFT (s/step)   SoFT (s/step)")
            for phase in Set(sft.keys).union(soft.keys).sorted(by: { (soft[$0] ?? 0) > (soft[$1] ?? 0) }) {
                print("\(pad(phase, 16)) \(pad(fmt(sft[phase] ?? 0, 3), 14)) \(fmt(soft[phase] ?? 0, 3))")
            }
        }
        print("")
        print("SoFT/SFT time \(fmt(r.softSFTRatio, 3)) vs FLOP ratio \(fmt(r.flopRatio, 3)) → overhead \(fmt(r.softSFTRatio / r.flopRatio, 3))×; memory \(fmt(r.softPeakRSSMiB / r.sftPeakRSSMiB, 3))×")
        print("SoFT + distillation (α \(fmt(r.distillation["weight"] ?? 0, 2)), τ \(fmt(r.distillation["temperature"] ?? 0, 2))): \(fmt(r.distillStepSeconds, 3)) s per step = \(fmt(r.distillSoFTRatio, 3))× SoFT's; memory \(fmt(r.distillMemoryRatio, 3))×")
    }

    private func runDataParallel(_ runConfig: RunConfig, _ communicator: MPICommunicator) throws {
        communicator.timeout = runConfig.distributed.timeoutSeconds
        let rank0 = communicator.rank == 0
        let r: DataParallelBenchmarkResult
        do {
            r = try DataParallelBenchmark.run(config: runConfig, communicator: communicator, steps: steps,
                                              warmup: warmup) { line in
                if rank0 && !json { printProgress(line) }
            }
        } catch {
            // A peer may be stuck in a collective: end the whole job rather than wait in finalize.
            FileHandle.standardError.write(Data("Error: \(error)\n".utf8))
            communicator.abort(code: 1)
        }
        communicator.finalize()
        guard rank0 else { return }
        if json {
            try printJSON(r)
            return
        }
        print("data-parallel SoFT on \(r.ranks) ranks, exits \(runConfig.objective.exits), OpenBLAS \(r.openBLASCore) × \(r.threadsPerRank) threads per rank")
        print("step \(fmt(r.stepSeconds, 3)) s, exposed communication \(fmt(r.exposedCommunicationSeconds, 3)) s = \(fmt(100 * r.exposedCommunicationFraction, 1))% of the step")
        print("gradients \(fmt(r.gradientMiB, 1)) MiB: bucketed all-reduce \(fmt(r.bucketedAllReduceGBPerSecond, 2)) GB/s, plain MPI_Allreduce \(fmt(r.plainAllReduceGBPerSecond, 2)) GB/s (ratio \(fmt(r.bucketedVsPlain, 2)))")
        print("ZeRO-1: step \(fmt(r.zeroStepSeconds, 3)) s = \(fmt(r.zeroVsPlainStep, 3))× stage 0's, exposed communication \(fmt(r.zeroExposedCommunicationSeconds, 3)) s; optimizer moments \(fmt(r.zeroOptimizerMiBPerRank, 1)) MiB per rank (stage 0: \(fmt(r.optimizerMiBPerRank, 1)) MiB)")
    }

    private func fmt(_ x: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", x) }
    private func pad(_ s: String, _ n: Int) -> String { s.count >= n ? s : s + String(repeating: " ", count: n - s.count) }
}
