// OpenAIRequest: the body of POST /v1/chat/completions and /v1/completions, read field by
// field from the strict JSON reader so that every wrong field is answered with an
// OpenAI-style error naming it (`param`), never a crash or a silent default.
import Foundation
import SortedData
import SortedFormats

/// An error in OpenAI's shape: {"error": {"message", "type", "param", "code"}}.
struct APIError: Error {
    let status: Int
    let message: String
    let type: String
    let param: String?
    let code: String?

    static func invalid(_ message: String, param: String? = nil, code: String? = nil) -> APIError {
        APIError(status: 400, message: message, type: "invalid_request_error", param: param, code: code)
    }

    var json: JSONValue {
        var error: [String: JSONValue] = ["message": .string(message), "type": .string(type)]
        error["param"] = param.map(JSONValue.string) ?? .null
        error["code"] = code.map(JSONValue.string) ?? .null
        return .object(["error": .object(error)])
    }

    var body: String { json.serialized }
}

/// How the request asks to spend depth (the optional `sortedtrain` field).
enum DepthRequest: Equatable {
    case depth(Int)
    /// Early exit by the calibrated probes at this agreement with full-depth greedy.
    case earlyExitAgreement(Double)
    /// Early exit by the exits' own softmax confidence: one threshold, or one per exit.
    case earlyExitThresholds([Double])
    case speculative(draftDepth: Int, speculate: Int)
}

struct OpenAIRequest {
    enum Input {
        case chat([ChatMessage])
        case text(String)
    }

    var model: String
    var input: Input
    var stream = false
    var includeUsage = false
    var maxTokens: Int?
    var temperature = 1.0
    var topP = 1.0
    var topK = 0
    var seed: UInt64 = 0
    var stop: [String] = []
    /// Generate max_tokens whatever the model's end-of-answer tokens say (vLLM's field; for benchmarks).
    var ignoreEOS = false
    var depth: DepthRequest?

    /// Parses a request body for `chat` (/v1/chat/completions) or not (/v1/completions).
    init(body: Data, chat: Bool) throws {
        let value: JSONValue
        do { value = try JSONParser.parse(body) } catch {
            throw APIError.invalid("the body is not valid JSON (\(error)); send a JSON object")
        }
        guard let fields = value.object else { throw APIError.invalid("the body must be a JSON object") }
        func string(_ key: String) throws -> String? {
            guard let v = fields[key], !v.isNull else { return nil }
            guard let s = v.string else { throw APIError.invalid("'\(key)' must be a string", param: key) }
            return s
        }
        func number(_ key: String, in range: ClosedRange<Double>) throws -> Double? {
            guard let v = fields[key], !v.isNull else { return nil }
            guard let d = v.double, d.isFinite, range.contains(d) else {
                throw APIError.invalid("'\(key)' must be a number in \(range.lowerBound)...\(range.upperBound), got \(v.serialized)", param: key)
            }
            return d
        }
        func integer(_ key: String, in range: ClosedRange<Int>) throws -> Int? {
            guard let v = fields[key], !v.isNull else { return nil }
            guard let d = v.double, d.rounded() == d, d >= Double(range.lowerBound), d <= Double(range.upperBound) else {
                throw APIError.invalid("'\(key)' must be an integer in \(range.lowerBound)...\(range.upperBound), got \(v.serialized)", param: key)
            }
            return Int(d)
        }
        func bool(_ key: String) throws -> Bool? {
            guard let v = fields[key], !v.isNull else { return nil }
            guard let b = v.bool else { throw APIError.invalid("'\(key)' must be true or false", param: key) }
            return b
        }

        guard let model = try string("model") else { throw APIError.invalid("'model' is required (GET /v1/models lists them)", param: "model") }
        self.model = model
        if chat {
            guard let list = fields["messages"]?.array, !list.isEmpty else {
                throw APIError.invalid("'messages' must be a non-empty array of {\"role\", \"content\"}", param: "messages")
            }
            input = .chat(try list.enumerated().map { i, m in try Self.message(m, index: i) })
        } else {
            switch fields["prompt"] {
            case .string(let s)?: input = .text(s)
            case .array(let a)? where a.count == 1 && a[0].string != nil: input = .text(a[0].string!)
            case .array?: throw APIError.invalid("'prompt' must be one string (this server answers one prompt per request)", param: "prompt")
            default: throw APIError.invalid("'prompt' is required and must be a string", param: "prompt")
            }
        }
        stream = try bool("stream") ?? false
        ignoreEOS = try bool("ignore_eos") ?? false
        if let options = fields["stream_options"], !options.isNull {
            guard let o = options.object else { throw APIError.invalid("'stream_options' must be an object", param: "stream_options") }
            if let v = o["include_usage"], !v.isNull {
                guard let b = v.bool else { throw APIError.invalid("'stream_options.include_usage' must be true or false", param: "stream_options") }
                includeUsage = b
            }
        }
        // max_completion_tokens is the newer name of max_tokens.
        maxTokens = try integer("max_completion_tokens", in: 1...1 << 30) ?? integer("max_tokens", in: 1...1 << 30)
        temperature = try number("temperature", in: 0...2) ?? 1
        topP = try number("top_p", in: 0...1) ?? 1
        if topP == 0 { throw APIError.invalid("'top_p' must be above 0", param: "top_p") }
        topK = try integer("top_k", in: 0...1 << 30) ?? 0
        if let s = try integer("seed", in: Int.min...Int.max) { seed = UInt64(bitPattern: Int64(s)) }
        if let n = try integer("n", in: 1...1 << 30), n != 1 {
            throw APIError.invalid("'n' must be 1: this server returns one choice per request", param: "n")
        }
        switch fields["stop"] {
        case nil, .null?: break
        case .string(let s)?: stop = [s]
        case .array(let a)? where a.count <= 4 && a.allSatisfy({ $0.string != nil }): stop = a.map { $0.string! }
        default: throw APIError.invalid("'stop' must be a string or an array of at most 4 strings", param: "stop")
        }
        if stop.contains("") { throw APIError.invalid("'stop' strings must not be empty", param: "stop") }
        if let extra = fields["sortedtrain"], !extra.isNull { depth = try Self.depth(extra) }
    }

