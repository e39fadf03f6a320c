// JinjaRenderer: evaluates a parsed template against its variables, with Jinja's meaning as
// transformers runs it (Python semantics, Undefined for missing names and keys, transformers'
// tojson, raise_exception and strftime_now).
import Foundation

struct JinjaRenderer {
    static let functions: Set<String> = ["raise_exception", "strftime_now", "namespace", "range"]
    static let methods: Set<String> = ["strip", "lstrip", "rstrip", "startswith", "endswith", "split", "replace", "upper", "lower",
                                       "get", "items"]

    /// Innermost last: a loop body gets its own scope, so what it sets does not leak out.
    private var scopes: [[String: JinjaValue]]
    private var out = ""

    static func render(_ statements: [Statement], variables: [String: JinjaValue]) throws -> String {
        var renderer = JinjaRenderer(scopes: [variables])
        try renderer.run(statements)
        return renderer.out
    }

    private init(scopes: [[String: JinjaValue]]) { self.scopes = scopes }

    private func lookup(_ name: String) -> JinjaValue {
        for scope in scopes.reversed() { if let v = scope[name] { return v } }
        return .undefined
    }

    private mutating func run(_ statements: [Statement]) throws {
        for statement in statements {
            switch statement {
            case .text(let text): out += text
            case .output(let e): out += try str(try eval(e), at: e.at)
            case .if(let branches, let otherwise):
                if let taken = try branches.first(where: { try eval($0.0).isTrue }) {
                    try run(taken.1)
                } else {
                    try run(otherwise)
                }
            case .for(let targets, let over, let filter, let body, let otherwise, let at):
                func bind(_ item: JinjaValue) throws -> [String: JinjaValue] {
                    if targets.count == 1 { return [targets[0]: item] }
                    guard let parts = item.elements, parts.count == targets.count else {
                        throw ChatTemplateError.invalid("cannot unpack \(item.typeName) into \(targets.count) names", at)
                    }
                    return Dictionary(uniqueKeysWithValues: zip(targets, parts))
                }
                var items = try iterate(try eval(over), at: over.at)
                if let filter {
                    items = try items.filter { item in
                        scopes.append(try bind(item))
                        defer { scopes.removeLast() }
                        return try eval(filter).isTrue
                    }
                }
                if items.isEmpty { try run(otherwise) }
                for (index, item) in items.enumerated() {
                    var scope = try bind(item)
                    var loop = JinjaObject([
                        ("index", .int(index + 1)), ("index0", .int(index)),
                        ("revindex", .int(items.count - index)), ("revindex0", .int(items.count - index - 1)),
                        ("first", .bool(index == 0)), ("last", .bool(index == items.count - 1)),
                        ("length", .int(items.count)), ("depth", .int(1)), ("depth0", .int(0)),
                    ])
                    if index > 0 { loop.set("previtem", items[index - 1]) }
                    if index + 1 < items.count { loop.set("nextitem", items[index + 1]) }
                    scope["loop"] = .object(loop)
                    scopes.append(scope)
                    defer { scopes.removeLast() }
                    try run(body)
                }
            case .set(let name, let attribute, let e, let at):
                let value = try eval(e)
                if let attribute {
                    guard case .namespace(let ns) = lookup(name) else {
                        throw ChatTemplateError.invalid("'\(name)' is not a namespace; only a namespace's attributes can be set", at)
                    }
                    ns.attributes.set(attribute, value)
                } else {
                    scopes[scopes.count - 1][name] = value
                }
            }
        }
    }

    /// str(value), refused for what Python would print with a memory address.
    private func str(_ value: JinjaValue, at: TemplatePosition) throws -> String {
        guard let text = value.text else { throw ChatTemplateError.unsupported("printing a \(value.typeName) (Python prints its address)", at) }
        return text
    }

