// ModelCard: what an HF export says about itself, as the HF hub expects — a README.md with
// YAML front matter (base model, library, tags, license) and the run's exits, steps, tokens
// and data, the per-exit table of an evaluation when given, and generation_config.json with
// the ids generation stops at.
import Foundation
import SortedData
import SortedFormats
import SortedInference
import SortedKit

public struct ModelCard {
    /// The exported depth and the depth the run trained.
    public var depth: Int
    public var trainedLayers: Int
    /// The run's exits; those up to `depth` are usable early exits of the export.
    public var exits: [Int]
    public var steps: Int
    /// Tokens the run trained on (sequences × sequence length).
    public var tokens: Int
    public var dataFiles: [String]
    public var template: PromptTemplate
    /// What the run started from, when it did not start from random weights.
    public var base: BaseModel?
    public var evaluation: EvaluationReport?

    /// The initial weights' name and license, as far as their files tell.
    public struct BaseModel: Equatable {
        public var name: String
        public var license: String?
        public var path: String

        var isRepositoryID: Bool {
            name.split(separator: "/").count == 2 && !name.contains(where: \.isWhitespace)
        }
    }

    /// The exits that remain early exits of a depth-`depth` export.
    public var exportedExits: [Int] { exits.filter { $0 <= depth } }

    /// README.md: front matter, then what the model is and how to use its exits.
    public func markdown(modelName: String) -> String {
        var front = ["---"]
        // The hub links base_model to a repository: only an id like "Org/Name" goes there.
        if let base, base.isRepositoryID { front.append("base_model: \(yamlQuoted(base.name))") }
        front.append("library_name: transformers")
        front.append("pipeline_tag: text-generation")
        front.append("tags:")
        for tag in ["sortedtrain", "sorted-fine-tuning", "early-exit", "llama"] { front.append("- \(tag)") }
        if let license = base?.license { front.append("license: \(yamlQuoted(license))") }
        front.append("---")

        var body = ["", "# \(modelName)", ""]
        let prefix = depth == trainedLayers
            ? "The full \(depth)-layer model"
            : "The first \(depth) of \(trainedLayers) layers (with the shared final norm and LM head)"
        body.append("\(prefix) of a Sorted Fine-Tuning (SoFT) run made with sortedtrain: every exit below was trained "
                    + "as a model of its own in the same run, so each prefix of the network is usable.")
        body.append("")
        if let base { body.append("- Base model: \(base.name) (from `\(base.path)`)") }
        body.append("- Trained exits: \(exits.map(String.init).joined(separator: ", ")) of \(trainedLayers) layers"
                    + (exportedExits.count > 1 ? "; usable in this export: \(exportedExits.map(String.init).joined(separator: ", "))" : ""))
        body.append("- Steps: \(steps), tokens: \(tokens)")
        body.append("- Data: " + (dataFiles.isEmpty ? "synthetic" : dataFiles.map { "`\($0)`" }.joined(separator: ", ")))
        body.append("- Prompt template: \(template.rawValue)")

        if let evaluation {
            body += ["", "## Evaluation", "", "`sortedtrain eval` of \(evaluation.model):", "",
                     "| exit | loss | perplexity | accuracy | agreement with deepest | exact match |",
                     "|---|---|---|---|---|---|"]
            for r in evaluation.exits {
                let em = r.exactMatch.map { String(format: "%.1f%% of %d", 100 * $0, r.answered) } ?? "-"
                body.append(String(format: "| %d | %.4f | %.3f | %.3f | %.3f | ", r.depth, r.loss, r.perplexity, r.accuracy, r.agreement) + em + " |")
            }
        }

        body += ["", "## Use", "", "```python", "from transformers import AutoModelForCausalLM, AutoTokenizer",
                 "tokenizer = AutoTokenizer.from_pretrained(\"\(modelName)\")",
                 "model = AutoModelForCausalLM.from_pretrained(\"\(modelName)\")",
                 "inputs = tokenizer(\"...\", return_tensors=\"pt\")",
                 "output = model.generate(**inputs, max_new_tokens=64)"]
        if let draft = exportedExits.first(where: { $0 < depth }) {
            body += ["# Self-speculative decoding: the first \(draft) layers draft, the full model verifies",
                     "# (the same output as plain greedy decoding).",
                     "output = model.generate(**inputs, max_new_tokens=64, assistant_early_exit=\(draft))"]
        }
        body += ["```"]
        if exportedExits.count > 1 {
            body += ["", "Any exit k of \(exportedExits.map(String.init).joined(separator: ", ")) can also be exported alone: "
                     + "`sortedtrain export CHECKPOINT --depth k`."]
        }
        return (front + body).joined(separator: "\n") + "\n"
    }

