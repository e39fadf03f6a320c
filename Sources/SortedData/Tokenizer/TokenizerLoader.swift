// TokenizerLoader: opens a tokenizer from what a user points at: an HF tokenizer.json (or the
// directory holding it), a .gguf file, or "byte" for the built-in byte tokenizer.
import Foundation
import SortedFormats

public enum TokenizerLoader {
    /// - Parameter spec: "byte", a path to tokenizer.json, a model directory, or a .gguf file.
    public static func load(_ spec: String) throws -> Tokenizer {
        if spec == "byte" { return ByteTokenizer() }
        let kind = ModelPath.classify(spec)
        if kind == .missing {
            throw DataError(file: spec, "does not exist; give a tokenizer.json, a model directory, a .gguf file, or \"byte\"")
        }
        var url = URL(fileURLWithPath: spec)
        if kind.isFolder {
            let json = url.appendingPathComponent("tokenizer.json")
            if FileManager.default.fileExists(atPath: json.path) {
                url = json
            } else {
                let ggufs = ((try? FileManager.default.contentsOfDirectory(atPath: spec)) ?? []).filter { $0.hasSuffix(".gguf") }.sorted()
                guard ggufs.count == 1 else {
                    throw DataError(file: spec, "is a directory without tokenizer.json\(ggufs.count > 1 ? " and with several .gguf files" : ""); name the file to use")
                }
                url = url.appendingPathComponent(ggufs[0])
            }
        }
        if GGUFFile.isGGUF(url) { return try BPETokenizer.load(gguf: url) }
        return try BPETokenizer.load(tokenizerJSON: url)
    }

    /// The chat template that comes with a tokenizer spec, or nil: a GGUF's
    /// tokenizer.chat_template; else, in the tokenizer's folder, chat_template.jinja or
    /// tokenizer_config.json's chat_template (its "default" one when it lists several).
    public static func chatTemplate(_ spec: String) -> String? {
        guard spec != "byte" else { return nil }
        let kind = ModelPath.classify(spec)
        let url = URL(fileURLWithPath: spec)
        if kind == .gguf {
            return (try? GGUFFile(contentsOf: url))?.metadata["tokenizer.chat_template"]?.string
        }
        let folder = kind.isFolder ? url : url.deletingLastPathComponent()
        if !kind.isFolder || FileManager.default.fileExists(atPath: folder.appendingPathComponent("tokenizer.json").path) {
            return ChatTemplateFile.text(inFolder: folder)
        }
        // A folder with one .gguf and no tokenizer.json: the tokenizer is that GGUF's.
        let ggufs = ((try? FileManager.default.contentsOfDirectory(atPath: spec)) ?? []).filter { $0.hasSuffix(".gguf") }
        return ggufs.count == 1 ? chatTemplate(folder.appendingPathComponent(ggufs[0]).path) : nil
    }

}