    private func iterate(_ value: JinjaValue, at: TemplatePosition) throws -> [JinjaValue] {
        switch value {
        case .undefined: return []
        case .array(let a), .tuple(let a), .generator(let a), .dictItems(let a): return a
        case .object(let o): return o.keys.map { .string($0) }
        case .string(let s): return s.unicodeScalars.map { .string(String($0)) }
        default: throw ChatTemplateError.invalid("cannot loop over \(value.typeName)", at)
        }
    }

    private func eval(_ e: Expr) throws -> JinjaValue {
        switch e.kind {
        case .literal(let v): return v
        case .name(let name): return lookup(name)
        case .list(let items): return .array(try items.map(eval))
        case .dict(let pairs):
            var o = JinjaObject()
            for (k, v) in pairs {
                guard case .string(let key) = try eval(k) else { throw ChatTemplateError.unsupported("dict keys that are not strings", k.at) }
                o.set(key, try eval(v))
            }
            return .object(o)
        case .attribute(let base, let name):
            return try member(try eval(base), .string(name), at: e.at)
        case .item(let base, let index):
            return try member(try eval(base), try eval(index), at: e.at)
        case .slice(let base, let start, let stop, let step):
            return try slice(try eval(base), try start.map(eval), try stop.map(eval), try step.map(eval), at: e.at)
        case .call(let callee, let args, let kwargs):
            return try call(callee, try args.map(eval), try kwargs.map { ($0.0, try eval($0.1)) }, at: e.at)
        case .filter(let base, let name, let args, let kwargs):
            return try filter(name, try eval(base), try args.map(eval), try kwargs.map { ($0.0, try eval($0.1)) }, at: e.at)
        case .test(let base, let name, let args, let negated):
            return .bool(try test(name, try eval(base), try args.map(eval), at: e.at) != negated)
        case .negate(let inner):
            switch try eval(inner) {
            case .int(let i): return .int(-i)
            case .double(let d): return .double(-d)
            case .bool(let b): return .int(b ? -1 : 0)
            case let v: throw ChatTemplateError.invalid("cannot negate \(v.typeName)", e.at)
            }
        case .not(let inner): return .bool(!(try eval(inner).isTrue))
        case .and(let a, let b):
            let left = try eval(a)
            return left.isTrue ? try eval(b) : left
        case .or(let a, let b):
            let left = try eval(a)
            return left.isTrue ? left : try eval(b)
        case .binary(let op, let a, let b):
            return try arithmetic(op, try eval(a), try eval(b), at: e.at)
        case .compare(let first, let rest):
            var left = try eval(first)
            for (op, rightExpr) in rest {
                let right = try eval(rightExpr)
                guard try compare(op, left, right, at: rightExpr.at) else { return .bool(false) }
                left = right
            }
            return .bool(true)
        case .conditional(let value, let condition, let otherwise):
            if try eval(condition).isTrue { return try eval(value) }
            return try otherwise.map(eval) ?? .undefined
        }
    }

    /// `a.b` and `a[b]`: a dict's key, a list's or string's index, a namespace's attribute.
    private func member(_ base: JinjaValue, _ key: JinjaValue, at: TemplatePosition) throws -> JinjaValue {
        switch (base, key) {
        case (.object(let o), .string(let k)): return o[k] ?? .undefined
        case (.namespace(let ns), .string(let k)): return ns.attributes[k] ?? .undefined
        case (.array(let a), _) where key.integer != nil, (.tuple(let a), _) where key.integer != nil:
            let i = key.integer! < 0 ? a.count + key.integer! : key.integer!
            return a.indices.contains(i) ? a[i] : .undefined
        case (.string(let s), _) where key.integer != nil:
            let scalars = Array(s.unicodeScalars)
            let i = key.integer! < 0 ? scalars.count + key.integer! : key.integer!
            return scalars.indices.contains(i) ? .string(String(scalars[i])) : .undefined
        case (.undefined, _), (.none, _):
            throw ChatTemplateError.invalid("\(base.typeName) has no attribute or item \(key.repr ?? key.typeName)", at)
        default:
            return .undefined
        }
    }

