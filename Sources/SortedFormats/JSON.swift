// JSON: a small strict JSON reader over UTF-8 bytes that knows line numbers, so a bad
// dataset line or tokenizer file is reported as `file:line: what is wrong`.
import Foundation

/// A parsed JSON value. Numbers keep their Double value; ids and counts fit exactly.
public enum JSONValue: Equatable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([String: JSONValue])

    public subscript(key: String) -> JSONValue? {
        if case .object(let o) = self { return o[key] }
        return nil
    }
    public var string: String? { if case .string(let s) = self { return s }; return nil }
    public var bool: Bool? { if case .bool(let b) = self { return b }; return nil }
    public var array: [JSONValue]? { if case .array(let a) = self { return a }; return nil }
    public var object: [String: JSONValue]? { if case .object(let o) = self { return o }; return nil }
    public var isNull: Bool { if case .null = self { return true }; return false }
    /// The number as an Int when it is integral and in range.
    public var int: Int? {
        guard case .number(let d) = self, d.rounded() == d, abs(d) < 9.0e15 else { return nil }
        return Int(d)
    }
    public var double: Double? { if case .number(let d) = self { return d }; return nil }

    /// The value written as compact JSON (non-ASCII characters are written as UTF-8).
    public var serialized: String {
        var out = ""
        write(to: &out)
        return out
    }

    func write(to out: inout String) {
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .number(let d):
            if d.rounded() == d && abs(d) < 9.0e15 { out += String(Int(d)) } else { out += "\(d)" }
        case .string(let s): out += jsonQuoted(s)
        case .array(let a):
            out += "["
            for (i, v) in a.enumerated() {
                if i > 0 { out += ", " }
                v.write(to: &out)
            }
            out += "]"
        case .object(let o):
            out += "{"
            for (i, key) in o.keys.sorted().enumerated() {
                if i > 0 { out += ", " }
                out += jsonQuoted(key)
                out += ": "
                o[key]!.write(to: &out)
            }
            out += "}"
        }
    }
}

/// A syntax error at a 1-based line and column of the parsed bytes.
public struct JSONSyntaxError: Error, CustomStringConvertible {
    public let line: Int
    public let column: Int
    public let message: String
    public var description: String { "line \(line), column \(column): \(message)" }
}

/// Where a value starts in the parsed text (1-based).
public struct JSONPosition: Equatable, Sendable {
    public let line: Int
    public let column: Int
    public init(line: Int, column: Int) {
        self.line = line
        self.column = column
    }
}

/// A parsed document and where each of its values starts, by path: "train" for a key of
/// the top-level object, "train.seed" below it, "sorted.exits[1]" for an array element.
public struct JSONDocument {
    public var value: JSONValue
    public var positions: [String: JSONPosition]
}

/// Parses JSON from UTF-8 bytes. Rejects invalid UTF-8, trailing garbage, lone surrogates.
public struct JSONParser {
    private let bytes: UnsafeRawBufferPointer
    private var index = 0
    private(set) var line: Int
    private var lineStart = 0
    private var depth = 0
    /// Positions are recorded only for `parseWithPositions` (configs, not datasets).
    private var recordsPositions = false
    private var path: [String] = []
    private var positions: [String: JSONPosition] = [:]

    /// `firstLine` is the line number of the first byte (for a JSONL line inside a file).
    public init(bytes: UnsafeRawBufferPointer, firstLine: Int = 1) {
        self.bytes = bytes
        self.line = firstLine
    }

    /// Parses one complete JSON document.
    public static func parse(_ data: Data, firstLine: Int = 1) throws -> JSONValue {
        try data.withUnsafeBytes { raw in
            var p = JSONParser(bytes: raw, firstLine: firstLine)
            return try p.parseDocument()
        }
    }

    public static func parse(_ text: String) throws -> JSONValue {
        try parse(Data(text.utf8))
    }

    /// Parses one complete JSON document and records where every value starts.
    public static func parseWithPositions(_ data: Data) throws -> JSONDocument {
        try data.withUnsafeBytes { raw in
            var p = JSONParser(bytes: raw)
            p.recordsPositions = true
            let value = try p.parseDocument()
            return JSONDocument(value: value, positions: p.positions)
        }
    }

    /// Notes where the value about to be parsed starts, under `component` of the path.
    private mutating func enter(_ component: String) {
        guard recordsPositions else { return }
        path.append(component)
        positions[path.joined(separator: ".").replacingOccurrences(of: ".[", with: "[")] =
            JSONPosition(line: line, column: index - lineStart + 1)
    }

    private mutating func leave() {
        if recordsPositions { path.removeLast() }
    }

    public mutating func parseDocument() throws -> JSONValue {
        skipWhitespace()
        let v = try parseValue()
        skipWhitespace()
        if index < bytes.count { throw error("unexpected text after the JSON value") }
        return v
    }

