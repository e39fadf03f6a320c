// PromptTemplate: turns a record into token ids and HF-style labels (the token id where the
// model learns, -100 on prompt tokens), with EOS after each response and a stated
// truncation policy.
import Foundation

/// How a record is written out for the model.
public enum PromptTemplate: String, CaseIterable, Sendable {
    /// Stanford Alpaca's prompt ("Below is an instruction ... ### Response:"); EOS after the output.
    case alpaca
    /// ChatML (`<|im_start|>role\n...<|im_end|>\n`), as SmolLM2-Instruct uses; each assistant
    /// turn ends with `<|im_end|>`, which is trained (it is what ChatML models stop on).
    case chatml
    /// No template: the prompt text, a newline, the response, EOS.
    case none
    /// The model's own chat template (a ChatTemplate), as transformers renders it; each
    /// assistant turn's content and the template's end-of-turn are trained.
    case model

    static let alpacaWithInput = "Below is an instruction that describes a task, paired with an input that provides further context. Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
    static let alpacaWithoutInput = "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:\n"

    /// The prompt a model trained with this template expects for an instruction: what
    /// generation continues from (for evaluation).
    /// chatTemplate: the model's own, for template `model`.
    public func prompt(instruction: String, input: String = "", tokenizer: Tokenizer, chatTemplate: ChatTemplate? = nil) throws -> [Int32] {
        if self == .model {
            // Encoded whole, as HF's apply_chat_template(add_generation_prompt=True) does.
            let user = Self.conversation(.instruction(instruction: instruction, input: input, output: ""), systemPrompt: nil).dropLast()
            return try modelPrompt(Array(user), chatTemplate: chatTemplate, tokenizer: tokenizer)
        }
        var segments = try self.segments(for: .instruction(instruction: instruction, input: input, output: "x"), tokenizer: tokenizer,
                                         chatTemplate: chatTemplate)
        // Drop the response and what follows it.
        if let firstTrained = segments.firstIndex(where: \.trained) { segments.removeSubrange(firstTrained...) }
        return Self.encode(segments, tokenizer: tokenizer).tokens
    }

    /// The tokens generation continues from after a conversation (an OpenAI chat request's
    /// messages): the conversation and the opening of the assistant's next turn.
    public func prompt(messages: [ChatMessage], tokenizer: Tokenizer, chatTemplate: ChatTemplate? = nil) throws -> [Int32] {
        if self == .model { return try modelPrompt(messages, chatTemplate: chatTemplate, tokenizer: tokenizer) }
        var segments = try self.segments(for: .chat(messages + [ChatMessage(role: .assistant, content: "x")]), tokenizer: tokenizer,
                                         chatTemplate: chatTemplate)
        // Drop the new turn's trained run (its content and end) and what follows it.
        if let last = segments.lastIndex(where: \.trained) {
            let start = segments[...last].lastIndex(where: { !$0.trained }).map { $0 + 1 } ?? 0
            segments.removeSubrange(start...)
        }
        return Self.encode(segments, tokenizer: tokenizer).tokens
    }

    /// A piece of an example: text to encode or a token id, and whether it carries loss.
    struct Segment {
        /// ids: tokens already encoded (a chat template's rendering, encoded whole).
        enum Content { case text(String), token(Int32), ids([Int32]) }
        let content: Content
        let trained: Bool
        static func text(_ s: String, trained: Bool) -> Segment { Segment(content: .text(s), trained: trained) }
        static func token(_ id: Int32, trained: Bool) -> Segment { Segment(content: .token(id), trained: trained) }
        static func ids(_ ids: [Int32], trained: Bool) -> Segment { Segment(content: .ids(ids), trained: trained) }
    }

    /// A record's conversation for the chat templates: an instruction is one user turn (its
    /// input after a blank line) and the reply; systemPrompt is added when there is no system turn.
    private static func conversation(_ record: Record, systemPrompt: String?) -> [ChatMessage] {
        var messages: [ChatMessage]
        switch record {
        case .instruction(let instruction, let input, let output):
            messages = [ChatMessage(role: .user, content: input.isEmpty ? instruction : instruction + "\n\n" + input),
                        ChatMessage(role: .assistant, content: output)]
        case .chat(let m): messages = m
        case .text: messages = []
        }
        if let systemPrompt, messages.first?.role != .system {
            messages.insert(ChatMessage(role: .system, content: systemPrompt), at: 0)
        }
        return messages
    }