    private func slice(_ base: JinjaValue, _ start: JinjaValue?, _ stop: JinjaValue?, _ step: JinjaValue?,
                       at: TemplatePosition) throws -> JinjaValue {
        func bound(_ v: JinjaValue?) throws -> Int? {
            guard let v, v != .none else { return nil }
            guard let i = v.integer else { throw ChatTemplateError.invalid("slice bounds must be integers, not \(v.typeName)", at) }
            return i
        }
        let step = try bound(step) ?? 1
        guard step != 0 else { throw ChatTemplateError.invalid("a slice step cannot be zero", at) }
        func indices(_ count: Int) throws -> [Int] {
            // Python's slice.indices.
            func clamp(_ i: Int?, _ fallback: Int) -> Int {
                guard var i else { return fallback }
                if i < 0 { i += count }
                return step > 0 ? min(max(i, 0), count) : min(max(i, -1), count - 1)
            }
            let from = clamp(try bound(start), step > 0 ? 0 : count - 1)
            let to = clamp(try bound(stop), step > 0 ? count : -1)
            return Array(stride(from: from, to: to, by: step))
        }
        switch base {
        case .array(let a): return .array(try indices(a.count).map { a[$0] })
        case .string(let s):
            let scalars = Array(s.unicodeScalars)
            var out = String.UnicodeScalarView()
            for i in try indices(scalars.count) { out.append(scalars[i]) }
            return .string(String(out))
        default: throw ChatTemplateError.invalid("cannot slice \(base.typeName)", at)
        }
    }

