// `sortedtrain generate`: answer a prompt with the sub-model of any depth.
import ArgumentParser
import Foundation
import SortedTraining

struct GenerateCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "generate",
        abstract: "Generate a continuation with the exit-k sub-model (the first k layers + the shared norm and head).")

    @Argument(help: "A checkpoint folder or checkpoints folder, an HF directory, or an HDF5 model file.")
    var model: String

    @Option(help: "The instruction (wrapped in the model's prompt template unless --raw).")
    var prompt: String

    @Option(help: "Input for the instruction (Alpaca's 'input' field).")
    var input: String = ""

    @Option(help: "Depth k (default: the deepest layer).")
    var depth: Int?

    @Option(help: "Most new tokens.")
    var maxNewTokens: Int = 64

    @Option(help: "Sampling temperature (0: greedy).")
    var temperature: Double = 0

    @Option(help: "Sample among the k most likely tokens (0: all).")
    var topK: Int = 0

    @Option(help: "Seed for sampling.")
    var seed: UInt64 = 0

    @Flag(help: "Use the prompt text as is, without the template.")
    var raw = false

    @Option(help: "Tokenizer override: tokenizer.json, model folder, .gguf or byte.")
    var tokenizer: String?

    @Option(help: "Template override: alpaca, chatml or none.")
    var template: String?

    func run() throws {
        let loaded = try ModelSource.load(model, tokenizer: tokenizer, template: template ?? (raw ? "none" : nil))
        let k = depth ?? loaded.model.config.numHiddenLayers
        let ids = raw ? loaded.tokenizer.encode(prompt, addSpecialTokens: true)
            : try loaded.template.prompt(instruction: prompt, input: input, tokenizer: loaded.tokenizer)
        var stop = Set<Int32>()
        if let eos = loaded.tokenizer.eosID { stop.insert(eos) }
        if let end = loaded.tokenizer.id(forToken: "<|im_end|>") { stop.insert(end) }
        let generator = try Generator(model: loaded.model, depth: k, batchSize: 1, window: max(loaded.window, ids.count + maxNewTokens))
        let output = generator.generate([ids], maxNewTokens: maxNewTokens, stop: stop,
                                        sampling: SamplingSettings(temperature: temperature, topK: topK, seed: seed))[0]
        print(loaded.tokenizer.decode(output, skipSpecialTokens: true))
    }
}
