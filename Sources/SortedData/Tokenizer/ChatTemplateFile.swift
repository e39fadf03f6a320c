// ChatTemplateFile: the Jinja chat template an HF model folder ships — chat_template.jinja,
// or the chat_template of tokenizer_config.json (a string, or the "default" of a list).
import Foundation
import SortedFormats

public enum ChatTemplateFile {
    public static func text(inFolder folder: URL) -> String? {
        if let text = try? String(contentsOf: folder.appendingPathComponent("chat_template.jinja"), encoding: .utf8) {
            return text
        }
        guard let data = try? Data(contentsOf: folder.appendingPathComponent("tokenizer_config.json")),
              let template = (try? JSONParser.parse(data))?["chat_template"] else { return nil }
        if let text = template.string { return text }
        return template.array?.first { $0["name"]?.string == "default" }?["template"]?.string
    }
}
