// SharedOptions: option groups of the commands that read text — --tokenizer (prepare,
// tokenize, bench tokenizer) and --template (prepare) — with their typed values and checks.
// The serving commands' optional overrides of both are ServedModelOptions'.
import ArgumentParser
import SortedData

/// The help line of a --tokenizer option: a command words it for what it does with it.
protocol TokenizerOptionHelp {
    static var text: String { get }
}

/// prepare, bench tokenizer: "tokenizer.json, a model directory, a .gguf file, or "byte"."
enum TokenizerSpecHelp: TokenizerOptionHelp {
    static let text = "tokenizer.json, a model directory, a .gguf file, or \"byte\"."
}

/// --tokenizer: the tokenizer a command reads text with (required).
struct TokenizerOptions<Help: TokenizerOptionHelp>: ParsableArguments {
    @Option(help: ArgumentHelp(Help.text))
    var tokenizer: String

    init() {}

    /// The tokenizer --tokenizer names (TokenizerLoader.load's errors say what is wrong).
    func load() throws -> Tokenizer { try TokenizerLoader.load(tokenizer) }
}

/// --template: the prompt template examples are rendered with (default alpaca).
struct TemplateOptions: ParsableArguments {
    @Option(help: "Prompt template: alpaca, chatml, none, or model (the tokenizer's own chat template).")
    var template: String = "alpaca"

    /// The template --template names (once `check` passed).
    var promptTemplate: PromptTemplate { PromptTemplate(rawValue: template)! }

    /// The tokenizer's own chat template, for template model (nil for the others).
    func chatTemplate(tokenizer spec: String) throws -> ChatTemplate? {
        guard promptTemplate == .model else { return nil }
        guard let text = TokenizerLoader.chatTemplate(spec) else {
            throw CommandLineError("--template model: the tokenizer \(spec) comes with no chat template; pick alpaca, chatml or none")
        }
        return try ChatTemplate(text)
    }

    /// The command's `validate()` calls this. It is not this group's own `validate()`:
    /// ArgumentParser runs that while it decodes the command, before it reports a missing
    /// required argument, and that error comes first.
    func check() throws {
        guard PromptTemplate(rawValue: template) != nil else { throw ValidationError("--template must be one of: \(PromptTemplate.allCases.map(\.rawValue).joined(separator: ", "))") }
    }
}
