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

}
