// JinjaParser: the statements and expressions of the Jinja subset chat templates use, with
// Jinja's precedence (filters and `is` tests bind tighter than arithmetic, `~` between + and
// *). Anything outside the subset — macros, loop filters, unknown filters or tests — is
// refused here, before anything is rendered.

struct Expr {
    indirect enum Kind {
        case literal(JinjaValue)
        case name(String)
        case list([Expr])
        case dict([(Expr, Expr)])
        case attribute(Expr, String)
        case item(Expr, Expr)
        case slice(Expr, Expr?, Expr?, Expr?)
        case call(Expr, [Expr], [(String, Expr)])
        case filter(Expr, String, [Expr], [(String, Expr)])
        case test(Expr, String, [Expr], negated: Bool)
        case negate(Expr)
        case not(Expr)
        case binary(String, Expr, Expr)
        case and(Expr, Expr)
        case or(Expr, Expr)
        case compare(Expr, [(String, Expr)])
        case conditional(Expr, condition: Expr, otherwise: Expr?)
    }
    let kind: Kind
    let at: TemplatePosition
}

indirect enum Statement {
    case text(String)
    case output(Expr)
    case `if`([(Expr, [Statement])], otherwise: [Statement])
    /// `for targets in over if filter`: the loop sees (and `loop` counts) only the items that pass.
    case `for`(targets: [String], over: Expr, filter: Expr?, body: [Statement], otherwise: [Statement], at: TemplatePosition)
    /// `set name = …` or `set namespace.attribute = …`.
    case set(name: String, attribute: String?, Expr, at: TemplatePosition)
}

struct JinjaParser {
    static let filters: Set<String> = ["trim", "length", "count", "upper", "lower", "tojson", "default", "d", "join", "first", "last", "string",
                                       "list", "items", "select", "reject", "selectattr", "rejectattr"]
    static let tests: Set<String> = ["defined", "undefined", "none", "string", "number", "mapping", "boolean", "iterable",
                                     "equalto", "eq", "true", "false"]

    private let tokens: [LocatedToken]
    private var i = 0

    static func parse(_ source: String) throws -> [Statement] {
        var parser = JinjaParser(tokens: try JinjaLexer.tokenize(source))
        return try parser.statements(until: []).0
    }

    private init(tokens: [LocatedToken]) { self.tokens = tokens }

    private var current: LocatedToken { tokens[i] }
    private mutating func next() -> LocatedToken { defer { i += 1 }; return tokens[i] }

    private func isOp(_ op: String) -> Bool { current.token == .op(op) }
    private func isName(_ name: String) -> Bool { current.token == .name(name) }

    private mutating func expect(_ token: JinjaToken, _ what: String) throws {
        guard current.token == token else { throw ChatTemplateError.syntax("expected \(what)", current.at) }
        i += 1
    }

    private mutating func identifier() throws -> String {
        guard case .name(let name) = current.token else { throw ChatTemplateError.syntax("expected a name", current.at) }
        i += 1
        return name
    }

    /// Statements up to a block tag whose keyword is in `stops` (consumed up to the keyword);
    /// returns that keyword, or nil at the end of the template.
    private mutating func statements(until stops: Set<String>) throws -> ([Statement], String?) {
        var out: [Statement] = []
        while true {
            let token = next()
            switch token.token {
            case .end:
                if !stops.isEmpty { throw ChatTemplateError.syntax("the template ends before {% \(stops.sorted().joined(separator: " or ")) %}", token.at) }
                return (out, nil)
            case .text(let text): out.append(.text(text))
            case .outputStart:
                out.append(.output(try expression()))
                try expect(.outputEnd, "}}")
            case .blockStart:
                let at = current.at
                let keyword = try identifier()
                if stops.contains(keyword) { return (out, keyword) }
                out.append(try statement(keyword, at: at))
            default:
                throw ChatTemplateError.syntax("unexpected token", token.at)
            }
        }
    }