    /// generation_config.json: BOS, EOS (and the template's end of turn, which generation must
    /// also stop at: ChatML's <|im_end|>, or the model's own template's), PAD.
    public static func generationConfig(tokenizer: Tokenizer, template: PromptTemplate, chatTemplate: ChatTemplate? = nil) -> [String: Any] {
        var config: [String: Any] = [:]
        if let bos = tokenizer.bosID { config["bos_token_id"] = Int(bos) }
        var stops = tokenizer.eosID.map { [Int($0)] } ?? []
        let end = template == .chatml ? tokenizer.id(forToken: "<|im_end|>")
            : template == .model ? chatTemplate.flatMap { PromptTemplate.endOfTurnToken($0, tokenizer: tokenizer) } : nil
        if let end, !stops.contains(Int(end)) { stops.append(Int(end)) }
        if stops.count == 1 { config["eos_token_id"] = stops[0] } else if !stops.isEmpty { config["eos_token_id"] = stops }
        if let pad = tokenizer.padID ?? tokenizer.eosID { config["pad_token_id"] = Int(pad) }
        return config
    }

    /// The base model and its license, read from the initial weights: an HF folder's README
    /// front matter and config.json, or a GGUF's general.* metadata.
    public static func baseModel(at path: String) -> BaseModel? {
        switch ModelPath.classify(path) {
        case .gguf:
            guard let file = try? GGUFFile(contentsOf: URL(fileURLWithPath: path)) else { return nil }
            let meta = file.metadata
            let repository = meta["general.base_model.0.repo_url"]?.string.map { $0.replacingOccurrences(of: "https://huggingface.co/", with: "") }
            let organization = meta["general.organization"]?.string
            let name = repository ?? [organization, meta["general.name"]?.string].compactMap { $0 }.joined(separator: "/")
            return BaseModel(name: name.isEmpty ? (path as NSString).lastPathComponent : name,
                             license: meta["general.license"]?.string, path: path)
        case .hfFolder:
            let folder = URL(fileURLWithPath: path)
            let front = (try? String(contentsOf: folder.appendingPathComponent("README.md"), encoding: .utf8)).map(frontMatter) ?? [:]
            let config = (try? Data(contentsOf: folder.appendingPathComponent("config.json"))).flatMap { try? JSONParser.parse($0) }
            let name = front["base_model"] ?? config?["_name_or_path"]?.string ?? folder.lastPathComponent
            return BaseModel(name: name, license: front["license"], path: path)
        default:
            return nil
        }
    }

    /// The `key: value` lines of a README's YAML front matter (scalars only).
    static func frontMatter(_ text: String) -> [String: String] {
        let lines = text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        guard lines.first?.trimmingCharacters(in: .whitespaces) == "---" else { return [:] }
        var values: [String: String] = [:]
        for line in lines.dropFirst() {
            if line.trimmingCharacters(in: .whitespaces) == "---" { break }
            guard !line.hasPrefix(" "), !line.hasPrefix("-"), let colon = line.firstIndex(of: ":") else { continue }
            let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
                .trimmingCharacters(in: CharacterSet(charactersIn: "\"'"))
            if !value.isEmpty { values[String(line[..<colon])] = value }
        }
        return values
    }

    private func yamlQuoted(_ s: String) -> String {
        s.allSatisfy { $0.isLetter || $0.isNumber || "-_./".contains($0) } ? s : jsonQuoted(s)
    }
}