    private static func message(_ value: JSONValue, index i: Int) throws -> ChatMessage {
        let param = "messages[\(i)]"
        guard let m = value.object else { throw APIError.invalid("\(param) must be an object {\"role\", \"content\"}", param: param) }
        guard let roleName = m["role"]?.string else { throw APIError.invalid("\(param).role must be a string", param: param) }
        // "developer" is the newer name of the system role.
        guard let role = ChatMessage.Role(rawValue: roleName == "developer" ? "system" : roleName) else {
            throw APIError.invalid("\(param).role must be system, developer, user or assistant, got '\(roleName)'", param: param)
        }
        switch m["content"] {
        case .string(let s)?: return ChatMessage(role: role, content: s)
        case .array(let parts)?:
            // Content parts: only text parts, joined.
            let texts = try parts.map { part -> String in
                guard let p = part.object, p["type"]?.string == "text", let text = p["text"]?.string else {
                    throw APIError.invalid("\(param).content parts must be {\"type\": \"text\", \"text\": …} (this model reads text only)", param: param)
                }
                return text
            }
            return ChatMessage(role: role, content: texts.joined())
        default: throw APIError.invalid("\(param).content must be a string or an array of text parts", param: param)
        }
    }

    /// {"depth": k} | {"early_exit": {"agreement": a}} | {"early_exit": {"thresholds": [t…]}} |
    /// {"draft_depth": k, "speculate": n}
    private static func depth(_ value: JSONValue) throws -> DepthRequest {
        let param = "sortedtrain"
        let usage = "'sortedtrain' must be {\"depth\": k}, {\"early_exit\": {\"agreement\": a}}, {\"early_exit\": {\"thresholds\": [t, …]}} or {\"draft_depth\": k, \"speculate\": n}"
        guard let o = value.object else { throw APIError.invalid(usage, param: param) }
        func positiveInt(_ v: JSONValue?, _ name: String) throws -> Int {
            guard let d = v?.double, d.rounded() == d, d >= 1, d <= Double(1 << 20) else {
                throw APIError.invalid("'sortedtrain.\(name)' must be a positive integer", param: param)
            }
            return Int(d)
        }
        if let d = o["depth"] {
            guard o.count == 1 else { throw APIError.invalid(usage, param: param) }
            return .depth(try positiveInt(d, "depth"))
        }
        if let e = o["early_exit"] {
            guard o.count == 1, let spec = e.object, spec.count == 1 else { throw APIError.invalid(usage, param: param) }
            if let a = spec["agreement"] {
                guard let v = a.double, v > 0, v <= 1 else {
                    throw APIError.invalid("'sortedtrain.early_exit.agreement' must be a number in (0, 1]", param: param)
                }
                return .earlyExitAgreement(v)
            }
            if let t = spec["thresholds"] {
                guard let list = t.array, !list.isEmpty, list.allSatisfy({ $0.double?.isFinite == true }) else {
                    throw APIError.invalid("'sortedtrain.early_exit.thresholds' must be a non-empty array of numbers", param: param)
                }
                return .earlyExitThresholds(list.map { $0.double! })
            }
            throw APIError.invalid(usage, param: param)
        }
        if let d = o["draft_depth"] {
            guard o.keys.allSatisfy({ $0 == "draft_depth" || $0 == "speculate" }) else { throw APIError.invalid(usage, param: param) }
            let n = try o["speculate"].map { try positiveInt($0, "speculate") } ?? 4
            guard n <= 64 else { throw APIError.invalid("'sortedtrain.speculate' must be at most 64", param: param) }
            return .speculative(draftDepth: try positiveInt(d, "draft_depth"), speculate: n)
        }
        throw APIError.invalid(usage, param: param)
    }
}
