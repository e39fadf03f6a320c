// JinjaLexer: splits a template into text and the tokens of its {{ }}, {% %} tags, applying
// whitespace control as HF's environment does: `-` strips beside a tag, lstrip_blocks strips
// the indentation before a block tag or comment, trim_blocks drops the newline after one.

/// A line and column (from 1) in a template's text.
public struct TemplatePosition: Equatable, CustomStringConvertible, Sendable {
    public let line: Int
    public let column: Int
    public init(line: Int, column: Int) {
        self.line = line
        self.column = column
    }
    public var description: String { "line \(line), column \(column)" }
}

enum JinjaToken: Equatable {
    case text(String)
    case outputStart, outputEnd, blockStart, blockEnd
    case name(String)
    case string(String)
    case int(Int)
    case double(Double)
    /// An operator or punctuation: `==`, `(`, `|`, …
    case op(String)
    case end
}

struct LocatedToken {
    let token: JinjaToken
    let at: TemplatePosition
}

struct JinjaLexer {
    private let chars: [Character]
    private var i = 0
    private var line = 1
    private var column = 1
    private var tokens: [LocatedToken] = []

    static func tokenize(_ source: String) throws -> [LocatedToken] {
        // Jinja reads every newline as \n and drops one final newline (keep_trailing_newline off).
        var text = source.replacingOccurrences(of: "\r\n", with: "\n").replacingOccurrences(of: "\r", with: "\n")
        if text.hasSuffix("\n") { text.removeLast() }
        var lexer = JinjaLexer(chars: Array(text))
        try lexer.run()
        lexer.tokens.append(LocatedToken(token: .end, at: lexer.position))
        return lexer.tokens
    }

    private init(chars: [Character]) { self.chars = chars }

    private var position: TemplatePosition { TemplatePosition(line: line, column: column) }

    private func peek(_ offset: Int = 0) -> Character? { i + offset < chars.count ? chars[i + offset] : nil }

    private mutating func advance(_ n: Int = 1) {
        for _ in 0..<n where i < chars.count {
            if chars[i] == "\n" { line += 1; column = 1 } else { column += 1 }
            i += 1
        }
    }

    private func starts(_ s: String, at offset: Int = 0) -> Bool {
        var k = i + offset
        for c in s {
            guard k < chars.count, chars[k] == c else { return false }
            k += 1
        }
        return true
    }

    private mutating func run() throws {
        var stripNext = false  // the previous tag ended with `-`
        while i < chars.count {
            let textStart = position
            let startIndex = i
            while i < chars.count && !(chars[i] == "{" && (peek(1) == "{" || peek(1) == "%" || peek(1) == "#")) { advance() }
            var text = String(chars[startIndex..<i])
            if stripNext { text = String(text.drop { $0.isWhitespace }) }
            stripNext = false
            if i < chars.count {
                let kind = chars[i + 1]
                if peek(2) == "-" {
                    text = String(text.reversed().drop { $0.isWhitespace }.reversed())
                } else if kind != "{" && peek(2) != "+" {
                    // lstrip_blocks: only spaces between the line's start and the tag go.
                    let lastNewline = text.lastIndex(of: "\n")
                    let lineStart = lastNewline.map { text.index(after: $0) } ?? text.startIndex
                    let atLineStart = lastNewline != nil || startIndex == 0 || chars[startIndex - 1] == "\n"
                    if atLineStart && text[lineStart...].allSatisfy({ $0.isWhitespace }) { text = String(text[..<lineStart]) }
                }
            }
            if !text.isEmpty { tokens.append(LocatedToken(token: .text(text), at: textStart)) }
            guard i < chars.count else { break }
            let kind = chars[i + 1]
            let at = position
            advance(2)
            if peek() == "-" || peek() == "+" { advance() }
            switch kind {
            case "#":
                while i < chars.count && !starts("#}") && !starts("-#}") { advance() }
                guard i < chars.count else { throw ChatTemplateError.syntax("a comment is not closed with #}", at) }
                stripNext = peek() == "-"
                advance(stripNext ? 3 : 2)
                if !stripNext && peek() == "\n" { advance() }  // trim_blocks
            case "{":
                tokens.append(LocatedToken(token: .outputStart, at: at))
                stripNext = try lexTag(closing: "}}", at: at)
                tokens.append(LocatedToken(token: .outputEnd, at: position))
            default:
                tokens.append(LocatedToken(token: .blockStart, at: at))
                let closeAt = position
                stripNext = try lexTag(closing: "%}", at: at)
                tokens.append(LocatedToken(token: .blockEnd, at: closeAt))
                let plus = i >= 3 && chars[i - 3] == "+"
                if !stripNext && !plus && peek() == "\n" { advance() }  // trim_blocks
            }
        }
    }