    private mutating func statement(_ keyword: String, at: TemplatePosition) throws -> Statement {
        switch keyword {
        case "if":
            var branches: [(Expr, [Statement])] = []
            var condition = try expression()
            while true {
                try expect(.blockEnd, "%}")
                let (body, stop) = try statements(until: ["elif", "else", "endif"])
                branches.append((condition, body))
                switch stop {
                case "elif": condition = try expression()
                case "else":
                    try expect(.blockEnd, "%}")
                    let (otherwise, _) = try statements(until: ["endif"])
                    try expect(.blockEnd, "%}")
                    return .if(branches, otherwise: otherwise)
                default:
                    try expect(.blockEnd, "%}")
                    return .if(branches, otherwise: [])
                }
            }
        case "for":
            var targets = [try identifier()]
            while isOp(",") { i += 1; targets.append(try identifier()) }
            guard isName("in") else { throw ChatTemplateError.syntax("expected 'in'", current.at) }
            i += 1
            let over = try expression(conditional: false)
            var filter: Expr?
            if isName("if") { i += 1; filter = try expression(conditional: false) }
            if isName("recursive") { throw ChatTemplateError.unsupported("recursive loops", current.at) }
            try expect(.blockEnd, "%}")
            let (body, stop) = try statements(until: ["else", "endfor"])
            var otherwise: [Statement] = []
            try expect(.blockEnd, "%}")
            if stop == "else" {
                (otherwise, _) = try statements(until: ["endfor"])
                try expect(.blockEnd, "%}")
            }
            return .for(targets: targets, over: over, filter: filter, body: body, otherwise: otherwise, at: at)
        case "set":
            let name = try identifier()
            var attribute: String?
            if isOp(".") { i += 1; attribute = try identifier() }
            if isOp(",") { throw ChatTemplateError.unsupported("setting several names at once", current.at) }
            guard isOp("=") else { throw ChatTemplateError.unsupported("{% set %} blocks", current.at) }
            i += 1
            let value = try expression()
            try expect(.blockEnd, "%}")
            return .set(name: name, attribute: attribute, value, at: at)
        case "elif", "else", "endif", "endfor":
            throw ChatTemplateError.syntax("{% \(keyword) %} without its opening tag", at)
        default:
            throw ChatTemplateError.unsupported("{% \(keyword) %}", at)
        }
    }

    // Expressions, lowest precedence first.

    private mutating func expression(conditional: Bool = true) throws -> Expr {
        let value = try or()
        guard conditional, isName("if") else { return value }
        let at = next().at
        let condition = try or()
        var otherwise: Expr?
        if isName("else") { i += 1; otherwise = try expression() }
        return Expr(kind: .conditional(value, condition: condition, otherwise: otherwise), at: at)
    }

    private mutating func or() throws -> Expr {
        var left = try and()
        while isName("or") { let at = next().at; left = Expr(kind: .or(left, try and()), at: at) }
        return left
    }

    private mutating func and() throws -> Expr {
        var left = try not()
        while isName("and") { let at = next().at; left = Expr(kind: .and(left, try not()), at: at) }
        return left
    }

    private mutating func not() throws -> Expr {
        if isName("not") { let at = next().at; return Expr(kind: .not(try not()), at: at) }
        return try compare()
    }

    private mutating func compare() throws -> Expr {
        let left = try sum()
        var rest: [(String, Expr)] = []
        while true {
            if case .op(let op) = current.token, ["==", "!=", "<", ">", "<=", ">="].contains(op) {
                i += 1
                rest.append((op, try sum()))
            } else if isName("in") {
                i += 1
                rest.append(("in", try sum()))
            } else if isName("not"), tokens[i + 1].token == .name("in") {
                i += 2
                rest.append(("not in", try sum()))
            } else {
                break
            }
        }
        return rest.isEmpty ? left : Expr(kind: .compare(left, rest), at: left.at)
    }

    private mutating func binary(_ ops: [String], _ operand: (inout JinjaParser) throws -> Expr) throws -> Expr {
        var left = try operand(&self)
        while case .op(let op) = current.token, ops.contains(op) {
            let at = next().at
            left = Expr(kind: .binary(op, left, try operand(&self)), at: at)
        }
        return left
    }

    private mutating func sum() throws -> Expr { try binary(["+", "-"]) { try $0.concat() } }
    private mutating func concat() throws -> Expr { try binary(["~"]) { try $0.product() } }
    private mutating func product() throws -> Expr { try binary(["*", "/", "//", "%"]) { try $0.power() } }
    private mutating func power() throws -> Expr { try binary(["**"]) { try $0.unary() } }

    private mutating func unary() throws -> Expr {
        if isOp("-") { let at = next().at; return Expr(kind: .negate(try unary()), at: at) }
        if isOp("+") { i += 1; return try unary() }
        var value = try postfix(try primary())
        // Filters, tests and calls of their results, left to right.
        while true {
            if isOp("|") {
                let at = next().at
                let name = try identifier()
                guard Self.filters.contains(name) else { throw ChatTemplateError.unsupported("the filter '\(name)'", at) }
                var args: [Expr] = [], kwargs: [(String, Expr)] = []
                if isOp("(") { (args, kwargs) = try arguments() }
                value = try postfix(Expr(kind: .filter(value, name, args, kwargs), at: at))
            } else if isName("is") {
                let at = next().at
                let negated = isName("not")
                if negated { i += 1 }
                // "none", "true", "false" are values as arguments, names as tests.
                let name: String
                switch current.token {
                case .name(let n): name = n; i += 1
                default: throw ChatTemplateError.syntax("expected a test name", current.at)
                }
                guard Self.tests.contains(name) else { throw ChatTemplateError.unsupported("the test '\(name)'", at) }
                var args: [Expr] = []
                if isOp("(") {
                    let (positional, kwargs) = try arguments()
                    guard kwargs.isEmpty else { throw ChatTemplateError.unsupported("keyword arguments to a test", at) }
                    args = positional
                } else if startsTestArgument {
                    // `x is equalto 3`: one argument without parentheses, as Jinja reads it.
                    args = [try postfix(try primary())]
                }
                value = Expr(kind: .test(value, name, args, negated: negated), at: at)
            } else {
                return value
            }
        }
    }

