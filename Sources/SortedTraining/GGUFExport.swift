// GGUFExport: `export --format gguf`: one depth as a llama-architecture GGUF file that
// llama.cpp loads — the model's tensors (ModelFiles.ggufWriter) plus the run's tokenizer as
// tokenizer.ggml.* metadata and its chat template, when the tokenizer folder has one.
import Foundation
import SortedData
import SortedFormats
import SortedInference
import SortedIO
import SortedKit

extension ModelExporter {
    /// Writes `model` to `output` with the tokenizer `spec`, and the trained exits it keeps
    /// (as sortedtrain.exits, which llama.cpp ignores) and its exit probes (as the JSON text of
    /// sortedtrain.exit_probes); returns notes on what changed form.
    static func writeGGUF(_ model: LlamaModel, name: String, tokenizer spec: String, dtype: GGUFDType, exits: [Int],
                          probes: ExitProbes? = nil, to output: URL) throws -> [String] {
        var (writer, notes) = ModelFiles.ggufWriter(model, name: name, dtype: dtype)
        writer.set("sortedtrain.exits", .array(exits.map { .uint32(UInt32($0)) }))
        if let probes { writer.set(ExitProbes.ggufKey, .string(try probes.jsonText())) }
        // llama.cpp cannot load a GGUF without its vocabulary, so an unreadable tokenizer is an error.
        let tokenizer = try TokenizerLoader.load(spec)
        let (metadata, tokenizerNotes) = try GGUFTokenizerMetadata.metadata(
            of: tokenizer, source: spec, vocabularySize: model.config.vocabSize, chatTemplate: TokenizerLoader.chatTemplate(spec))
        for (key, value) in metadata { writer.set(key, value) }
        try writer.write(to: output)
        return notes + tokenizerNotes
    }
}