    /// The tokens of one tag up to its closing `}}` or `%}`; whether it closed with `-`.
    private mutating func lexTag(closing: String, at start: TemplatePosition) throws -> Bool {
        var depth = 0  // brackets open: a `}}` inside a dict literal does not close the tag
        while true {
            while let c = peek(), c.isWhitespace { advance() }
            guard let c = peek() else {
                throw ChatTemplateError.syntax("a tag is not closed with \(closing)", start)
            }
            let at = position
            if depth == 0 {
                if starts("-" + closing) || starts("+" + closing) {
                    let strip = c == "-"
                    advance(3)
                    return strip
                }
                if starts(closing) { advance(2); return false }
            }
            if c.isLetter || c == "_" {
                var name = ""
                while let d = peek(), d.isLetter || d.isNumber || d == "_" { name.append(d); advance() }
                tokens.append(LocatedToken(token: .name(name), at: at))
            } else if c.isASCII && c.isNumber {
                var digits = ""
                while let d = peek(), d.isASCII && (d.isNumber || d == "_") { if d != "_" { digits.append(d) }; advance() }
                if peek() == ".", let d = peek(1), d.isASCII && d.isNumber {
                    digits.append("."); advance()
                    while let d = peek(), d.isASCII && d.isNumber { digits.append(d); advance() }
                    tokens.append(LocatedToken(token: .double(Double(digits)!), at: at))
                } else {
                    guard let n = Int(digits) else { throw ChatTemplateError.syntax("the number \(digits) is too large", at) }
                    tokens.append(LocatedToken(token: .int(n), at: at))
                }
            } else if c == "'" || c == "\"" {
                tokens.append(LocatedToken(token: .string(try lexString(quote: c, at: at)), at: at))
            } else {
                let two = peek(1).map { String(c) + String($0) }
                if let two, ["==", "!=", "<=", ">=", "//", "**"].contains(two) {
                    tokens.append(LocatedToken(token: .op(two), at: at))
                    advance(2)
                } else if "+-*/%~|.,:()[]{}<>=".contains(c) {
                    if "([{".contains(c) { depth += 1 }
                    if ")]}".contains(c) { depth -= 1 }
                    tokens.append(LocatedToken(token: .op(String(c)), at: at))
                    advance()
                } else {
                    throw ChatTemplateError.syntax("unexpected character '\(c)'", at)
                }
            }
        }
    }

    /// A string literal with Python's escapes (\n, \t, \\, \', \", \xHH, \uHHHH, …); an
    /// unknown escape keeps its backslash, as Python does.
    private mutating func lexString(quote: Character, at: TemplatePosition) throws -> String {
        advance()
        var out = ""
        while true {
            guard let c = peek() else { throw ChatTemplateError.syntax("a string is not closed", at) }
            advance()
            if c == quote { return out }
            guard c == "\\" else { out.append(c); continue }
            guard let e = peek() else { throw ChatTemplateError.syntax("a string is not closed", at) }
            advance()
            switch e {
            case "n": out.append("\n")
            case "t": out.append("\t")
            case "r": out.append("\r")
            case "b": out.append("\u{08}")
            case "f": out.append("\u{0C}")
            case "0": out.append("\u{0}")
            case "\\", "'", "\"": out.append(e)
            case "\n": break  // a backslash-newline continues the line
            case "x", "u", "U":
                let count = e == "x" ? 2 : e == "u" ? 4 : 8
                var hex = ""
                for _ in 0..<count { if let h = peek(), h.isHexDigit { hex.append(h); advance() } }
                guard hex.count == count, let v = UInt32(hex, radix: 16), let scalar = Unicode.Scalar(v) else {
                    throw ChatTemplateError.syntax("a \\\(e) escape needs \(count) hex digits", at)
                }
                out.unicodeScalars.append(scalar)
            default: out.append("\\"); out.append(e)
            }
        }
    }
}