    private var startsTestArgument: Bool {
        switch current.token {
        case .string, .int, .double: return true
        case .name(let n): return !["and", "or", "else", "if", "in", "is", "not"].contains(n)
        default: return false
        }
    }

    private mutating func primary() throws -> Expr {
        let token = next()
        switch token.token {
        case .name(let name):
            switch name {
            case "true", "True": return Expr(kind: .literal(.bool(true)), at: token.at)
            case "false", "False": return Expr(kind: .literal(.bool(false)), at: token.at)
            case "none", "None": return Expr(kind: .literal(.none), at: token.at)
            default: return Expr(kind: .name(name), at: token.at)
            }
        case .string(var s):
            // Adjacent literals join, as in Python.
            while case .string(let more) = current.token { s += more; i += 1 }
            return Expr(kind: .literal(.string(s)), at: token.at)
        case .int(let n): return Expr(kind: .literal(.int(n)), at: token.at)
        case .double(let d): return Expr(kind: .literal(.double(d)), at: token.at)
        case .op("("):
            let inner = try expression()
            if isOp(",") { throw ChatTemplateError.unsupported("tuples", current.at) }
            try expect(.op(")"), ")")
            return inner
        case .op("["):
            var items: [Expr] = []
            while !isOp("]") {
                items.append(try expression())
                if !isOp(",") { break }
                i += 1
            }
            try expect(.op("]"), "]")
            return Expr(kind: .list(items), at: token.at)
        case .op("{"):
            var pairs: [(Expr, Expr)] = []
            while !isOp("}") {
                let key = try expression()
                try expect(.op(":"), ":")
                pairs.append((key, try expression()))
                if !isOp(",") { break }
                i += 1
            }
            try expect(.op("}"), "}")
            return Expr(kind: .dict(pairs), at: token.at)
        default:
            throw ChatTemplateError.syntax("expected a value", token.at)
        }
    }

    private mutating func postfix(_ base: Expr) throws -> Expr {
        var value = base
        while true {
            if isOp(".") {
                let at = next().at
                value = Expr(kind: .attribute(value, try identifier()), at: at)
            } else if isOp("[") {
                let at = next().at
                var parts: [Expr?] = [nil]
                var isSlice = false
                while !isOp("]") {
                    if isOp(":") {
                        isSlice = true
                        i += 1
                        parts.append(nil)
                    } else {
                        guard parts[parts.count - 1] == nil else { throw ChatTemplateError.syntax("expected ]", current.at) }
                        parts[parts.count - 1] = try expression()
                    }
                }
                i += 1
                if isSlice {
                    guard parts.count <= 3 else { throw ChatTemplateError.syntax("a slice has at most two colons", at) }
                    while parts.count < 3 { parts.append(nil) }
                    value = Expr(kind: .slice(value, parts[0], parts[1], parts[2]), at: at)
                } else {
                    guard let index = parts[0] else { throw ChatTemplateError.syntax("expected an index", at) }
                    value = Expr(kind: .item(value, index), at: at)
                }
            } else if isOp("(") {
                switch value.kind {
                case .name(let name) where !JinjaRenderer.functions.contains(name):
                    throw ChatTemplateError.unsupported("the function '\(name)'", value.at)
                case .attribute(_, let name) where !JinjaRenderer.methods.contains(name):
                    throw ChatTemplateError.unsupported("the method '\(name)'", value.at)
                default: break
                }
                let (args, kwargs) = try arguments()
                value = Expr(kind: .call(value, args, kwargs), at: value.at)
            } else {
                return value
            }
        }
    }

    /// `( a, b, key=value )`.
    private mutating func arguments() throws -> ([Expr], [(String, Expr)]) {
        try expect(.op("("), "(")
        var args: [Expr] = [], kwargs: [(String, Expr)] = []
        while !isOp(")") {
            if case .name(let key) = current.token, tokens[i + 1].token == .op("=") {
                i += 2
                kwargs.append((key, try expression()))
            } else {
                guard kwargs.isEmpty else { throw ChatTemplateError.syntax("a positional argument after a keyword argument", current.at) }
                args.append(try expression())
            }
            if !isOp(",") { break }
            i += 1
        }
        try expect(.op(")"), ")")
        return (args, kwargs)
    }
}