    /// Parses a document that must be a JSON array, returning each element with the line it
    /// starts on (for Alpaca-style files that are one big array of records).
    public mutating func parseArrayElements() throws -> [(value: JSONValue, line: Int)] {
        skipWhitespace()
        guard peek() == UInt8(ascii: "[") else { throw error("expected a JSON array '['") }
        index += 1
        var out: [(JSONValue, Int)] = []
        skipWhitespace()
        if peek() == UInt8(ascii: "]") {
            index += 1
        } else {
            while true {
                skipWhitespace()
                let startLine = line
                out.append((try parseValue(), startLine))
                skipWhitespace()
                guard let c = peek() else { throw error("unterminated array: expected ',' or ']'") }
                index += 1
                if c == UInt8(ascii: "]") { break }
                if c != UInt8(ascii: ",") { index -= 1; throw error("expected ',' or ']' in array") }
            }
        }
        skipWhitespace()
        if index < bytes.count { throw error("unexpected text after the JSON array") }
        return out
    }

    private func peek() -> UInt8? { index < bytes.count ? bytes[index] : nil }

    private func error(_ message: String) -> JSONSyntaxError {
        JSONSyntaxError(line: line, column: index - lineStart + 1, message: message)
    }

    private mutating func skipWhitespace() {
        while index < bytes.count {
            let c = bytes[index]
            if c == 0x0A { line += 1; index += 1; lineStart = index }
            else if c == 0x20 || c == 0x09 || c == 0x0D { index += 1 }
            else { break }
        }
    }

