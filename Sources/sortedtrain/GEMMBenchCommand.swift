// `sortedtrain bench gemm`: the training step's GEMMs in float32 (OpenBLAS) and bfloat16 (oneDNN).
import ArgumentParser
import Foundation
import SortedKit
import SortedTraining

struct GEMMBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gemm",
        abstract: "The training step's GEMM shapes in float32 (OpenBLAS sgemm) and in bfloat16 with float32 accumulation (oneDNN), side by side.",
        discussion: """
        For the config's model, micro_batch_size × sequence_length rows and exits: every \
        projection's forward, input-gradient and weight-gradient product and the stacked head's \
        three, each timed (the best of --repeats) in both precisions on the same operands. Prints \
        GFLOP/s, the bf16/fp32 ratio and oneDNN's kernel per shape, the GEMM time of one whole \
        step in each precision, and float32 → bfloat16 rounding's bandwidth. oneDNN's threads \
        follow OMP_NUM_THREADS, OpenBLAS's OPENBLAS_NUM_THREADS: set both alike.
        """)

    @Option(help: "Run config JSON (model, sorted.exits, train.micro_batch_size, train.sequence_length).")
    var config: String = "configs/bench-smollm2.json"

    @Option(parsing: .unconditional, help: "Timed runs per shape and precision (the best is reported).")
    var repeats: Int = 5

    @Flag(help: "Print one JSON object.")
    var json = false

    func validate() throws {
        guard repeats >= 1 else { throw ValidationError("--repeats must be at least 1") }
    }

    func run() throws {
        let runConfig = try RunConfig.load(path: config)
        let rows = runConfig.train.microBatchSize * runConfig.train.sequenceLength
        let r = try GEMMBenchmark.run(model: runConfig.model, rows: rows, exits: runConfig.objective.exits,
                                      repeats: repeats) { line in if !json { printProgress(line) } }
        if json {
            try printJSON(r)
            return
        }
        print("OpenBLAS \(r.openblasCore), \(r.openblasThreads) threads; oneDNN \(r.onednnISA) (bf16 \(r.bf16Native ? "in hardware" : "emulated: no AVX512_BF16 or AMX"))")
        print("\(rows) rows, exits \(r.exits.map(String.init).joined(separator: ","))")
        let header = "shape".padding(toLength: 20, withPad: " ", startingAt: 0) + "  m×k · k×n                fp32 GF/s  bf16 GF/s  bf16/fp32  kernel"
        print(header)
        for s in r.shapes {
            let dims = "\(s.m)×\(s.k) · \(s.k)×\(s.n)".padding(toLength: 24, withPad: " ", startingAt: 0)
            print(s.name.padding(toLength: 20, withPad: " ", startingAt: 0) + "  " + dims
                  + String(format: " %9.1f  %9.1f  %8.2f×  ", s.fp32GFLOPS, s.bf16GFLOPS, s.bf16OverFP32) + s.bf16Kernel)
        }
        print(String(format: "one step's GEMMs: fp32 %.3f s, bf16 %.3f s (%.2f× faster); float32 → bfloat16 rounding %.1f GB/s",
                     r.stepFP32Seconds, r.stepBF16Seconds, r.stepSpeedup, r.roundingGBps))
    }
}
