// ModelTemplate: records and prompts written with the model's own chat template (template
// `model`). The loss mask comes from rendering the conversation prefix by prefix: the text up
// to an assistant turn, with the generation prompt, is context; what the turn then adds — its
// content and the template's end-of-turn — is trained; whitespace the template writes after
// the end-of-turn is context again. The tokens are those of the whole text encoded at once
// (as HF's apply_chat_template tokenizes it), each boundary where the encoding of the text
// before it stops agreeing with them.

/// A conversation, its model template and tokenizer: renderings of its first turns, and their tokens.
private struct ModelRendering {
    let messages: [JinjaValue]
    let chatTemplate: ChatTemplate
    let tokenizer: Tokenizer

    init(_ messages: [ChatMessage], chatTemplate: ChatTemplate?, tokenizer: Tokenizer) throws {
        guard let chatTemplate else { throw TemplateError.noModelTemplate }
        // The template's text is encoded with special tokens read; a message's must not hold
        // any, or data could write the template's control tokens.
        if let bad = messages.first(where: {
            tokenizer.encode($0.content, addSpecialTokens: false, parseSpecial: true) != tokenizer.encode($0.content, addSpecialTokens: false, parseSpecial: false)
        }) {
            throw TemplateError.controlTokenInMessage(role: bad.role.rawValue)
        }
        self.messages = messages.map(JinjaValue.init)
        self.chatTemplate = chatTemplate
        self.tokenizer = tokenizer
    }

    /// The first `count` messages as UTF-8 (compared as bytes: exact, no Unicode folding).
    func render(_ count: Int, _ addGenerationPrompt: Bool) throws -> [UInt8] {
        do {
            return Array(try chatTemplate.render(Array(messages.prefix(count)), addGenerationPrompt: addGenerationPrompt,
                                                 bosToken: tokenizer.bosID.flatMap(tokenizer.token(forID:)),
                                                 eosToken: tokenizer.eosID.flatMap(tokenizer.token(forID:))).utf8)
        } catch let error as ChatTemplateError {
            throw TemplateError.modelTemplate(error)
        }
    }

    /// As HF encodes a rendered chat: special tokens read, none added.
    func encode(_ bytes: ArraySlice<UInt8>) -> [Int32] {
        tokenizer.encode(String(decoding: bytes, as: UTF8.self), addSpecialTokens: false, parseSpecial: true)
    }
}

extension PromptTemplate {
    /// The tokens generation continues from: the conversation and the generation prompt.
    func modelPrompt(_ messages: [ChatMessage], chatTemplate: ChatTemplate?, tokenizer: Tokenizer) throws -> [Int32] {
        let rendering = try ModelRendering(messages, chatTemplate: chatTemplate, tokenizer: tokenizer)
        return rendering.encode(try rendering.render(messages.count, true)[...])
    }

    func modelSegments(_ messages: [ChatMessage], chatTemplate: ChatTemplate?, tokenizer: Tokenizer) throws -> [Segment] {
        let rendering = try ModelRendering(messages, chatTemplate: chatTemplate, tokenizer: tokenizer)
        let render = rendering.render
        var ends: [(end: Int, trained: Bool)] = []  // where each piece of the rendering ends, in bytes
        var done: [UInt8] = []  // the rendering so far
        func take(_ text: [UInt8], trained: Bool) throws {
            guard text.starts(with: done) else { throw TemplateError.modelTemplateNotIncremental }
            if text.count > done.count { ends.append((text.count, trained)) }
            done = text
        }
        for (i, m) in messages.enumerated() where m.role == .assistant {
            try take(try render(i, true), trained: false)
            var turn = try render(i + 1, false)
            while let last = turn.last, last == 0x20 || last == 0x0A || last == 0x09 || last == 0x0D { turn.removeLast() }
            try take(turn, trained: true)
        }
        // After the last assistant turn: nothing but the template's trailing whitespace is dropped.
        let whole = try render(messages.count, false)
        guard whole.starts(with: done) else { throw TemplateError.modelTemplateNotIncremental }
        if whole[done.count...].contains(where: { !($0 == 0x20 || $0 == 0x0A || $0 == 0x09 || $0 == 0x0D) }) {
            try take(whole, trained: false)
        }
        let tokens = rendering.encode(done[...])
        var out: [Segment] = []
        var start = 0
        for (k, piece) in ends.enumerated() {
            // A token that spans a boundary (a merge across it) goes to the later piece.
            let end = k == ends.count - 1 ? tokens.count
                : max(start, zip(rendering.encode(done[..<piece.end]), tokens).prefix { $0 == $1 }.count)
            out.append(.ids(Array(tokens[start..<end]), trained: piece.trained))
            start = end
        }
        return out
    }

    /// The token that ends an assistant turn under the model's template (e.g. <|im_end|>,
    /// <|eot_id|>): the last token the template writes after a reply, when it is a special
    /// token; nil when there is none.
    public static func endOfTurnToken(_ chatTemplate: ChatTemplate, tokenizer: Tokenizer) -> Int32? {
        guard let segments = try? PromptTemplate.model.modelSegments([ChatMessage(role: .user, content: "y"), ChatMessage(role: .assistant, content: "x")],
                                                                      chatTemplate: chatTemplate, tokenizer: tokenizer),
              case .ids(let trained)? = segments.last(where: \.trained)?.content,
              let id = trained.last,
              let text = tokenizer.token(forID: id),
              tokenizer.encode(text, addSpecialTokens: false, parseSpecial: true) == [id],
              tokenizer.encode(text, addSpecialTokens: false, parseSpecial: false) != [id] else { return nil }
        return id
    }
}
