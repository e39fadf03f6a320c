// Template `model`: records and prompts in the model's own chat template. The loss mask covers
// exactly each assistant turn's content and the template's end-of-turn, for every committed
// template; conversations the template cannot split or render are refused; and the template
// text is found beside the tokenizer.
import Foundation
import XCTest
import SortedData
import SortedFormats
import SortedTestSupport

private func fixtureTemplate(_ name: String) throws -> ChatTemplate {
    try ChatTemplate(try String(contentsOf: chatTemplateFixtures.appendingPathComponent(name + ".jinja"), encoding: .utf8))
}

private func conversation(_ name: String) throws -> Record {
    let fixture = try loadJSON(chatTemplateFixtures.appendingPathComponent("expected.json"))
    return .chat(fixture["conversations"]![name]!.array!.map {
        ChatMessage(role: ChatMessage.Role(rawValue: $0["role"]!.string!)!, content: $0["content"]!.string!)
    })
}

/// The example as runs of (trained, text), split where the label changes.
private func runs(_ tokens: [Int32], _ labels: [Int32], _ t: Tokenizer) -> [(Bool, String)] {
    var out: [(Bool, [Int32])] = []
    for (id, label) in zip(tokens, labels) {
        let trained = label != ignoreIndex
        if out.last?.0 == trained { out[out.count - 1].1.append(id) } else { out.append((trained, [id])) }
    }
    return out.map { ($0.0, t.decode($0.1)) }
}

final class ModelTemplateTests: XCTestCase {
    let chatML = { try! TokenizerLoader.load(tokenizerFixtures.appendingPathComponent("bytelevel.json").path) }()

    func testLossMaskCoversExactlyTheAssistantTurns() throws {
        let byte = ByteTokenizer()
        let cases: [(String, String, Tokenizer, [(Bool, String)])] = [
            ("smollm2", "system-multi-turn", chatML, [
                (false, "<|im_start|>system\nYou answer in French.<|im_end|>\n<|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n"),
                (true, "Bonjour !<|im_end|>"),
                (false, "\n<|im_start|>user\nThanks<|im_end|>\n<|im_start|>assistant\n"),
                (true, "De rien.<|im_end|>")]),
            ("smollm2", "exchange", chatML, [
                (false, "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n"),
                (true, "Blue.<|im_end|>")]),
            ("qwen2.5", "exchange", chatML, [
                (false, "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n"),
                (true, "Blue.<|im_end|>")]),
            ("llama3", "system-multi-turn", byte, [
                (false, "<bos><|start_header_id|>system<|end_header_id|>\n\nYou answer in French.<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHello<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"),
                (true, "Bonjour !<|eot_id|>"),
                (false, "<|start_header_id|>user<|end_header_id|>\n\nThanks<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"),
                (true, "De rien.<|eot_id|>")]),
            ("llama2", "system-multi-turn", byte, [
                (false, "<bos>[INST] <<SYS>>\nYou answer in French.\n<</SYS>>\n\nHello [/INST]"),
                (true, " Bonjour ! <eos>"),
                (false, "<bos>[INST] Thanks [/INST]"),
                (true, " De rien. <eos>")]),
            ("mistral", "system-multi-turn", byte, [
                (false, "<bos> [INST] You answer in French.\n\nHello [/INST]"),
                (true, " Bonjour !<eos>"),
                (false, " [INST] Thanks [/INST]"),
                (true, " De rien.<eos>")]),
        ]
        for (name, conversationName, tokenizer, expected) in cases {
            let template = try fixtureTemplate(name)
            let builder = ExampleBuilder(tokenizer: tokenizer, template: .model, maxLength: 4096, chatTemplate: template)
            let record = try conversation(conversationName)
            let (tokens, labels) = try builder.encode(record)
            let got = runs(tokens, labels, tokenizer)
            XCTAssertEqual(got.map(\.0), expected.map(\.0), name)
            XCTAssertEqual(got.map(\.1), expected.map(\.1), name)
            XCTAssertTrue(zip(tokens, labels).allSatisfy { $0.1 == ignoreIndex || $0.1 == $0.0 }, name)
            // The whole is the template's rendering (less the whitespace after the last turn).
            guard case .chat(let messages) = record else { continue }
            let rendered = try template.render(messages.map(JinjaValue.init), addGenerationPrompt: false,
                                               bosToken: tokenizer.bosID.flatMap(tokenizer.token(forID:)),
                                               eosToken: tokenizer.eosID.flatMap(tokenizer.token(forID:)))
            XCTAssertEqual(tokenizer.decode(tokens), String(rendered.reversed().drop { $0.isWhitespace }.reversed()), name)
        }
        // ChatML's markers are the tokenizer's special tokens, not their letters.
        let (tokens, _) = try ExampleBuilder(tokenizer: chatML, template: .model, maxLength: 4096, chatTemplate: try fixtureTemplate("smollm2"))
            .encode(try conversation("system-multi-turn"))
        XCTAssertEqual(tokens.filter { $0 == chatML.id(forToken: "<|im_end|>") }.count, 5)
    }

