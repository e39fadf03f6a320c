// The Jinja renderer against transformers: every template in Tests/Fixtures/chat-templates
// and every conversation there renders byte for byte as apply_chat_template(tokenize=False)
// does (expected.json, made by scripts/make_chat_template_fixture.py), or is refused by the
// template with the same message. Plus the subset's edges and what is refused.
import Foundation
import XCTest
import SortedData
import SortedFormats

let chatTemplateFixtures = fixtures.appendingPathComponent("chat-templates")

/// A fixture message as HF passes it: a dict with role and content first (tojson writes keys in order).
private func message(_ json: JSONValue) -> JinjaValue {
    let object = json.object!
    let keys = ["role", "content"] + object.keys.filter { $0 != "role" && $0 != "content" }.sorted()
    return .object(JinjaObject(keys.compactMap { k in object[k].map { (k, .string($0.string!)) } }))
}

private func render(_ source: String, _ messages: [JinjaValue] = [], addGenerationPrompt: Bool = false) throws -> String {
    try ChatTemplate(source).render(messages, addGenerationPrompt: addGenerationPrompt, bosToken: "<s>", eosToken: "</s>")
}

final class ChatTemplateRenderingTests: XCTestCase {
    func testEveryFixtureCaseRendersAsTransformersDoes() throws {
        let fixture = try loadJSON(chatTemplateFixtures.appendingPathComponent("expected.json"))
        let cases = fixture["cases"]!.array!
        XCTAssertEqual(cases.count, 11 * 8 * 2)
        var templates: [String: ChatTemplate] = [:]
        for c in cases {
            let name = c["template"]!.string!, conversation = c["conversation"]!.string!
            let addGenerationPrompt = c["add_generation_prompt"]!.bool!
            let label = "\(name) / \(conversation) / add_generation_prompt \(addGenerationPrompt)"
            if templates[name] == nil {
                let source = try String(contentsOf: chatTemplateFixtures.appendingPathComponent(name + ".jinja"), encoding: .utf8)
                templates[name] = try ChatTemplate(source)
            }
            let tokens = fixture["tokens"]![name]!
            let messages = fixture["conversations"]![conversation]!.array!.map(message)
            do {
                let text = try templates[name]!.render(messages, addGenerationPrompt: addGenerationPrompt,
                                                       bosToken: tokens["bos_token"]?.string, eosToken: tokens["eos_token"]?.string)
                XCTAssertEqual(text, c["expected"]?.string, label)
            } catch ChatTemplateError.raised(let message, _) {
                XCTAssertEqual(message, c["error"]?.string, label)
            }
        }
    }

    func testWhitespaceControlAndHFBlockSettings() throws {
        // lstrip_blocks drops a block tag's indentation, trim_blocks the newline after it;
        // output tags keep both; `-` strips all whitespace on its side; `+` keeps indentation.
        XCTAssertEqual(try render("a\n  {% if true %}\n  b\n  {% endif %}\nc"), "a\n  b\nc")
        XCTAssertEqual(try render("a\n  {{ 'x' }}\nc"), "a\n  x\nc")
        XCTAssertEqual(try render("a  \n {{- 'x' -}} \n c"), "axc")
        XCTAssertEqual(try render("a\n  {%+ if true %}b{% endif %}"), "a\n  b")
        XCTAssertEqual(try render("x {% if true %}y{% endif %}"), "x y")   // not at a line's start: kept
        XCTAssertEqual(try render("{# note #}\nz\n"), "z")                  // one final newline is dropped
    }

