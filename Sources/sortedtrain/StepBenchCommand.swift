// `sortedtrain bench [step]`: training-step throughput of SFT and SoFT against the sgemm peak.
import ArgumentParser
import Foundation
import SortedDistributed
import SortedKit
import SortedTraining

/// `bench step --sequence-lengths` / `--precision fp32,bf16` / `--pytorch` as JSON: one result
/// per precision and length, each with its own GEMM peak (measured on that length's shapes in
/// that precision), each later precision's ratios to the first, and with --pytorch the ratios
/// per result or why there are none.
struct StepSweep: Encodable {
    var lengths: [StepBenchmarkResult]
    var precisions: [PrecisionComparison]?
    var pytorch: [PyTorchComparison]?
    var pytorchSkipped: String?

    enum CodingKeys: String, CodingKey {
        case lengths, precisions, pytorch, pytorchSkipped = "pytorch_skipped"
    }
}

/// One precision against another at one length: step time and peak RSS, as ratios.
struct PrecisionComparison: Encodable {
    var sequenceLength: Int
    var precision: String
    var baseline: String
    var softTimeRatio: Double
    var sftTimeRatio: Double
    var softMemoryRatio: Double
    var sftMemoryRatio: Double

    enum CodingKeys: String, CodingKey {
        case precision, baseline, sequenceLength = "sequence_length", softTimeRatio = "soft_time_ratio",
             sftTimeRatio = "sft_time_ratio", softMemoryRatio = "soft_memory_ratio", sftMemoryRatio = "sft_memory_ratio"
    }

    /// Each result of a precision other than the first's against the first's at its length.
    static func all(_ results: [StepBenchmarkResult]) -> [PrecisionComparison] {
        guard let first = results.first?.precision else { return [] }
        return results.filter { $0.precision != first }.compactMap { r in
            results.first { $0.precision == first && $0.sequenceLength == r.sequenceLength }.map { b in
                PrecisionComparison(sequenceLength: r.sequenceLength, precision: r.precision, baseline: b.precision,
                                    softTimeRatio: r.softStepSeconds / b.softStepSeconds, sftTimeRatio: r.sftStepSeconds / b.sftStepSeconds,
                                    softMemoryRatio: r.softPeakRSSMiB / b.softPeakRSSMiB, sftMemoryRatio: r.sftPeakRSSMiB / b.sftPeakRSSMiB)
            }
        }
    }
}