    private func call(_ callee: Expr, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)], at: TemplatePosition) throws -> JinjaValue {
        if case .attribute(let base, let name) = callee.kind {
            return try method(name, of: try eval(base), args, at: at)
        }
        guard case .name(let name) = callee.kind else { throw ChatTemplateError.unsupported("calling this value", at) }
        switch (name, args.count) {
        case ("raise_exception", 1): throw ChatTemplateError.raised(try str(args[0], at: at), at)
        case ("strftime_now", 1):
            var now = time(nil)
            var parts = tm()
            localtime_r(&now, &parts)
            var buffer = [Int8](repeating: 0, count: 256)
            let n = strftime(&buffer, buffer.count, try str(args[0], at: at), &parts)
            return .string(String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self))
        case ("namespace", 0): return .namespace(JinjaNamespace(JinjaObject(kwargs)))
        case ("range", 1...3) where args.allSatisfy({ $0.integer != nil }):
            let n = args.map { $0.integer! }
            let (from, to, step) = n.count == 1 ? (0, n[0], 1) : (n[0], n[1], n.count == 3 ? n[2] : 1)
            guard step != 0 else { throw ChatTemplateError.invalid("range() step cannot be zero", at) }
            return .array(stride(from: from, to: to, by: step).map { .int($0) })
        default:
            throw ChatTemplateError.invalid("\(name)() does not take these arguments", at)
        }
    }

    private func method(_ name: String, of base: JinjaValue, _ args: [JinjaValue], at: TemplatePosition) throws -> JinjaValue {
        func string(_ i: Int) throws -> String? {
            guard i < args.count, args[i] != .none else { return nil }
            guard case .string(let s) = args[i] else { throw ChatTemplateError.invalid("\(name)() takes a string, not \(args[i].typeName)", at) }
            return s
        }
        switch (base, name) {
        case (.string(let s), "strip"): return .string(Self.strip(s, try string(0), leading: true, trailing: true))
        case (.string(let s), "lstrip"): return .string(Self.strip(s, try string(0), leading: true, trailing: false))
        case (.string(let s), "rstrip"): return .string(Self.strip(s, try string(0), leading: false, trailing: true))
        case (.string(let s), "startswith") where args.count == 1: return .bool(s.unicodeScalars.starts(with: (try string(0) ?? "").unicodeScalars))
        case (.string(let s), "endswith") where args.count == 1: return .bool(s.unicodeScalars.reversed().starts(with: (try string(0) ?? "").unicodeScalars.reversed()))
        case (.string(let s), "upper") where args.isEmpty: return .string(s.uppercased())
        case (.string(let s), "lower") where args.isEmpty: return .string(s.lowercased())
        case (.string(let s), "replace") where args.count == 2:
            return .string(s.replacingOccurrences(of: try string(0) ?? "", with: try string(1) ?? ""))
        case (.string(let s), "split") where args.count <= 1:
            if let separator = try string(0) {
                guard !separator.isEmpty else { throw ChatTemplateError.invalid("split() separator is empty", at) }
                return .array(s.components(separatedBy: separator).map { .string($0) })
            }
            return .array(s.split(whereSeparator: { $0.isWhitespace }).map { .string(String($0)) })
        case (.object(let o), "get") where args.count == 1 || args.count == 2:
            guard case .string(let key) = args[0] else { return args.count == 2 ? args[1] : .none }
            return o[key] ?? (args.count == 2 ? args[1] : .none)
        case (.object(let o), "items") where args.isEmpty: return .dictItems(o.pairs.map { .tuple([.string($0.0), $0.1]) })
        default:
            throw ChatTemplateError.invalid("\(base.typeName) has no method \(name)() taking \(args.count) arguments", at)
        }
    }

    /// Python's str.strip: whitespace, or the given characters.
    static func strip(_ s: String, _ characters: String?, leading: Bool, trailing: Bool) -> String {
        let set = characters.map { Set($0.unicodeScalars) }
        let drop = { (c: Unicode.Scalar) in set?.contains(c) ?? (c.properties.isWhitespace || (0x1C...0x1F).contains(c.value)) }
        var scalars = Substring(s).unicodeScalars[...]
        if leading { while let c = scalars.first, drop(c) { scalars.removeFirst() } }
        if trailing { while let c = scalars.last, drop(c) { scalars.removeLast() } }
        return String(String.UnicodeScalarView(scalars))
    }

    private func filter(_ name: String, _ value: JinjaValue, _ args: [JinjaValue], _ kwargs: [(String, JinjaValue)],
                        at: TemplatePosition) throws -> JinjaValue {
        func bad() -> ChatTemplateError { .invalid("the filter \(name) does not take these arguments", at) }
        switch name {
        case "trim":
            guard kwargs.isEmpty, args.count <= 1 else { throw bad() }
            return .string(Self.strip(try str(value, at: at), try args.first.map { try str($0, at: at) }, leading: true, trailing: true))
        case "length", "count":
            guard args.isEmpty, kwargs.isEmpty else { throw bad() }
            switch value {
            case .undefined: return .int(0)
            case .string(let s): return .int(s.unicodeScalars.count)
            case .array(let a), .tuple(let a), .dictItems(let a): return .int(a.count)
            case .object(let o): return .int(o.keys.count)
            default: throw ChatTemplateError.invalid("\(value.typeName) has no length", at)
            }
        case "upper", "lower", "string", "first", "last":
            guard args.isEmpty, kwargs.isEmpty else { throw bad() }
            switch (name, value) {
            case ("upper", _): return .string(try str(value, at: at).uppercased())
            case ("lower", _): return .string(try str(value, at: at).lowercased())
            case ("string", _): return .string(try str(value, at: at))
            case ("first", .array(let a)), ("first", .tuple(let a)), ("first", .generator(let a)), ("first", .dictItems(let a)):
                return a.first ?? .undefined
            case ("last", .array(let a)), ("last", .tuple(let a)), ("last", .dictItems(let a)): return a.last ?? .undefined
            case ("first", .string(let s)): return s.unicodeScalars.first.map { .string(String($0)) } ?? .undefined
            case ("last", .string(let s)): return s.unicodeScalars.last.map { .string(String($0)) } ?? .undefined
            default: throw ChatTemplateError.invalid("\(value.typeName) has no \(name) item", at)
            }
        case "tojson":
            // transformers' tojson(ensure_ascii=False, indent=None, …); only indent is offered.
            guard args.isEmpty, kwargs.allSatisfy({ $0.0 == "indent" }) else {
                throw ChatTemplateError.unsupported("tojson arguments other than indent", at)
            }
            let indent = try kwargs.first.map { k -> Int? in
                if k.1 == .none { return nil }
                guard let i = k.1.integer else { throw bad() }
                return i
            } ?? nil
            guard let json = value.json(indent: indent) else { throw ChatTemplateError.invalid("\(value.typeName) cannot be written as JSON", at) }
            return .string(json)
        case "default", "d":
            var fallback = args.first ?? .string("")
            var boolean = args.count > 1 ? args[1].isTrue : false
            for (k, v) in kwargs {
                switch k {
                case "default_value": fallback = v
                case "boolean": boolean = v.isTrue
                default: throw bad()
                }
            }
            guard args.count <= 2 else { throw bad() }
            return value == .undefined || (boolean && !value.isTrue) ? fallback : value
        case "list":
            guard args.isEmpty, kwargs.isEmpty else { throw bad() }
            return .array(try iterate(value, at: at))
        case "items":
            guard args.isEmpty, kwargs.isEmpty, case .object(let o) = value else { throw bad() }
            return .generator(o.pairs.map { .tuple([.string($0.0), $0.1]) })
        case "select", "reject", "selectattr", "rejectattr":
            // select(test, args…), selectattr(attribute, test, args…): a test given by name; none means truth.
            guard kwargs.isEmpty else { throw bad() }
            let byAttribute = name.hasSuffix("attr")
            var rest = args[...]
            var attribute: String?
            if byAttribute {
                guard case .string(let a)? = rest.popFirst() else { throw bad() }
                attribute = a
            }
            var testName: String?
            if let first = rest.popFirst() {
                guard case .string(let t) = first, JinjaParser.tests.contains(t) else {
                    throw ChatTemplateError.unsupported("the test \(first.repr ?? first.typeName) in \(name)", at)
                }
                testName = t
            }
            let keep = name.hasPrefix("select")
            return .generator(try iterate(value, at: at).filter { item in
                let tested = try attribute.map { try member(item, .string($0), at: at) } ?? item
                let passes = try testName.map { try test($0, tested, Array(rest), at: at) } ?? tested.isTrue
                return passes == keep
            })
        case "join":
            guard kwargs.isEmpty, args.count <= 1 else { throw ChatTemplateError.unsupported("join arguments other than the separator", at) }
            let items = try iterate(value, at: at)
            return .string(try items.map { try str($0, at: at) }.joined(separator: try args.first.map { try str($0, at: at) } ?? ""))
        default:
            throw ChatTemplateError.unsupported("the filter '\(name)'", at)
        }
    }

    private func test(_ name: String, _ value: JinjaValue, _ args: [JinjaValue], at: TemplatePosition) throws -> Bool {
        guard args.count == (["equalto", "eq"].contains(name) ? 1 : 0) else {
            throw ChatTemplateError.invalid("the test \(name) does not take \(args.count) arguments", at)
        }
        switch (name, value) {
        case ("defined", _): return value != .undefined
        case ("undefined", _): return value == .undefined
        case ("equalto", _), ("eq", _): return value == args[0]
        case ("none", .none), ("string", .string), ("mapping", .object), ("boolean", .bool),
             ("number", .int), ("number", .double), ("number", .bool),
             ("iterable", .string), ("iterable", .array), ("iterable", .tuple), ("iterable", .generator), ("iterable", .dictItems),
             ("iterable", .object), ("iterable", .undefined): return true
        case ("true", .bool(let b)): return b
        case ("false", .bool(let b)): return !b
        default: return false
        }
    }

    private func arithmetic(_ op: String, _ a: JinjaValue, _ b: JinjaValue, at: TemplatePosition) throws -> JinjaValue {
        if op == "~" { return .string(try str(a, at: at) + str(b, at: at)) }
        if case .tuple(let x) = a, case .tuple(let y) = b, op == "+" { return .tuple(x + y) }
        switch (op, a, b) {
        case ("+", .string(let x), .string(let y)): return .string(x + y)
        case ("+", .array(let x), .array(let y)): return .array(x + y)
        case ("*", .string(let s), _) where b.integer != nil: return .string(String(repeating: s, count: max(b.integer!, 0)))
        case ("%", .string, _): throw ChatTemplateError.unsupported("string formatting with %", at)
        default: break
        }
        guard let x = a.number, let y = b.number else {
            throw ChatTemplateError.invalid("cannot apply \(op) to \(a.typeName) and \(b.typeName)", at)
        }
        if let i = a.integer, let j = b.integer, op != "/" {
            switch op {
            case "+": return .int(i + j)
            case "-": return .int(i - j)
            case "*": return .int(i * j)
            case "**" where j >= 0: return .int(Int(pow(Double(i), Double(j))))
            case "//", "%":
                guard j != 0 else { throw ChatTemplateError.invalid("division by zero", at) }
                // Python floors: -7 // 2 == -4, -7 % 2 == 1.
                let q = Int((Double(i) / Double(j)).rounded(.down))
                return .int(op == "//" ? q : i - q * j)
            default: break
            }
        }
        switch op {
        case "+": return .double(x + y)
        case "-": return .double(x - y)
        case "*": return .double(x * y)
        case "**": return .double(pow(x, y))
        default:
            guard y != 0 else { throw ChatTemplateError.invalid("division by zero", at) }
            switch op {
            case "/": return .double(x / y)
            case "//": return .double((x / y).rounded(.down))
            default: return .double(x - (x / y).rounded(.down) * y)
            }
        }
    }

    private func compare(_ op: String, _ a: JinjaValue, _ b: JinjaValue, at: TemplatePosition) throws -> Bool {
        switch op {
        case "==": return a == b
        case "!=": return a != b
        case "in", "not in":
            let found: Bool
            switch b {
            case .string(let s):
                guard case .string(let needle) = a else { throw ChatTemplateError.invalid("'in <string>' needs a string, not \(a.typeName)", at) }
                found = needle.isEmpty || s.range(of: needle) != nil
            case .array(let items), .tuple(let items), .generator(let items), .dictItems(let items): found = items.contains(a)
            case .object(let o): found = a.stringValue.map { o[$0] != nil } ?? false
            case .undefined: found = false
            default: throw ChatTemplateError.invalid("cannot look for a value in \(b.typeName)", at)
            }
            return op == "in" ? found : !found
        default:
            let order: Bool
            if let x = a.number, let y = b.number {
                order = op == "<" ? x < y : op == ">" ? x > y : op == "<=" ? x <= y : x >= y
            } else if case .string(let x) = a, case .string(let y) = b {
                // Python orders strings by code point.
                let (p, q) = (Array(x.unicodeScalars.map(\.value)), Array(y.unicodeScalars.map(\.value)))
                order = op == "<" ? p.lexicographicallyPrecedes(q) : op == ">" ? q.lexicographicallyPrecedes(p)
                    : op == "<=" ? !q.lexicographicallyPrecedes(p) : !p.lexicographicallyPrecedes(q)
            } else {
                throw ChatTemplateError.invalid("cannot compare \(a.typeName) and \(b.typeName) with \(op)", at)
            }
            return order
        }
    }
}

extension JinjaValue {
    var stringValue: String? { if case .string(let s) = self { return s }; return nil }

    /// A list's or tuple's items, for unpacking in a loop.
    var elements: [JinjaValue]? {
        switch self {
        case .array(let a), .tuple(let a): return a
        default: return nil
        }
    }
}
