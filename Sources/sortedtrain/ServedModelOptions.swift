// ServedModelOptions: the MODEL argument, --tokenizer and --template of the commands that
// serve a model (generate, eval, bench generate), and loading it.
import ArgumentParser
import SortedInference
import SortedKit

/// The model a serving command reads and how to talk to it: shared by generate, eval and
/// bench generate.
struct ServedModelOptions: ParsableArguments {
    @Argument(help: "A checkpoint (or checkpoints folder), an HF directory, an HDF5 model file or a llama .gguf file.")
    var model: String

    @Option(help: "Tokenizer override: tokenizer.json, model folder, .gguf or byte.")
    var tokenizer: String?

    @Option(help: "Template override: alpaca, chatml, none or model (default: the run's, else model when the tokenizer comes with a chat template, else none).")
    var template: String?

    @Option(help: "Weights to decode with: f32, or q8_0, q4_0 or q4_1 (GGUF's block formats), converted at load (default: as stored: a GGUF file's own formats, else f32).")
    var dtype: WeightFormat?

    /// `path` (default: MODEL) with these options, checked to fit its tokenizer.
    func load(_ path: String? = nil, template fallback: String? = nil, readProbes: Bool = true) throws -> LoadedModel {
        let loaded: LoadedModel
        do {
            loaded = try ModelSource.load(path ?? model, tokenizer: tokenizer, template: template ?? fallback, format: dtype,
                                          readProbes: readProbes)
        } catch ModelLoadError.unusableFormat(_, let problem) {
            throw CommandLineError("--dtype \(dtype?.rawValue ?? "f32"): \(problem)")
        }
        if let problem = loaded.vocabularyProblem { throw CommandLineError("\(problem) (--tokenizer)") }
        if let problem = loaded.probesProblem { printProgress("Warning: \(problem); the exit probes are not used") }
        return loaded
    }
}

extension WeightFormat: ExpressibleByArgument {
}
