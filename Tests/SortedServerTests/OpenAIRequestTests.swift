// Request bodies read field by field: the defaults, the OpenAI spellings (max_completion_tokens,
// developer, content parts), the sortedtrain field, and one named error per wrong field.
import XCTest
import Foundation
@testable import SortedServer

final class OpenAIRequestTests: XCTestCase {
    private func parse(_ json: String, chat: Bool = true) throws -> OpenAIRequest {
        try OpenAIRequest(body: Data(json.utf8), chat: chat)
    }

    func testFieldsAndDefaults() throws {
        let r = try parse(#"{"model": "m@9", "messages": [{"role": "developer", "content": "be brief"}, {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "text", "text": "!"}]}], "max_completion_tokens": 7, "stop": "END", "seed": -1, "stream": true, "stream_options": {"include_usage": true}, "sortedtrain": {"draft_depth": 9, "speculate": 3}}"#)
        XCTAssertEqual(r.model, "m@9")
        guard case .chat(let messages) = r.input else { return XCTFail("not a chat") }
        XCTAssertEqual(messages.map(\.role.rawValue), ["system", "user"])
        XCTAssertEqual(messages[1].content, "hi!")
        XCTAssertEqual(r.maxTokens, 7)
        XCTAssertEqual(r.stop, ["END"])
        XCTAssertEqual(r.seed, UInt64.max)
        XCTAssertTrue(r.stream && r.includeUsage)
        XCTAssertEqual(r.depth, .speculative(draftDepth: 9, speculate: 3))
        XCTAssertEqual(r.temperature, 1)   // OpenAI's default
        let text = try parse(#"{"model": "m", "prompt": ["once"]}"#, chat: false)
        guard case .text(let prompt) = text.input else { return XCTFail("not a completion") }
        XCTAssertEqual(prompt, "once")
    }

    func testEveryWrongFieldIsNamed() {
        let cases: [(String, String)] = [
            (#"{"messages": [{"role": "user", "content": "x"}]}"#, "model"),
            (#"{"model": "m", "messages": []}"#, "messages"),
            (#"{"model": "m", "messages": [{"role": "user", "content": 5}]}"#, "messages[0]"),
            (#"{"model": "m", "messages": [{"role": "user", "content": "x"}], "temperature": 3}"#, "temperature"),
            (#"{"model": "m", "messages": [{"role": "user", "content": "x"}], "top_p": 0}"#, "top_p"),
            (#"{"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": 1.5}"#, "max_tokens"),
            (#"{"model": "m", "messages": [{"role": "user", "content": "x"}], "stop": ["a", "b", "c", "d", "e"]}"#, "stop"),
            (#"{"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}"#, "stream"),
            (#"{"model": "m", "messages": [{"role": "user", "content": "x"}], "sortedtrain": {"early_exit": {"agreement": 2}}}"#, "sortedtrain"),
            (#"{"model": "m", "prompt": ["a", "b"]}"#, "prompt"),
        ]
        for (body, param) in cases {
            XCTAssertThrowsError(try parse(body, chat: !body.contains("prompt")), body) {
                XCTAssertEqual(($0 as? APIError)?.param, param, body)
                XCTAssertEqual(($0 as? APIError)?.status, 400, body)
            }
        }
    }
}
