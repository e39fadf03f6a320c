// `sortedtrain export`: one trained depth as a standalone model.
import ArgumentParser
import Foundation
import SortedIO
import SortedTraining

extension ExportFormat: ExpressibleByArgument {}
extension GGUFDType: ExpressibleByArgument {}

struct ExportCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "export",
        abstract: "Export depth k of a checkpoint as a standalone model (HF directory, HDF5 file or GGUF file).",
        discussion: """
        The exit-k sub-model is the first k decoder layers plus the shared final norm and LM \
        head. --format hf writes model.safetensors, config.json (num_hidden_layers = k, the \
        tokenizer's BOS/EOS ids, the exits up to k under "sortedtrain"), generation_config.json, \
        a README.md model card (base model and license from the run's initial weights, the \
        run's exits, steps, tokens and data, and --eval's per-exit table) and the run's \
        tokenizer.json (with tokenizer_config.json and special_tokens_map.json when they sit \
        beside it), which transformers loads as LlamaForCausalLM; --format hdf5 writes one .h5 file with the checkpoint's per-layer \
        layout and no optimizer state; --format gguf writes one llama-architecture GGUF v3 file \
        (llama.block_count = k, the run's tokenizer and chat template as metadata) for llama.cpp.
        """)

    @Argument(help: "A checkpoint folder (step-XXXXXXXX) or a checkpoints folder (its newest checkpoint).")
    var checkpoint: String

    @Option(parsing: .unconditional, help: "The depth to export: one of the run's exits.")
    var depth: Int

    @Option(help: "hf, hdf5 or gguf.")
    var format: ExportFormat = .hf

    @Option(help: ArgumentHelp("gguf only: f32 (every tensor float32, exact), f16 (matrices float16, norms float32), q8_0 (matrices 8-bit in blocks of 32 with an f16 scale), q4_0 (4-bit, an f16 scale per block) or q4_1 (4-bit, an f16 scale and minimum per block); norms stay float32, and a matrix whose rows are not a multiple of 32 is written f16.", valueName: "dtype"))
    var dtype: GGUFDType?

    @Option(help: "Output folder (hf) or file (hdf5, gguf).")
    var out: String

    @Flag(help: "Allow a depth that was not trained as an exit.")
    var force = false

    @Flag(help: "Replace an existing --out (never a checkpoint).")
    var overwrite = false

    @Option(name: .customLong("eval"), help: "A report of `sortedtrain eval --json`: its per-exit table goes into the HF model card (README.md).")
    var evaluation: String?

    func validate() throws {
        guard depth >= 1 else { throw CommandLineError("--depth \(depth) is not a depth (a whole number ≥ 1)") }
        guard !out.isEmpty, !checkpoint.isEmpty else { throw CommandLineError("name the checkpoint and a non-empty --out") }
        if let dtype, format != .gguf {
            throw CommandLineError("--dtype \(dtype.rawValue) applies to --format gguf only; --format \(format.rawValue) writes float32")
        }
        if format == .gguf && !out.hasSuffix(".gguf") && FileManager.default.fileExists(atPath: out) {
            throw CommandLineError("--out \(out) exists and is not a .gguf file; name a .gguf file or a new path")
        }
    }

    func run() throws {
        try OutputTarget.check(URL(fileURLWithPath: out), directory: format == .hf, overwrite: overwrite, flag: "--out")
        let report = try evaluation.map(ModelExporter.readEvaluation)
        if report != nil && format != .hf { throw CommandLineError("--eval goes into an HF model card: use it with --format hf") }
        let (model, state, notes) = try ModelExporter.export(checkpoint: checkpoint, depth: depth, format: format,
                                                             output: URL(fileURLWithPath: out), force: force, evaluation: report,
                                                             dtype: dtype ?? .f32)
        print("exported depth \(depth) of step \(state.step) (\(model.layout.count) parameters) as \(format == .gguf ? "gguf \((dtype ?? .f32).rawValue)" : format.rawValue) to \(out)")
        for note in notes { print("note: \(note)") }
    }
}
