// ChatTemplate: a model's own Jinja chat template (HF's chat_template, GGUF's
// tokenizer.chat_template), rendered as transformers' apply_chat_template(tokenize=False)
// renders it, for the subset of Jinja chat templates use.

/// A parsed chat template. Parsing refuses what the renderer does not support, so a template
/// that parses renders as transformers does or fails with an error; it is never approximated.
public struct ChatTemplate {
    private let statements: [Statement]

    public init(_ source: String) throws {
        statements = try JinjaParser.parse(source)
    }

    /// The text for a conversation; bos and eos are the tokenizer's special tokens (a
    /// token the tokenizer lacks is left undefined, as HF leaves it); tools is none.
    public func render(_ messages: [JinjaValue], addGenerationPrompt: Bool, bosToken: String?, eosToken: String?) throws -> String {
        var variables: [String: JinjaValue] = [
            "messages": .array(messages), "add_generation_prompt": .bool(addGenerationPrompt), "tools": .none,
        ]
        variables["bos_token"] = bosToken.map { .string($0) }
        variables["eos_token"] = eosToken.map { .string($0) }
        return try JinjaRenderer.render(statements, variables: variables)
    }
}

/// Why a chat template cannot be used or rendered, with where in the template.
public enum ChatTemplateError: Error, Equatable, CustomStringConvertible {
    /// Not valid Jinja.
    case syntax(String, TemplatePosition)
    /// Valid Jinja outside the subset sortedtrain renders.
    case unsupported(String, TemplatePosition)
    /// The template refused the conversation with raise_exception(message).
    case raised(String, TemplatePosition)
    /// An operation on values it does not apply to (Python would raise).
    case invalid(String, TemplatePosition)

    public var description: String {
        switch self {
        case .syntax(let what, let at): return "chat template, \(at): \(what)"
        case .unsupported(let what, let at): return "chat template, \(at): uses \(what), which sortedtrain's Jinja renderer does not support"
        case .raised(let message, let at): return "chat template, \(at): the template refuses the conversation: \(message)"
        case .invalid(let what, let at): return "chat template, \(at): \(what)"
        }
    }
}