    func testTokensAreTheWholeRenderingEncodedAtOnce() throws {
        // SentencePiece-style: encoding " Bonjour" on its own would not give the tokens it has
        // after "[/INST]"; the example's tokens are HF's tokenization of the whole text.
        let t = try TokenizerLoader.load(tokenizerFixtures.appendingPathComponent("spm-legacy.json").path)
        let template = try fixtureTemplate("llama2")
        guard case .chat(let messages) = try conversation("system-multi-turn") else { return XCTFail() }
        let (tokens, labels) = try ExampleBuilder(tokenizer: t, template: .model, maxLength: 4096, chatTemplate: template).encode(.chat(messages))
        let rendered = try template.render(messages.map(JinjaValue.init), addGenerationPrompt: false, bosToken: "<s>", eosToken: "</s>")
        XCTAssertEqual(tokens, t.encode(rendered, addSpecialTokens: false, parseSpecial: true))
        let pieces = runs(tokens, labels, t)
        XCTAssertEqual(pieces.map(\.0), [false, true, false, true])
        XCTAssertEqual(tokens.filter { $0 == t.bosID }.count, 2, "the template's <s> is the BOS token")
        let trained = zip(tokens, labels).filter { $0.1 != ignoreIndex }.map(\.0)
        XCTAssertEqual(trained.filter { $0 == t.eosID }.count, 2, "each reply's </s> is trained")
        XCTAssertEqual(t.decode(trained, skipSpecialTokens: true).split(separator: " ").joined(separator: " "), "Bonjour ! De rien.")
    }

    func testInstructionRecordsAndTheSystemPrompt() throws {
        let builder = ExampleBuilder(tokenizer: chatML, template: .model, maxLength: 4096, systemPrompt: "Be brief.",
                                     chatTemplate: try fixtureTemplate("smollm2"))
        let (tokens, labels) = try builder.encode(.instruction(instruction: "Add", input: "1 2", output: "3"))
        XCTAssertEqual(runs(tokens, labels, chatML).map(\.1),
                       ["<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nAdd\n\n1 2<|im_end|>\n<|im_start|>assistant\n", "3<|im_end|>"])
    }

    func testGenerationPromptAndEndOfTurn() throws {
        let smollm2 = try fixtureTemplate("smollm2")
        let prompt = try PromptTemplate.model.prompt(instruction: "Q", tokenizer: chatML, chatTemplate: smollm2)
        XCTAssertEqual(chatML.decode(prompt),
                       "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n")
        XCTAssertEqual(prompt.filter { $0 == chatML.id(forToken: "<|im_start|>") }.count, 3)
        XCTAssertEqual(PromptTemplate.endOfTurnToken(smollm2, tokenizer: chatML), chatML.id(forToken: "<|im_end|>"))
        // With a tokenizer that has no <|eot_id|> token there is no end-of-turn token to stop on.
        XCTAssertNil(PromptTemplate.endOfTurnToken(try fixtureTemplate("llama3"), tokenizer: ByteTokenizer()))
        XCTAssertEqual(try PromptTemplate.model.prompt(instruction: "Q", tokenizer: ByteTokenizer(), chatTemplate: try fixtureTemplate("mistral")),
                       ByteTokenizer().encode("<bos> [INST] Q [/INST]"))
    }

    func testConversationsTheTemplateCannotSplitOrRenderAreRefused() throws {
        func error(_ template: ChatTemplate?, _ record: Record, _ tokenizer: Tokenizer) -> TemplateError? {
            let builder = ExampleBuilder(tokenizer: tokenizer, template: .model, maxLength: 4096, chatTemplate: template)
            do { _ = try builder.encode(record); return nil } catch { return error as? TemplateError }
        }
        XCTAssertEqual(error(nil, try conversation("exchange"), chatML), .noModelTemplate)
        // The blocks template counts the turns, so a conversation's beginning is not the beginning of the whole.
        XCTAssertEqual(error(try fixtureTemplate("blocks"), try conversation("exchange"), chatML), .modelTemplateNotIncremental)
        XCTAssertEqual(error(try fixtureTemplate("llama2"), try conversation("roles-repeat"), ByteTokenizer()),
                       .modelTemplate(.raised("Conversation roles must alternate user/assistant/user/assistant/...", TemplatePosition(line: 1, column: 314))))
        let injected = Record.chat([ChatMessage(role: .user, content: "hi <|im_end|>"), ChatMessage(role: .assistant, content: "a")])
        XCTAssertEqual(error(try fixtureTemplate("smollm2"), injected, chatML), .controlTokenInMessage(role: "user"))
        // Text documents keep their own treatment (every token trained).
        XCTAssertNil(error(nil, .text("plain"), chatML))
    }

    func testTheTemplateIsFoundBesideTheTokenizer() throws {
        let folder = try makeTemporaryDirectory("sortedtrain-chat-template")
        try FileManager.default.copyItem(at: tokenizerFixtures.appendingPathComponent("bytelevel.json"), to: folder.appendingPathComponent("tokenizer.json"))
        XCTAssertNil(TokenizerLoader.chatTemplate(folder.path))
        try Data(#"{"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]}"#.utf8)
            .write(to: folder.appendingPathComponent("tokenizer_config.json"))
        XCTAssertEqual(TokenizerLoader.chatTemplate(folder.path), "D")
        try Data(#"{"chat_template": "C"}"#.utf8).write(to: folder.appendingPathComponent("tokenizer_config.json"))
        XCTAssertEqual(TokenizerLoader.chatTemplate(folder.appendingPathComponent("tokenizer.json").path), "C")
        try Data("J".utf8).write(to: folder.appendingPathComponent("chat_template.jinja"))
        XCTAssertEqual(TokenizerLoader.chatTemplate(folder.path), "J")
        XCTAssertNil(TokenizerLoader.chatTemplate("byte"))
        XCTAssertNil(TokenizerLoader.chatTemplate(tokenizerFixtures.appendingPathComponent("small.gguf").path))
    }
}
