// GGUFExport: `export --format gguf`: one depth as a llama-architecture GGUF file that
// llama.cpp loads — the model's tensors (ModelFiles.ggufWriter) plus the run's tokenizer as
// tokenizer.ggml.* metadata and its chat template, when the tokenizer folder has one.
import Foundation
import SortedData
import SortedFormats
import SortedIO
import SortedKit

extension ModelExporter {
    /// Writes `model` to `output` with the tokenizer `spec`; returns notes on what changed form.
    static func writeGGUF(_ model: LlamaModel, name: String, tokenizer spec: String, dtype: GGUFDType, to output: URL) throws -> [String] {
        var (writer, notes) = ModelFiles.ggufWriter(model, name: name, dtype: dtype)
        // llama.cpp cannot load a GGUF without its vocabulary, so an unreadable tokenizer is an error.
        let tokenizer = try TokenizerLoader.load(spec)
        let (metadata, tokenizerNotes) = try GGUFTokenizerMetadata.metadata(
            of: tokenizer, source: spec, vocabularySize: model.config.vocabSize, chatTemplate: chatTemplate(spec))
        for (key, value) in metadata { writer.set(key, value) }
        try writer.write(to: output)
        return notes + tokenizerNotes
    }

    /// The chat template beside the run's tokenizer: chat_template.jinja, else
    /// tokenizer_config.json's "chat_template" string, else a GGUF tokenizer's own.
    static func chatTemplate(_ spec: String) -> String? {
        let kind = ModelPath.classify(spec)
        guard spec != "byte", kind != .missing else { return nil }
        let url = URL(fileURLWithPath: spec)
        if kind == .gguf { return (try? GGUFFile(contentsOf: url))?.metadata["tokenizer.chat_template"]?.string }
        let folder = kind.isFolder ? url : url.deletingLastPathComponent()
        if let text = try? String(contentsOf: folder.appendingPathComponent("chat_template.jinja"), encoding: .utf8) { return text }
        guard let data = try? Data(contentsOf: folder.appendingPathComponent("tokenizer_config.json")),
              let config = try? JSONParser.parse(data) else { return nil }
        return config["chat_template"]?.string
    }
}