struct StepBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "step",
        abstract: "Time full training steps (forward, backward, AdamW) for SFT and SoFT.",
        discussion: """
        Runs SFT (the last exit only) and SoFT (the config's exits) on the same model and a \
        random batch of micro_batch_size × sequence_length tokens, and reports the median step \
        time, achieved GFLOP/s as a fraction of the GEMM peak measured in the same process (in \
        the run's precision: sgemm for fp32, oneDNN's bf16 GEMM with its rounding for bf16), \
        the SoFT/SFT time ratio next to the FLOP ratio, and peak memory of each; and SoFT with \
        self-distillation from the last exit (the config's sorted.distill, else α 1, τ 2) as \
        ratios of time and memory to SoFT without it. --recompute adds SoFT with \
        train.recompute "layers" (only each layer's input kept, the layer run again in the \
        backward): its time and peak memory, and both as ratios to SoFT's.

        With --sequence-lengths 256,1024,2048 it measures each length in turn (peak memory \
        reset before every measurement, the sgemm peak measured on each length's shapes) and \
        prints one table, or with --json an object whose "lengths" holds one result per length. \
        --precision fp32,bf16 measures each precision the same way, one after the other, and \
        gives each later one's step time and peak RSS as ratios to the first's. \
        --pytorch adds scripts/bench_pytorch.py's timings of the same config, lengths, batch, \
        steps and threads (when python3 has torch and transformers): sortedtrain's step time \
        over the better of PyTorch's eager and sdpa attention, and its peak RSS over sdpa's, \
        against PyTorch in float32 and, when bf16 is measured, also in bf16 autocast.

        Under mpirun (e.g. launch/bench-mpi 2) it instead measures data-parallel SoFT \
        training: exposed communication / step time, and the bucketed gradient all-reduce's \
        bandwidth next to one plain MPI_Allreduce of the same bytes.
        """)

    @Option(help: "Run config JSON (model, sorted.exits, train.micro_batch_size, train.sequence_length).")
    var config: String = "configs/bench-58m.json"

    @Option(parsing: .unconditional, help: "Timed steps per mode (the median is reported).")
    var steps: Int = 5

    @Option(parsing: .unconditional, help: "Untimed warm-up steps per mode.")
    var warmup: Int = 1

    @Option(help: "Sequence lengths to measure one after another, e.g. 256,1024,2048 (default: the config's train.sequence_length).")
    var sequenceLengths: String?

    @Option(parsing: .unconditional, help: "Sequences per micro-batch (default: the config's train.micro_batch_size).")
    var batch: Int?

    @Option(help: "The GEMMs' precision: fp32, or bf16 (bfloat16 inputs, float32 accumulation; needs AVX512_BF16 or AMX), or several one after another, e.g. fp32,bf16. Default: the config's train.precision.")
    var precision: String?

    @Flag(help: "Leave out SoFT with self-distillation (keeps a long sweep affordable).")
    var skipDistill = false

    @Flag(help: "Also time SoFT with train.recompute \"layers\" (each layer run again in the backward): time and memory both ways.")
    var recompute = false

    @Flag(help: "Also run scripts/bench_pytorch.py on the same config and lengths, and print the ratios.")
    var pytorch = false

    @Flag(help: "Print one JSON object instead of a table.")
    var json = false

    @Flag(help: "Also report the seconds per step spent in each phase (projections, attention, head, …).")
    var breakdown = false

    func validate() throws {
        guard steps >= 1 else { throw ValidationError("--steps must be at least 1") }
        guard warmup >= 0 else { throw ValidationError("--warmup must be non-negative") }
        if let batch, batch < 1 { throw CommandLineError("--batch must be at least 1, got \(batch)") }
        if let sequenceLengths { _ = try parseLengths(sequenceLengths) }
        if let precision { _ = try parsePrecisions(precision) }
    }

    /// "fp32,bf16" as train.precision values, each once.
    private func parsePrecisions(_ text: String) throws -> [String] {
        let names = text.split(separator: ",", omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) }
        for name in names where TrainingPrecision(rawValue: name) == nil {
            throw CommandLineError("--precision: '\(name)' is not fp32 or bf16")
        }
        guard Set(names).count == names.count else { throw CommandLineError("--precision: \(text) names a precision twice") }
        return names
    }

    func run() throws {
        // --batch and each length go through the config's own checks (the memory budget among them).
        let precisions = try precision.map(parsePrecisions) ?? []
        let batchOverride = batch.map { ["train.micro_batch_size=\($0)"] } ?? []
        let runConfig = try RunConfig.load(path: config, overrides: batchOverride + precisions.prefix(1).map { "train.precision=\($0)" })
        // Under mpirun: the data-parallel measurement.
        if let communicator = try communicatorFromEnvironment() as? MPICommunicator {
            guard precisions.count <= 1 else { throw CommandLineError("--precision: under mpirun, one precision at a time") }
            try runDataParallel(runConfig, communicator)
            return
        }
        // --pytorch and several precisions report in the sweep's form, at the config's length when no lengths are given.
        if let lengths = try sequenceLengths.map(parseLengths) ?? (pytorch || precisions.count > 1 ? [runConfig.train.sequenceLength] : nil) {
            let limit = runConfig.model.maxPositionEmbeddings
            if let long = lengths.first(where: { $0 > limit }) {
                throw CommandLineError("--sequence-lengths: \(long) exceeds the model's max_position_embeddings \(limit)")
            }
            let runs = (precisions.isEmpty ? [nil] : precisions.map(Optional.some)).flatMap { p in lengths.map { (p, $0) } }
            let results = try runs.map { p, T in
                let lengthConfig = try RunConfig.load(path: config, overrides: batchOverride + (p.map { ["train.precision=\($0)"] } ?? [])
                                                      + ["train.sequence_length=\(T)"])
                let label = "length \(T)" + (precisions.count > 1 ? ", \(lengthConfig.train.precision.rawValue)" : "")
                let r = try StepBenchmark.run(config: lengthConfig, steps: steps, warmup: warmup, breakdown: breakdown,
                                              distill: !skipDistill, recompute: recompute) { line in
                    if !json { printProgress("\(label): \(line)") }
                }
                // Each length's figures as soon as they are known: a sweep stopped later (out of memory) keeps them.
                if !json {
                    printProgress("\(label): SFT \(fmt(r.sftStepSeconds, 3)) s, peak RSS \(fmt(r.sftPeakRSSMiB, 0)) MiB; "
                                  + "SoFT \(fmt(r.softStepSeconds, 3)) s, peak RSS \(fmt(r.softPeakRSSMiB, 0)) MiB")
                }
                return r
            }
            var sweep = StepSweep(lengths: results)
            if precisions.count > 1 { sweep.precisions = PrecisionComparison.all(results) }
            if pytorch {
                switch PyTorchReference.compare(config: config, results: results, steps: steps, warmup: warmup,
                                                progress: { if !json { printProgress($0) } }) {
                case .success(let comparison): sweep.pytorch = comparison
                case .failure(let why): sweep.pytorchSkipped = why.description
                }
            }
            if json {
                try printJSON(sweep)
            } else {
                printSweep(sweep, source: runConfig.source)
            }
            return
        }
        let result = try StepBenchmark.run(config: runConfig, steps: steps, warmup: warmup, breakdown: breakdown,
                                           distill: !skipDistill, recompute: recompute) { line in
            if !json { printProgress(line) }
        }
        if json {
            try printJSON(result)
            return
        }
        let r = result
        print("model \(runConfig.source): \(r.parameters / 1_000_000)M parameters, batch \(r.batch) × \(r.sequenceLength) tokens")
        print("OpenBLAS kernel \(r.openBLASCore), \(r.threads) threads; GEMMs in \(r.precision), peak \(fmt(r.sgemmPeakGFLOPS, 1)) GFLOP/s")
        print("")
        print("mode   exits          step (s)   GFLOP/s   of peak   peak RSS (MiB)")
        print("SFT    \(pad("\(r.sftExits)", 14)) \(pad(fmt(r.sftStepSeconds, 3), 10)) \(pad(fmt(r.sftGFLOPS, 1), 9)) \(pad(fmt(100 * r.sftPeakFraction, 1) + "%", 9)) \(fmt(r.sftPeakRSSMiB, 0))")
        print("SoFT   \(pad("\(r.softExits)", 14)) \(pad(fmt(r.softStepSeconds, 3), 10)) \(pad(fmt(r.softGFLOPS, 1), 9)) \(pad(fmt(100 * r.softPeakFraction, 1) + "%", 9)) \(fmt(r.softPeakRSSMiB, 0))")
        print("")
        printBreakdown(r, heading: "phase")
        print("")
        print("SoFT/SFT time \(fmt(r.softSFTRatio, 3)) vs FLOP ratio \(fmt(r.flopRatio, 3)) → overhead \(fmt(r.softSFTRatio / r.flopRatio, 3))×; memory \(fmt(r.softPeakRSSMiB / r.sftPeakRSSMiB, 3))×")
        if let seconds = r.distillStepSeconds, let ratio = r.distillSoFTRatio, let memory = r.distillMemoryRatio,
           let d = r.distillation {
            print("SoFT + distillation (α \(fmt(d["weight"] ?? 0, 2)), τ \(fmt(d["temperature"] ?? 0, 2))): \(fmt(seconds, 3)) s per step = \(fmt(ratio, 3))× SoFT's; memory \(fmt(memory, 3))×")
        }
        printRecompute(r, prefix: "")
    }

    /// With --recompute: SoFT recomputing its layers, as ratios to SoFT keeping them.
    private func printRecompute(_ r: StepBenchmarkResult, prefix: String) {
        guard let seconds = r.recomputeStepSeconds, let ratio = r.recomputeSoFTRatio, let memory = r.recomputeMemoryRatio,
              let rss = r.recomputePeakRSSMiB else { return }
        print("\(prefix)SoFT + recompute layers: \(fmt(seconds, 3)) s per step = \(fmt(ratio, 3))× SoFT's; peak RSS \(fmt(rss, 0)) MiB = \(fmt(memory, 3))×")
    }

    /// With --breakdown: seconds per step in each phase, SoFT's largest first.
    private func printBreakdown(_ r: StepBenchmarkResult, heading: String) {
        guard let sft = r.sftBreakdownSeconds, let soft = r.softBreakdownSeconds else { return }
        print("")
        print("\(pad(heading, 16)) SFT (s/step)   SoFT (s/step)")
        for phase in Set(sft.keys).union(soft.keys).sorted(by: { (soft[$0] ?? 0) > (soft[$1] ?? 0) }) {
            print("\(pad(phase, 16)) \(pad(fmt(sft[phase] ?? 0, 3), 14)) \(fmt(soft[phase] ?? 0, 3))")
        }
    }

    /// "256,1024,2048" as sequence lengths (whole numbers ≥ 2, as train.sequence_length).
    private func parseLengths(_ text: String) throws -> [Int] {
        try text.split(separator: ",", omittingEmptySubsequences: false).map {
            guard let T = Int($0.trimmingCharacters(in: .whitespaces)), T >= 2 else {
                throw CommandLineError("--sequence-lengths: '\($0)' is not a sequence length (a whole number ≥ 2)")
            }
            return T
        }
    }

    /// One row per (length, mode): the sweep's table, and the PyTorch ratios per length.
    private func printSweep(_ sweep: StepSweep, source: String) {
        let results = sweep.lengths
        guard let first = results.first else { return }
        print("model \(source): \(first.parameters / 1_000_000)M parameters, batch \(first.batch), SoFT exits \(first.softExits)")
        print("OpenBLAS kernel \(first.openBLASCore), \(first.threads) threads; \(first.timedSteps) timed steps per mode (median)")
        print("")
        print("length  precision  mode          step (s)   tokens/s   GFLOP/s   of peak   GEMM peak    peak RSS (MiB)")
        for r in results {
            let tokens = Double(r.batch * r.sequenceLength)
            func row(_ mode: String, _ seconds: Double, _ gflops: Double?, _ fraction: Double?, _ rss: Double?) {
                print("\(pad("\(r.sequenceLength)", 7)) \(pad(r.precision, 10)) \(pad(mode, 13)) \(pad(fmt(seconds, 3), 10)) \(pad(fmt(tokens / seconds, 0), 10)) "
                      + "\(pad(gflops.map { fmt($0, 1) } ?? "-", 9)) \(pad(fraction.map { fmt(100 * $0, 1) + "%" } ?? "-", 9)) "
                      + "\(pad(fmt(r.sgemmPeakGFLOPS, 1), 12)) \(rss.map { fmt($0, 0) } ?? "-")")
            }
            row("SFT", r.sftStepSeconds, r.sftGFLOPS, r.sftPeakFraction, r.sftPeakRSSMiB)
            row("SoFT", r.softStepSeconds, r.softGFLOPS, r.softPeakFraction, r.softPeakRSSMiB)
            if let seconds = r.distillStepSeconds {
                row("SoFT+distill", seconds, nil, nil, r.distillMemoryRatio.map { $0 * r.softPeakRSSMiB })
            }
            if let seconds = r.recomputeStepSeconds {
                row("SoFT+recomp", seconds, nil, nil, r.recomputePeakRSSMiB)
            }
        }
        for r in results { printBreakdown(r, heading: "phase at \(r.sequenceLength) \(r.precision)") }
        print("")
        for c in sweep.precisions ?? [] {
            print("length \(c.sequenceLength): \(c.precision) against \(c.baseline): SoFT step \(fmt(c.softTimeRatio, 3))× (speed-up \(fmt(1 / c.softTimeRatio, 2))×), "
                  + "SFT step \(fmt(c.sftTimeRatio, 3))×; peak RSS SoFT \(fmt(c.softMemoryRatio, 3))×, SFT \(fmt(c.sftMemoryRatio, 3))×")
        }
        for r in results {
            print("length \(r.sequenceLength) \(r.precision): SoFT/SFT time \(fmt(r.softSFTRatio, 3)) vs FLOP ratio \(fmt(r.flopRatio, 3)); memory \(fmt(r.softPeakRSSMiB / r.sftPeakRSSMiB, 3))×")
            printRecompute(r, prefix: "length \(r.sequenceLength): ")
        }
        if let why = sweep.pytorchSkipped {
            print("")
            print("PyTorch comparison skipped: \(why)")
        }
        guard let comparison = sweep.pytorch else { return }
        let opt = { (x: Double?, digits: Int) in x.map { fmt($0, digits) } ?? "-" }
        print("")
        print("against PyTorch (time: the better of eager and sdpa; memory: sdpa's; PyTorch bf16: autocast)")
        print("length  precision  PyTorch  PyTorch SFT (s)  SFT ratio  PyTorch SoFT (s)  SoFT ratio  SFT RSS ratio  SoFT RSS ratio")
        for c in comparison {
            print("\(pad("\(c.sequenceLength)", 7)) \(pad(c.precision, 10)) \(pad(c.pytorchPrecision, 8)) \(pad(opt(c.pytorchSFTStepSeconds, 3) + (c.pytorchSFTAttention.map { " \($0)" } ?? ""), 16)) "
                  + "\(pad(opt(c.sftTimeRatio, 3), 10)) \(pad(opt(c.pytorchSoFTStepSeconds, 3) + (c.pytorchSoFTAttention.map { " \($0)" } ?? ""), 17)) "
                  + "\(pad(opt(c.softTimeRatio, 3), 11)) \(pad(opt(c.sftMemoryRatio, 3), 14)) \(opt(c.softMemoryRatio, 3))")
        }
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
