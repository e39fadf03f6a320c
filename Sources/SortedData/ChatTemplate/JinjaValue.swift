// JinjaValue: the values a chat template computes with, with Python's meaning (truth, str(),
// ==, repr) because HF renders templates with Python's Jinja.
import Foundation

/// A value in a chat template: what messages, tokens and flags are passed as, and what
/// expressions produce.
public indirect enum JinjaValue: Equatable {
    /// A name or key that is not there (Jinja's Undefined): prints as nothing, is false.
    case undefined
    case none
    case bool(Bool)
    case int(Int)
    case double(Double)
    case string(String)
    case array([JinjaValue])
    /// A tuple (the pairs of items()): prints as (a, b), is not equal to a list.
    case tuple([JinjaValue])
    /// What select, reject and the items filter give in Jinja: a generator, which can be
    /// looped over or made a list, but has no length, is always true and cannot be printed.
    case generator([JinjaValue])
    /// A dict's items() view.
    case dictItems([JinjaValue])
    /// A dict; keys keep their order (tojson writes them in it).
    case object(JinjaObject)
    /// `namespace(...)`: the one mutable value, so `set ns.x` inside a loop is seen after it.
    case namespace(JinjaNamespace)

    /// A message as HF passes it: a dict of role and content.
    public init(_ message: ChatMessage) {
        self = .object(JinjaObject([("role", .string(message.role.rawValue)), ("content", .string(message.content))]))
    }

    public static func == (a: JinjaValue, b: JinjaValue) -> Bool {
        switch (a, b) {
        case (.undefined, .undefined), (.none, .none): return true
        case (.string(let x), .string(let y)): return x == y
        case (.array(let x), .array(let y)), (.tuple(let x), .tuple(let y)), (.dictItems(let x), .dictItems(let y)): return x == y
        case (.object(let x), .object(let y)): return x == y
        case (.namespace(let x), .namespace(let y)): return x === y
        default:
            // Python: True == 1 == 1.0.
            if let x = a.number, let y = b.number { return x == y }
            return false
        }
    }

    /// The value as a number, for arithmetic and comparison (bools are ints in Python).
    var number: Double? {
        switch self {
        case .bool(let b): return b ? 1 : 0
        case .int(let i): return Double(i)
        case .double(let d): return d
        default: return nil
        }
    }

    var integer: Int? {
        switch self {
        case .bool(let b): return b ? 1 : 0
        case .int(let i): return i
        default: return nil
        }
    }

    var isTrue: Bool {
        switch self {
        case .undefined, .none: return false
        case .bool(let b): return b
        case .int(let i): return i != 0
        case .double(let d): return d != 0
        case .string(let s): return !s.isEmpty
        case .array(let a), .tuple(let a), .dictItems(let a): return !a.isEmpty
        case .object(let o): return !o.keys.isEmpty
        case .namespace, .generator: return true
        }
    }

    /// Python's type name, for messages.
    var typeName: String {
        switch self {
        case .undefined: return "undefined"
        case .none: return "None"
        case .bool: return "bool"
        case .int: return "int"
        case .double: return "float"
        case .string: return "str"
        case .array: return "list"
        case .tuple: return "tuple"
        case .generator: return "generator"
        case .dictItems: return "dict_items"
        case .object: return "dict"
        case .namespace: return "namespace"
        }
    }

    /// What `{{ value }}` prints: Python's str(), with undefined as nothing; nil for what
    /// Python prints with a memory address (a generator).
    var text: String? {
        switch self {
        case .undefined: return ""
        case .string(let s): return s
        default: return repr
        }
    }

    /// Python's repr() (how lists and dicts print); nil for a generator, in any depth.
    var repr: String? {
        func join(_ items: [JinjaValue]) -> String? {
            let parts = items.compactMap(\.repr)
            return parts.count == items.count ? parts.joined(separator: ", ") : nil
        }
        switch self {
        case .undefined: return ""
        case .none: return "None"
        case .bool(let b): return b ? "True" : "False"
        case .int(let i): return String(i)
        case .double(let d): return d == d.rounded() && abs(d) < 1e16 ? String(format: "%.1f", d) : String(d)
        case .string(let s):
            // Python quotes with ' unless the text has ' and no ".
            let quote: Character = s.contains("'") && !s.contains("\"") ? "\"" : "'"
            var out = String(quote)
            for c in s.unicodeScalars {
                switch c {
                case "\\": out += "\\\\"
                case "\n": out += "\\n"
                case "\r": out += "\\r"
                case "\t": out += "\\t"
                case _ where Character(c) == quote: out += "\\" + String(quote)
                case _ where c.value < 0x20 || c.value == 0x7F: out += String(format: "\\x%02x", c.value)
                default: out.unicodeScalars.append(c)
                }
            }
            return out + String(quote)
        case .array(let a): return join(a).map { "[" + $0 + "]" }
        case .tuple(let a): return join(a).map { "(" + $0 + (a.count == 1 ? ",)" : ")") }
        case .dictItems(let a): return join(a).map { "dict_items([" + $0 + "])" }
        case .generator: return nil
        case .object(let o):
            let parts = o.pairs.compactMap { k, v in v.repr.map { JinjaValue.string(k).repr! + ": " + $0 } }
            return parts.count == o.pairs.count ? "{" + parts.joined(separator: ", ") + "}" : nil
        case .namespace(let n): return JinjaValue.object(n.attributes).repr.map { "<Namespace " + $0 + ">" }
        }
    }

    /// json.dumps(value, ensure_ascii=False, indent=indent), as transformers' tojson filter.
    func json(indent: Int?, depth: Int = 0) -> String? {
        let newline = indent.map { "\n" + String(repeating: " ", count: $0 * (depth + 1)) }
        let close = indent.map { "\n" + String(repeating: " ", count: $0 * depth) } ?? ""
        func list(_ items: [String], _ open: String, _ end: String) -> String {
            if items.isEmpty { return open + end }
            guard let newline else { return open + items.joined(separator: ", ") + end }
            return open + newline + items.joined(separator: "," + newline) + close + end
        }
        switch self {
        case .none: return "null"
        case .bool(let b): return b ? "true" : "false"
        case .int, .double: return repr
        case .string(let s): return Self.jsonQuoted(s)
        case .array(let a), .tuple(let a):
            let items = a.compactMap { $0.json(indent: indent, depth: depth + 1) }
            return items.count == a.count ? list(items, "[", "]") : nil
        case .object(let o):
            let items = o.pairs.compactMap { k, v in v.json(indent: indent, depth: depth + 1).map { Self.jsonQuoted(k) + ": " + $0 } }
            return items.count == o.pairs.count ? list(items, "{", "}") : nil
        case .undefined, .namespace, .generator, .dictItems: return nil
        }
    }

    /// json.dumps' escaping, which differs from SortedFormats' jsonQuoted: \b and \f by
    /// name, DEL written as is.
    private static func jsonQuoted(_ s: String) -> String {
        var out = "\""
        for c in s.unicodeScalars {
            switch c {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            case _ where c.value < 0x20: out += String(format: "\\u%04x", c.value)
            default: out.unicodeScalars.append(c)
            }
        }
        return out + "\""
    }
}

/// A dict with its keys in insertion order.
public struct JinjaObject: Equatable {
    public private(set) var keys: [String] = []
    private var values: [String: JinjaValue] = [:]

    public init(_ pairs: [(String, JinjaValue)] = []) {
        for (k, v) in pairs { set(k, v) }
    }

    public subscript(key: String) -> JinjaValue? { values[key] }

    /// Sets a key; a new one goes last.
    public mutating func set(_ key: String, _ value: JinjaValue) {
        if values[key] == nil { keys.append(key) }
        values[key] = value
    }

    var pairs: [(String, JinjaValue)] { keys.map { ($0, values[$0]!) } }

    public static func == (a: JinjaObject, b: JinjaObject) -> Bool { a.values == b.values }
}

/// The attributes of a `namespace(...)`.
public final class JinjaNamespace {
    var attributes: JinjaObject
    init(_ attributes: JinjaObject) { self.attributes = attributes }
}