    func testExpressions() throws {
        let messages: [JinjaValue] = [.init(ChatMessage(role: .system, content: " s ")), .init(ChatMessage(role: .user, content: "u"))]
        XCTAssertEqual(try render("{{ messages[1:] | length }} {{ messages[-1].role }} {{ messages[0]['content'] | trim }}", messages), "1 user s")
        XCTAssertEqual(try render("{% for m in messages %}{{ loop.index }}{{ loop.index0 }}{{ loop.first }}{{ loop.last }};{% endfor %}", messages),
                       "10TrueFalse;21FalseTrue;")
        XCTAssertEqual(try render("{{ 'a' + 'b' ~ 1 }} {{ 7 // 2 }} {{ -7 % 3 }} {{ 1 / 2 }} {{ 2 ** 3 }}"), "ab1 3 2 0.5 8")
        XCTAssertEqual(try render("{{ 'x' in 'xyz' }} {{ 'r' not in {'r': 1} }} {{ 1 < 2 < 3 }} {{ none is none }} {{ foo is defined }}"),
                       "True False True True False")
        XCTAssertEqual(try render("{{ [1, 'a', none, true] }} {{ {'k': [1.5]} | tojson }} {{ {'k': 1} | tojson(indent=2) }}"),
                       "[1, 'a', None, True] {\"k\": [1.5]} {\n  \"k\": 1\n}")
        XCTAssertEqual(try render("{{ ['\\x07\\'', \"\\\\\"] }} {{ '\\b\\x7f' | tojson }}"), "[\"\\x07'\", '\\\\'] \"\\b\u{7F}\"")  // Python's repr and json.dumps
        XCTAssertEqual(try render("{{ foo | default('d') }} {{ '' | default('e', true) }} {{ 'Ab' | upper }}{{ 'Ab' | lower }} {{ ['a','b'] | join('-') }}"),
                       "d e ABab a-b")
        XCTAssertEqual(try render("{% set ns = namespace(n=0) %}{% for i in range(3) %}{% set ns.n = ns.n + i %}{% set leak = 1 %}{% endfor %}{{ ns.n }}{{ leak }}"),
                       "3")
        XCTAssertEqual(try render("{% for k, v in {'a': 1}.items() %}{{ k }}={{ v }}{% else %}none{% endfor %}{% for x in [] %}{% else %}empty{% endfor %}"),
                       "a=1empty")
        XCTAssertEqual(try render("{{ ' a b '.strip().split(' ') }} {{ 'abc'.startswith('ab') }} {{ 'x' if false else 'y' }} {{ 'abc'[::-1] }}"),
                       "['a', 'b'] True y cba")
        XCTAssertEqual(try render("{% if false %}1{% elif not none and (0 or 'z') %}2{% else %}3{% endif %}"), "2")
        XCTAssertEqual(try render("{{ [1, 2] | first }}{{ 'ab' | last }}{{ 1 | string }}{{ [] | count }}{{ x | d('-') }} {{ x is undefined }} {{ {} is mapping }} {{ true is boolean }} {{ 1.5 is number }}"),
                       "1b10- True True True True")
        XCTAssertEqual(try render("{{ {'a': 1}.get('a') }}{{ {'a': 1}.get('b', 2) }} {{ {'a': 1}.items() }} {{ 'xax'.replace('x', 'y') }} {{ 'ab'.endswith('b') }} {{ '..a..'.lstrip('.') }}{{ ' a '.rstrip() }}| {{ 'a'.upper() }}{{ 'B'.lower() }}"),
                       "12 dict_items([('a', 1)]) yay True a.. a| Ab")
        XCTAssertEqual(try render("{% for m in messages if m.role != 'system' %}{{ loop.index }}/{{ loop.length }} {{ m.role }}{% endfor %}", messages),
                       "1/1 user")
        XCTAssertEqual(try render("{{ messages | selectattr('role', 'equalto', 'user') | list | length }}{{ messages | rejectattr('role', 'eq', 'user') | list | length }} {{ [0, 1, 2] | select | list }} {{ [1, 2] | reject('equalto', 1) | list }} {{ {'a': 1} | items | list }} {{ 'yes' if [] | select else 'no' }}", messages),
                       "11 [1, 2] [2] [('a', 1)] yes")
        XCTAssertEqual(try render("{{ 3 is equalto 3 }} {{ 'ab' is iterable }} {{ 1 is iterable }} {{ true is true }} {{ 0 is false }} {{ x is equalto(1) }}"),
                       "True True False True False False")
        XCTAssertEqual(try render("{{ strftime_now('%Y') }}"), String(Calendar.current.component(.year, from: Date())))
    }

    func testUnsupportedSyntaxIsRefusedWithItsPosition() {
        let refused: [(String, ChatTemplateError)] = [
            ("{% macro f() %}{% endmacro %}", .unsupported("{% macro %}", TemplatePosition(line: 1, column: 4))),
            ("a\n{{ x | wordwrap }}", .unsupported("the filter 'wordwrap'", TemplatePosition(line: 2, column: 6))),
            ("{% for m in messages recursive %}{% endfor %}", .unsupported("recursive loops", TemplatePosition(line: 1, column: 22))),
            ("{% for m in messages %}{% break %}{% endfor %}", .unsupported("{% break %}", TemplatePosition(line: 1, column: 27))),
            ("{{ x is divisibleby }}", .unsupported("the test 'divisibleby'", TemplatePosition(line: 1, column: 6))),
            ("{{ cycler() }}", .unsupported("the function 'cycler'", TemplatePosition(line: 1, column: 4))),
            ("{{ 'a'.title() }}", .unsupported("the method 'title'", TemplatePosition(line: 1, column: 7))),
            ("{% if x %}", .syntax("the template ends before {% elif or else or endif %}", TemplatePosition(line: 1, column: 11))),
            ("{{ 'a' }", .syntax("a tag is not closed with }}", TemplatePosition(line: 1, column: 1))),
        ]
        for (source, expected) in refused {
            XCTAssertThrowsError(try ChatTemplate(source), source) { XCTAssertEqual($0 as? ChatTemplateError, expected, source) }
        }
        // Errors Python would raise at render time are errors here too, never empty text.
        XCTAssertThrowsError(try render("{{ undefined_name.role }}")) {
            XCTAssertEqual($0 as? ChatTemplateError, .invalid("undefined has no attribute or item 'role'", TemplatePosition(line: 1, column: 18)))
        }
        XCTAssertThrowsError(try render("{{ 'a' + 1 }}"))
        XCTAssertThrowsError(try render("{{ [1] | select | length }}"))
        XCTAssertThrowsError(try render("{{ [1] | select }}")) {
            XCTAssertEqual($0 as? ChatTemplateError, .unsupported("printing a generator (Python prints its address)", TemplatePosition(line: 1, column: 8)))
        }
        XCTAssertThrowsError(try render("{{ raise_exception('no') }}")) {
            XCTAssertEqual(($0 as? ChatTemplateError)?.description, "chat template, line 1, column 4: the template refuses the conversation: no")
        }
    }
}