    private mutating func parseValue() throws -> JSONValue {
        guard let c = peek() else { throw error("unexpected end of input; expected a value") }
        switch c {
        case UInt8(ascii: "{"): return try parseObject()
        case UInt8(ascii: "["): return try parseArray()
        case UInt8(ascii: "\""): return .string(try parseString())
        case UInt8(ascii: "t"): try expectWord("true"); return .bool(true)
        case UInt8(ascii: "f"): try expectWord("false"); return .bool(false)
        case UInt8(ascii: "n"): try expectWord("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
        default: throw error("unexpected character '\(printable(c))'; expected a value")
        }
    }

    private func printable(_ c: UInt8) -> String {
        c >= 0x20 && c < 0x7F ? String(UnicodeScalar(c)) : String(format: "\\x%02X", c)
    }

    private mutating func expectWord(_ word: StaticString) throws {
        let n = word.utf8CodeUnitCount
        guard index + n <= bytes.count else { throw error("unexpected end of input") }
        for k in 0..<n where bytes[index + k] != word.utf8Start[k] {
            throw error("invalid literal; expected '\(word)'")
        }
        index += n
    }

    private mutating func parseObject() throws -> JSONValue {
        depth += 1
        defer { depth -= 1 }
        if depth > 512 { throw error("nesting is too deep") }
        index += 1
        var dict: [String: JSONValue] = [:]
        skipWhitespace()
        if peek() == UInt8(ascii: "}") { index += 1; return .object(dict) }
        while true {
            skipWhitespace()
            guard peek() == UInt8(ascii: "\"") else { throw error(peek() == nil ? "unterminated object" : "expected a string key in object") }
            let key = try parseString()
            if dict[key] != nil { throw error("duplicate key \(jsonQuoted(key)) in object") }
            skipWhitespace()
            guard peek() == UInt8(ascii: ":") else { throw error("expected ':' after object key") }
            index += 1
            skipWhitespace()
            enter(key)
            dict[key] = try parseValue()
            leave()
            skipWhitespace()
            guard let c = peek() else { throw error("unterminated object: expected ',' or '}'") }
            index += 1
            if c == UInt8(ascii: "}") { return .object(dict) }
            if c != UInt8(ascii: ",") { index -= 1; throw error("expected ',' or '}' in object") }
        }
    }

    private mutating func parseArray() throws -> JSONValue {
        depth += 1
        defer { depth -= 1 }
        if depth > 512 { throw error("nesting is too deep") }
        index += 1
        var items: [JSONValue] = []
        skipWhitespace()
        if peek() == UInt8(ascii: "]") { index += 1; return .array(items) }
        while true {
            skipWhitespace()
            enter("[\(items.count)]")
            items.append(try parseValue())
            leave()
            skipWhitespace()
            guard let c = peek() else { throw error("unterminated array: expected ',' or ']'") }
            index += 1
            if c == UInt8(ascii: "]") { return .array(items) }
            if c != UInt8(ascii: ",") { index -= 1; throw error("expected ',' or ']' in array") }
        }
    }

    private mutating func parseNumber() throws -> JSONValue {
        let start = index
        if peek() == UInt8(ascii: "-") { index += 1 }
        func digits() -> Int {
            var n = 0
            while let c = peek(), c >= 0x30 && c <= 0x39 { index += 1; n += 1 }
            return n
        }
        guard let first = peek(), first >= 0x30 && first <= 0x39 else { throw error("invalid number") }
        if first == 0x30 { index += 1 } else { _ = digits() }
        if peek() == UInt8(ascii: ".") {
            index += 1
            guard digits() > 0 else { throw error("invalid number: digits expected after '.'") }
        }
        if let c = peek(), c == UInt8(ascii: "e") || c == UInt8(ascii: "E") {
            index += 1
            if let s = peek(), s == UInt8(ascii: "+") || s == UInt8(ascii: "-") { index += 1 }
            guard digits() > 0 else { throw error("invalid number: digits expected in exponent") }
        }
        let text = String(decoding: UnsafeRawBufferPointer(rebasing: bytes[start..<index]), as: UTF8.self)
        guard let d = Double(text) else { throw error("invalid number '\(text)'") }
        return .number(d)
    }

    private mutating func parseHex4() throws -> UInt32 {
        guard index + 4 <= bytes.count else { throw error("unterminated \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = bytes[index]
            let d: UInt32
            switch c {
            case 0x30...0x39: d = UInt32(c - 0x30)
            case 0x41...0x46: d = UInt32(c - 0x41 + 10)
            case 0x61...0x66: d = UInt32(c - 0x61 + 10)
            default: throw error("invalid \\u escape")
            }
            v = v << 4 | d
            index += 1
        }
        return v
    }

    private mutating func parseString() throws -> String {
        index += 1  // opening quote
        let start = index
        // Fast path: no escapes.
        while index < bytes.count {
            let c = bytes[index]
            if c == UInt8(ascii: "\"") {
                let slice = UnsafeRawBufferPointer(rebasing: bytes[start..<index])
                index += 1
                guard let s = String(validatingUTF8Bytes: slice) else {
                    index = start
                    throw error("string is not valid UTF-8")
                }
                return s
            }
            if c == UInt8(ascii: "\\") { break }
            if c < 0x20 { throw error(c == 0x0A ? "unterminated string (newline inside a string)" : "control character inside a string") }
            index += 1
        }
        var buffer = [UInt8](UnsafeRawBufferPointer(rebasing: bytes[start..<index]))
        while index < bytes.count {
            let c = bytes[index]
            if c == UInt8(ascii: "\"") {
                index += 1
                guard let s = buffer.withUnsafeBytes({ String(validatingUTF8Bytes: $0) }) else {
                    throw error("string is not valid UTF-8")
                }
                return s
            }
            if c < 0x20 { throw error(c == 0x0A ? "unterminated string (newline inside a string)" : "control character inside a string") }
            if c != UInt8(ascii: "\\") { buffer.append(c); index += 1; continue }
            index += 1
            guard let e = peek() else { break }
            index += 1
            switch e {
            case UInt8(ascii: "\""): buffer.append(0x22)
            case UInt8(ascii: "\\"): buffer.append(0x5C)
            case UInt8(ascii: "/"): buffer.append(0x2F)
            case UInt8(ascii: "b"): buffer.append(0x08)
            case UInt8(ascii: "f"): buffer.append(0x0C)
            case UInt8(ascii: "n"): buffer.append(0x0A)
            case UInt8(ascii: "r"): buffer.append(0x0D)
            case UInt8(ascii: "t"): buffer.append(0x09)
            case UInt8(ascii: "u"):
                var v = try parseHex4()
                if v >= 0xD800 && v < 0xDC00 {
                    guard index + 6 <= bytes.count, bytes[index] == UInt8(ascii: "\\"), bytes[index + 1] == UInt8(ascii: "u") else {
                        throw error("unpaired surrogate in \\u escape")
                    }
                    index += 2
                    let low = try parseHex4()
                    guard low >= 0xDC00 && low < 0xE000 else { throw error("unpaired surrogate in \\u escape") }
                    v = 0x10000 + ((v - 0xD800) << 10) + (low - 0xDC00)
                } else if v >= 0xDC00 && v < 0xE000 {
                    throw error("unpaired surrogate in \\u escape")
                }
                buffer.append(contentsOf: Array(String(UnicodeScalar(v)!).utf8))
            default: throw error("invalid escape '\\\(printable(e))'")
            }
        }
        throw error("unterminated string")
    }
}

extension String {
    /// The bytes as a String, or nil when they are not valid UTF-8.
    public init?(validatingUTF8Bytes bytes: UnsafeRawBufferPointer) {
        if bytes.isEmpty { self = ""; return }
        guard let s = String(validating: bytes.assumingMemoryBound(to: UInt8.self), as: UTF8.self) else { return nil }
        self = s
    }
}

/// The 1-based line of the first invalid UTF-8 sequence in `bytes`, or nil when valid.
public func firstInvalidUTF8Line(_ bytes: UnsafeRawBufferPointer) -> Int? {
    if String(validating: bytes.assumingMemoryBound(to: UInt8.self), as: UTF8.self) != nil { return nil }
    var line = 1
    var lineStart = 0
    for i in 0..<bytes.count where bytes[i] == 0x0A {
        let slice = UnsafeRawBufferPointer(rebasing: bytes[lineStart..<i])
        if String(validating: slice.assumingMemoryBound(to: UInt8.self), as: UTF8.self) == nil { return line }
        line += 1
        lineStart = i + 1
    }
    return line
}