    func segments(for record: Record, tokenizer: Tokenizer, systemPrompt: String? = nil, chatTemplate: ChatTemplate? = nil) throws -> [Segment] {
        var out: [Segment] = []
        if tokenizer.addsBOS, let bos = tokenizer.bosID { out.append(.token(bos, trained: false)) }
        func eos() throws -> Segment {
            guard let eos = tokenizer.eosID else { throw TemplateError.noEndToken }
            return .token(eos, trained: true)
        }
        switch (self, record) {
        case (_, .text(let text)):
            // Every token is a target except the BOS, which is context.
            out.append(.text(text, trained: true))
            out.append(try eos())

        case (.alpaca, .instruction(let instruction, let input, let output)):
            let prompt = input.isEmpty
                ? Self.alpacaWithoutInput.replacingOccurrences(of: "{instruction}", with: instruction)
                : Self.alpacaWithInput.replacingOccurrences(of: "{instruction}", with: instruction).replacingOccurrences(of: "{input}", with: input)
            out.append(.text(prompt, trained: false))
            out.append(.text(output, trained: true))
            out.append(try eos())

        case (.alpaca, .chat(let messages)):
            let system = messages.filter { $0.role == .system }
            let turns = messages.filter { $0.role != .system }
            guard turns.count == 2, turns[0].role == .user, turns[1].role == .assistant else {
                throw TemplateError.alpacaNeedsOneExchange
            }
            let instruction = (system.map(\.content) + [turns[0].content]).joined(separator: "\n\n")
            return try segments(for: .instruction(instruction: instruction, input: "", output: turns[1].content), tokenizer: tokenizer)

        case (.chatml, _):
            guard let start = tokenizer.id(forToken: "<|im_start|>"), let end = tokenizer.id(forToken: "<|im_end|>") else {
                throw TemplateError.chatMLTokensMissing
            }
            let messages = Self.conversation(record, systemPrompt: systemPrompt)
            for m in messages {
                let trained = m.role == .assistant
                out.append(.token(start, trained: false))
                out.append(.text(m.role.rawValue + "\n", trained: false))
                out.append(.text(m.content, trained: trained))
                out.append(.token(end, trained: trained))
                out.append(.text("\n", trained: false))
            }
            if messages.last?.role == .assistant { out.removeLast() }  // nothing after the final <|im_end|>

        case (.none, .instruction(let instruction, let input, let output)):
            out.append(.text(input.isEmpty ? instruction + "\n" : instruction + "\n" + input + "\n", trained: false))
            out.append(.text(output, trained: true))
            out.append(try eos())

        case (.model, _):
            // Without the BOS above: the template writes it where the model has one.
            return try modelSegments(Self.conversation(record, systemPrompt: systemPrompt), chatTemplate: chatTemplate, tokenizer: tokenizer)

        case (.none, .chat(let messages)):
            for (i, m) in messages.enumerated() {
                let trained = m.role == .assistant
                out.append(.text(m.content, trained: trained))
                if trained { out.append(try eos()) }
                if i + 1 < messages.count && !trained { out.append(.text("\n", trained: false)) }
            }
        }
        return out
    }

    /// Encodes segments one by one (so the loss boundary is exact); text is encoded with
    /// special-token parsing off, so data cannot inject control tokens.
    static func encode(_ segments: [Segment], tokenizer: Tokenizer) -> (tokens: [Int32], labels: [Int32]) {
        var tokens: [Int32] = []
        var labels: [Int32] = []
        for s in segments {
            let ids: [Int32]
            switch s.content {
            case .text(let text): ids = tokenizer.encode(text, addSpecialTokens: false, parseSpecial: false)
            case .ids(let encoded): ids = encoded
            case .token(let id): ids = [id]
            }
            tokens += ids
            labels += s.trained ? ids : Array(repeating: ignoreIndex, count: ids.count)
        }
        return (tokens, labels)
    }
}

/// The label of a position without loss (HF's convention).
public let ignoreIndex: Int32 = -100

/// A record the template cannot render with this tokenizer.
public enum TemplateError: Error, Equatable, CustomStringConvertible {
    /// Responses end with EOS, and the tokenizer has none.
    case noEndToken
    /// A conversation of more than one user turn and one assistant reply.
    case alpacaNeedsOneExchange
    /// ChatML's <|im_start|> and <|im_end|> are not tokens of this tokenizer.
    case chatMLTokensMissing
    /// Template `model`, and the tokenizer comes with no chat template.
    case noModelTemplate
    /// The model's chat template failed on this conversation (or refused it).
    case modelTemplate(ChatTemplateError)
    /// The model's chat template does not render a conversation's start as the start of the
    /// whole, so context and reply cannot be told apart.
    case modelTemplateNotIncremental
    /// A message holds text the tokenizer reads as a special token (e.g. <|im_end|>).
    case controlTokenInMessage(role: String)

    public var description: String {
        switch self {
        case .noEndToken: return "the tokenizer has no EOS token; responses must end with one"
        case .alpacaNeedsOneExchange:
            return "the alpaca template takes one user turn and one assistant reply; use the chatml template for conversations"
        case .chatMLTokensMissing:
            return "the chatml template needs <|im_start|> and <|im_end|> tokens, which this tokenizer lacks; use the alpaca or none template"
        case .noModelTemplate:
            return "the model template renders with the tokenizer's own chat template, and this tokenizer has none; use the alpaca, chatml or none template"
        case .modelTemplate(let error): return error.description
        case .modelTemplateNotIncremental:
            return "the model's chat template does not render a conversation's beginning as the beginning of the whole, so the replies cannot be told apart from their context; use the alpaca, chatml or none template"
        case .controlTokenInMessage(let role):
            return "a \(role) message holds text the tokenizer reads as a special token (such as an end-of-turn marker); the model template would let it act as one"
        }
    }
}

/// What to do with an example longer than the maximum length.
public enum TruncationPolicy: String, CaseIterable, Sendable {
    /// Keep the first maxLength tokens (prompt first, then as much response as fits); an
    /// example whose response does not start within maxLength is dropped.
    case truncate
    /// Drop the whole example.
    case drop
}

/// Counts reported by tokenization and `prepare`.
public struct DatasetCounts: Equatable, CustomStringConvertible {
    public var records = 0
    public var examples = 0
    public var tokens = 0
    public var trainedTokens = 0
    public var truncated = 0
    public var dropped = 0
    public var skipped = 0

    public var description: String {
        "\(examples) examples, \(tokens) tokens (\(trainedTokens) with loss), \(truncated) truncated, \(dropped) dropped, \(skipped) skipped as bad"
    }
}

/// Tokenized examples stored flat: example i is tokens[offsets[i]..<offsets[i+1]].
public struct TokenizedExamples {
    public var tokens: [Int32] = []
    /// HF-style labels, unshifted: labels[t] == tokens[t] where there is loss, else -100.
    public var labels: [Int32] = []
    public var offsets: [Int] = [0]
    public var counts = DatasetCounts()

    public var count: Int { offsets.count - 1 }

    mutating func append(tokens t: ArraySlice<Int32>, labels l: ArraySlice<Int32>) {
        tokens += t
        labels += l
        offsets.append(tokens.count)
        counts.examples += 1
        counts.tokens += t.count
        counts.trainedTokens += l.reduce(0) { $0 + ($1 >= 0 ? 1 : 0) }
    }
}

public struct ExampleBuilder {
    public var tokenizer: Tokenizer
    public var template: PromptTemplate
    public var maxLength: Int
    public var truncation: TruncationPolicy
    /// For chatml and model: a system message added to conversations that have none.
    public var systemPrompt: String?
    /// For model: the tokenizer's own chat template.
    public var chatTemplate: ChatTemplate?

    public init(tokenizer: Tokenizer, template: PromptTemplate, maxLength: Int, truncation: TruncationPolicy = .truncate,
                systemPrompt: String? = nil, chatTemplate: ChatTemplate? = nil) {
        self.tokenizer = tokenizer
        self.template = template
        self.maxLength = maxLength
        self.truncation = truncation
        self.systemPrompt = systemPrompt
        self.chatTemplate = chatTemplate
    }

    /// The ids and labels of one record, before any length limit.
    public func encode(_ record: Record) throws -> (tokens: [Int32], labels: [Int32]) {
        PromptTemplate.encode(try template.segments(for: record, tokenizer: tokenizer, systemPrompt: systemPrompt, chatTemplate: chatTemplate),
                              tokenizer: tokenizer)
    }

    /// Tokenizes records into examples of at most maxLength tokens. Instruction and chat
    /// records follow the truncation policy; text documents (language modelling) are packed
    /// end to end and cut into maxLength windows, so nothing is lost.
    public func build(_ records: [SourcedRecord]) throws -> TokenizedExamples {
        var out = TokenizedExamples()
        var stream: [Int32] = []   // packed text documents
        var streamLabels: [Int32] = []
        for r in records {
            out.counts.records += 1
            let encoded: (tokens: [Int32], labels: [Int32])
            do { encoded = try encode(r.record) } catch let e as TemplateError {
                throw DataError(file: r.file, line: r.line, .template(e))
            }
            if case .text = r.record {
                stream += encoded.tokens
                streamLabels += encoded.labels
                continue
            }
            if encoded.tokens.count <= maxLength {
                out.append(tokens: encoded.tokens[...], labels: encoded.labels[...])
            } else if truncation == .truncate && encoded.labels.prefix(maxLength).contains(where: { $0 >= 0 }) {
                out.append(tokens: encoded.tokens.prefix(maxLength), labels: encoded.labels.prefix(maxLength))
                out.counts.truncated += 1
            } else {
                out.counts.dropped += 1
            }
        }
        var start = 0
        while start < stream.count {
            let end = min(start + maxLength, stream.count)
            out.append(tokens: stream[start..<end], labels: streamLabels[start..<end])
            start = end
        }
        return out
    }
}
