// OpenAIServer: the HTTP face of a served model (Hummingbird). Every trained exit is a model
// of its own (NAME@k), NAME is full depth and NAME@auto early exit by the calibrated probes.
// Requests are checked here, turned into GenerationJobs for the engine, and answered in
// OpenAI's wire format, streamed as server-sent events or whole. Bad input gets an
// OpenAI-style JSON error with a 4xx status; the server keeps serving.
import Foundation
import Hummingbird
import HummingbirdCore
import NIOCore
import SortedData
import SortedFormats
import SortedInference
import SortedKit

public struct ServerOptions: Sendable {
    public var host = "127.0.0.1"
    public var port = 8080
    /// Sequences decoded together (continuous batching).
    public var slots = 8
    /// Positions per sequence (prompt and answer).
    public var context = 4096
    /// A prompt that does not fit keeps its last tokens (else it is refused).
    public var truncateLeft = false
    /// Requests that may wait for a slot; beyond that the server answers 503.
    public var queueLimit = 64
    /// Most time one request may take, from its arrival to its last token.
    public var timeLimit: Duration = .seconds(300)
    public var maxBodyBytes = 1 << 20
    /// Connections idle this long (also a client that stops sending mid-request) are closed.
    public var idleTimeout: Duration = .seconds(30)
    /// The agreement NAME@auto asks of the calibrated probes.
    public var autoAgreement = 0.95
    public init() {}
}

public final class OpenAIServer: @unchecked Sendable {
    let name: String
    let loaded: LoadedModel
    let options: ServerOptions
    let engine: GenerationEngine
    let metrics = ServerMetrics()
    let created = Int(Date().timeIntervalSince1970)

    public init(loaded: LoadedModel, name: String, options: ServerOptions) throws {
        self.name = name
        self.loaded = loaded
        self.options = options
        let context = min(options.context, loaded.model.config.maxPositionEmbeddings)
        engine = try GenerationEngine(loaded: loaded, slots: options.slots, context: context, queueLimit: options.queueLimit,
                                      metrics: metrics)
    }

    private var layers: Int { loaded.model.config.numHiddenLayers }

    /// Serves until SIGTERM or SIGINT; `onListening` gets the bound address ("host:port").
    public func run(onListening: @escaping @Sendable (String) -> Void) async throws {
        engine.start()
        defer { engine.shutdown() }
        let router = Router(context: ConnectionContext.self)
        router.add(middleware: JSONErrors(metrics: metrics))
        router.get("/") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: ChatPage.html)))
        }
        router.get("/health") { _, _ in self.json(["status": .string("ok")]) }
        router.get("/metrics") { _, _ in
            Response(status: .ok, headers: [.contentType: "text/plain; version=0.0.4"], body: .init(byteBuffer: ByteBuffer(string: self.metrics.render())))
        }
        router.get("/v1/models") { _, _ in self.json(self.modelList()) }
        router.post("/v1/chat/completions") { request, context in await self.complete(request, chat: true, connection: context.channel) }
        router.post("/v1/completions") { request, context in await self.complete(request, chat: false, connection: context.channel) }
        let app = Application(
            router: router,
            server: .http1(configuration: .init(additionalChannelHandlers: [DisconnectWatcher()],
                                                idleTimeout: .nanoseconds(Int64(options.idleTimeout.seconds * 1e9)))),
            configuration: .init(address: .hostname(options.host, port: options.port), serverName: "sortedtrain",
                                 availableConnectionsDelegate: MaximumAvailableConnections(512)),
            onServerRunning: { channel in
                onListening(channel.localAddress.map { "\($0.ipAddress ?? self.options.host):\($0.port ?? self.options.port)" } ?? "?")
            })
        try await app.runService()
    }

    // MARK: - Models

    /// The ids a request may name: NAME@k for every trained exit below the last layer, NAME
    /// (full depth), and NAME@auto when the model has calibrated probes.
    private func modelList() -> JSONValue {
        func entry(_ id: String, _ info: [String: JSONValue]) -> JSONValue {
            .object(["id": .string(id), "object": .string("model"), "created": .number(Double(created)),
                     "owned_by": .string("sortedtrain"), "sortedtrain": .object(info)])
        }
        var data = loaded.exits.filter { $0 < layers }.map {
            entry("\(name)@\($0)", ["strategy": .string("fixed"), "depth": .number(Double($0))])
        }
        data.append(entry(name, ["strategy": .string("fixed"), "depth": .number(Double(layers))]))
        if loaded.probes != nil {
            data.append(entry("\(name)@auto", ["strategy": .string("early_exit"), "agreement": .number(options.autoAgreement)]))
        }
        return .object(["object": .string("list"), "data": .array(data)])
    }

    /// The decoding strategy a request's model id and `sortedtrain` field ask for.
    private func strategy(model: String, depth request: DepthRequest?) throws -> DecodingStrategy {
        var fromModel: DepthRequest?
        if model == name {
            fromModel = nil
        } else if model.hasPrefix(name + "@") {
            let suffix = model.dropFirst(name.count + 1)
            if suffix == "auto" {
                fromModel = .earlyExitAgreement(options.autoAgreement)
            } else if let k = Int(suffix), (1...layers).contains(k) {
                fromModel = .depth(k)
            }
            if fromModel == nil { throw notFound(model) }
        } else {
            throw notFound(model)
        }
        switch request ?? fromModel ?? .depth(layers) {
        case .depth(let k):
            guard (1...layers).contains(k) else { throw APIError.invalid("'sortedtrain.depth' must be in 1...\(layers)", param: "sortedtrain") }
            return .fixed(depth: k)
        case .earlyExitAgreement(let agreement):
            guard let probes = loaded.probes else {
                throw APIError.invalid("this model has no calibrated exit probes (run `sortedtrain calibrate`); ask for a depth, or early_exit thresholds", param: "sortedtrain")
            }
            guard let level = probes.level(forAgreement: agreement) else { return .fixed(depth: layers) }
            return .earlyExit(exits: probes.exits + [layers], decision: .probe(probes, thresholds: level.thresholds))
        case .earlyExitThresholds(let thresholds):
            let below = loaded.exits.filter { $0 < layers }
            guard !below.isEmpty else { throw APIError.invalid("this model has no exit below its last layer", param: "sortedtrain") }
            guard thresholds.count == 1 || thresholds.count == below.count else {
                throw APIError.invalid("'sortedtrain.early_exit.thresholds' needs one threshold or one per exit below the last (\(below.count))", param: "sortedtrain")
            }
            return .earlyExit(exits: below + [layers], decision: .confidence(thresholds: thresholds, measure: .probability))
        case .speculative(let draft, let n):
            guard (1..<layers).contains(draft) else {
                throw APIError.invalid("'sortedtrain.draft_depth' must be in 1...\(layers - 1)", param: "sortedtrain")
            }
            return .selfSpeculative(draftDepth: draft, lookahead: .fixed(n))
        }
    }

    private var timeoutError: APIError {
        APIError(status: 504, message: "the answer took longer than the server's time limit of \(String(format: "%g", options.timeLimit.seconds)) s",
                 type: "timeout", param: nil, code: "timeout")
    }

    private func notFound(_ model: String) -> APIError {
        APIError(status: 404, message: "the model '\(model)' does not exist; GET /v1/models lists this server's models",
                 type: "invalid_request_error", param: "model", code: "model_not_found")
    }

    // MARK: - Completions

    private func complete(_ request: Request, chat: Bool, connection: any Channel) async -> Response {
        do {
            var request = request
            let body: ByteBuffer
            do { body = try await request.collectBody(upTo: options.maxBodyBytes) } catch let error as HTTPResponseError where error.status == .contentTooLarge {
                throw APIError(status: 413, message: "the body is larger than \(options.maxBodyBytes) bytes", type: "invalid_request_error",
                               param: nil, code: "request_too_large")
            }
            let parsed = try OpenAIRequest(body: Data(body.readableBytesView), chat: chat)
            let strategy = try self.strategy(model: parsed.model, depth: parsed.depth)
            var prompt: [Int32]
            switch parsed.input {
            case .chat(let messages):
                do { prompt = try loaded.prompt(messages: messages) } catch {
                    throw APIError.invalid("the messages cannot be written in the model's template: \(error)", param: "messages")
                }
            case .text(let text):
                prompt = loaded.tokenizer.encode(text, addSpecialTokens: true)
            }
            guard !prompt.isEmpty else { throw APIError.invalid("the prompt has no tokens", param: chat ? "messages" : "prompt") }
            if options.truncateLeft && prompt.count >= engine.context {
                Self.log("POST /v1/\(chat ? "chat/" : "")completions: the prompt is \(prompt.count) tokens; keeping its last \(engine.context - 1) (--truncate left)")
                prompt = Array(prompt.suffix(engine.context - 1))
            }
            if let problem = engine.problem(promptTokens: prompt.count) {
                throw APIError(status: 400, message: problem + "; shorten it", type: "invalid_request_error",
                               param: chat ? "messages" : "prompt", code: "context_length_exceeded")
            }
            let room = engine.context - prompt.count
            if let asked = parsed.maxTokens, asked > engine.context {
                throw APIError.invalid("'max_tokens' is \(asked); the context holds \(engine.context) tokens in all (\(room) after this prompt)",
                                       param: "max_tokens")
            }
            let sampling = SamplingSettings(temperature: parsed.temperature, topK: parsed.topK, topP: parsed.topP, seed: parsed.seed)
            let job = GenerationJob(prompt: prompt, strategy: strategy, sampling: sampling,
                                    maxNewTokens: min(parsed.maxTokens ?? room, room), stop: parsed.ignoreEOS ? [] : loaded.stopTokens,
                                    timeLimit: options.timeLimit)
            // A client that goes away cancels its work, streamed or not.
            DisconnectWatcher.onDisconnect(of: connection) { [weak job] in job?.cancel() }
            do { try engine.submit(job) } catch SubmitError.queueFull(let n) {
                throw APIError(status: 503, message: "the server is busy (\(n) requests waiting); retry later", type: "server_error",
                               param: nil, code: "server_busy")
            } catch {
                throw APIError(status: 503, message: "the server is shutting down", type: "server_error", param: nil, code: "shutting_down")
            }
            let answer = Answer(id: (chat ? "chatcmpl-" : "cmpl-") + UUID().uuidString.lowercased(), chat: chat, model: parsed.model,
                                created: Int(Date().timeIntervalSince1970), promptTokens: prompt.count,
                                text: AnswerText(tokenizer: loaded.tokenizer, stopStrings: parsed.stop))
            return parsed.stream ? stream(job, answer, includeUsage: parsed.includeUsage) : await whole(job, answer)
        } catch let error as APIError {
            Self.log("POST /v1/\(chat ? "chat/" : "")completions \(error.status) \(error.message)")
            return self.error(error)
        } catch {
            return self.error(APIError(status: 500, message: "\(error)", type: "server_error", param: nil, code: nil))
        }
    }

    /// The answer as one JSON document once it is complete.
    private func whole(_ job: GenerationJob, _ answer: Answer) async -> Response {
        var answer = answer
        var content = ""
        for await event in job.events {
            switch event {
            case .token(let token, let depth):
                content += answer.add(token, depth: depth)
                if answer.text.stopped { job.cancel() }
            case .finished(let finish):
                if finish == .timeout {
                    log(answer, "timeout")
                    return error(timeoutError)
                }
                if finish == .cancelled && !answer.text.stopped {
                    log(answer, "cancelled: the client went away")
                    return error(APIError(status: 499, message: "the client went away", type: "cancelled", param: nil, code: nil))
                }
                content += answer.text.finish()
                answer.finish = answer.text.stopped ? "stop" : finish == .length ? "length" : "stop"
            }
        }
        log(answer, answer.finish)
        metrics.countUsage(prompt: answer.promptTokens, completion: answer.completionTokens)
        let choice: JSONValue = answer.chat
            ? .object(["index": .number(0), "message": .object(["role": .string("assistant"), "content": .string(content)]),
                       "finish_reason": .string(answer.finish)])
            : .object(["index": .number(0), "text": .string(content), "logprobs": .null, "finish_reason": .string(answer.finish)])
        var document = answer.header(object: answer.chat ? "chat.completion" : "text_completion")
        document["choices"] = .array([choice])
        document["usage"] = answer.usage
        document["sortedtrain"] = answer.statistics
        return json(.object(document))
    }

    /// The answer as server-sent events: a chunk per piece of text, a last chunk with the
    /// finish reason, usage and statistics, then [DONE]. A client that goes away cancels the job.
    private func stream(_ job: GenerationJob, _ answer: Answer, includeUsage: Bool) -> Response {
        let body = ResponseBody { writer in
            var answer = answer
            func send(_ value: JSONValue) async throws {
                try await writer.write(ByteBuffer(string: "data: \(value.serialized)\n\n"))
            }
            func chunk(_ delta: String?, finish: String? = nil) -> JSONValue {
                var document = answer.header(object: answer.chat ? "chat.completion.chunk" : "text_completion")
                var choice: [String: JSONValue] = ["index": .number(0), "finish_reason": finish.map(JSONValue.string) ?? .null]
                if answer.chat {
                    var message: [String: JSONValue] = [:]
                    if let delta { message["content"] = .string(delta) }
                    choice["delta"] = .object(message)
                } else {
                    choice["text"] = .string(delta ?? "")
                }
                document["choices"] = .array([.object(choice)])
                return .object(document)
            }
            do {
                if answer.chat {
                    var first = answer.header(object: "chat.completion.chunk")
                    first["choices"] = .array([.object(["index": .number(0), "delta": .object(["role": .string("assistant"), "content": .string("")]),
                                                        "finish_reason": .null])])
                    try await send(.object(first))
                }
                for await event in job.events {
                    switch event {
                    case .token(let token, let depth):
                        let piece = answer.add(token, depth: depth)
                        if !piece.isEmpty { try await send(chunk(piece)) }
                        if answer.text.stopped { job.cancel() }
                    case .finished(let finish):
                        if finish == .cancelled && !answer.text.stopped { throw CancellationError() }
                        if finish == .timeout {
                            self.log(answer, "timeout")
                            try await send(self.timeoutError.json)
                            break
                        }
                        let rest = answer.text.finish()
                        if !rest.isEmpty { try await send(chunk(rest)) }
                        answer.finish = answer.text.stopped ? "stop" : finish == .length ? "length" : "stop"
                        var last = chunk(nil, finish: answer.finish).object!
                        last["usage"] = answer.usage
                        last["sortedtrain"] = answer.statistics
                        try await send(.object(last))
                        if includeUsage {
                            var usage = answer.header(object: answer.chat ? "chat.completion.chunk" : "text_completion")
                            usage["choices"] = .array([])
                            usage["usage"] = answer.usage
                            try await send(.object(usage))
                        }
                        self.metrics.countUsage(prompt: answer.promptTokens, completion: answer.completionTokens)
                        self.log(answer, answer.finish)
                    }
                }
                try await writer.write(ByteBuffer(string: "data: [DONE]\n\n"))
                try await writer.finish(nil)
            } catch {
                job.cancel()   // the client went away
                self.log(answer, "cancelled: the client went away")
                throw error
            }
        }
        return Response(status: .ok, headers: [.contentType: "text/event-stream", .cacheControl: "no-cache"], body: body)
    }

    // MARK: - Responses

    /// One line per request on stderr: what was asked, what was answered, how it ended.
    static func log(_ line: String) {
        let time = ISO8601DateFormatter().string(from: Date())
        FileHandle.standardError.write(Data("\(time) \(line)\n".utf8))
    }

    private func log(_ answer: Answer, _ ending: String) {
        let s = answer.statistics
        Self.log(String(format: "POST /v1/%@completions %@: %d prompt + %d completion tokens, %.1f layers/token, %@ tok/s, %@",
                        answer.chat ? "chat/" : "", answer.model, answer.promptTokens, answer.completionTokens,
                        s["layers_per_token"]?.double ?? 0, s["tokens_per_second"]?.double.map { String(format: "%.1f", $0) } ?? "-", ending))
    }

    private func json(_ value: JSONValue, status: HTTPResponse.Status = .ok) -> Response {
        Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: value.serialized)))
    }

    private func json(_ fields: [String: JSONValue]) -> Response { json(.object(fields)) }

    private func error(_ error: APIError) -> Response {
        Response(status: .init(code: error.status), headers: [.contentType: "application/json"],
                 body: .init(byteBuffer: ByteBuffer(string: error.body)))
    }
}

/// One answer being built: its text, the depths of its tokens, and its timing.
private struct Answer {
    let id: String
    let chat: Bool
    let model: String
    let created: Int
    let promptTokens: Int
    var text: AnswerText
    var completionTokens = 0
    var layers = 0
    var exits: [Int: Int] = [:]
    var firstToken: ContinuousClock.Instant?
    var lastToken: ContinuousClock.Instant?
    var finish = "stop"

    mutating func add(_ token: Int32, depth: Int) -> String {
        let now = ContinuousClock.now
        if firstToken == nil { firstToken = now }
        lastToken = now
        completionTokens += 1
        layers += depth
        exits[depth, default: 0] += 1
        return text.append(token)
    }

    func header(object: String) -> [String: JSONValue] {
        ["id": .string(id), "object": .string(object), "created": .number(Double(created)), "model": .string(model)]
    }

    var usage: JSONValue {
        .object(["prompt_tokens": .number(Double(promptTokens)), "completion_tokens": .number(Double(completionTokens)),
                 "total_tokens": .number(Double(promptTokens + completionTokens))])
    }

    /// Layers per token, decode speed (between the first and the last token) and tokens by depth.
    var statistics: JSONValue {
        var fields: [String: JSONValue] = [
            "layers_per_token": .number(completionTokens > 0 ? Double(layers) / Double(completionTokens) : 0),
            "exits": .object(Dictionary(uniqueKeysWithValues: exits.map { (String($0.key), JSONValue.number(Double($0.value))) })),
        ]
        if completionTokens > 1, let firstToken, let lastToken, lastToken > firstToken {
            fields["tokens_per_second"] = .number(Double(completionTokens - 1) / (lastToken - firstToken).seconds)
        }
        return .object(fields)
    }
}

/// The request context that keeps the connection, so a request can notice its client leave.
struct ConnectionContext: RequestContext {
    var coreContext: CoreRequestContextStorage
    let channel: any Channel

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }
}

/// Every request's status into the metrics, and the router's own errors (no such route, a
/// wrong method) as OpenAI-style JSON.
struct JSONErrors<Context: RequestContext>: RouterMiddleware {
    let metrics: ServerMetrics

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let known = ["/", "/health", "/metrics", "/v1/models", "/v1/chat/completions", "/v1/completions"]
        let endpoint = known.contains(request.uri.path) ? request.uri.path : "other"
        let response: Response
        do {
            response = try await next(request, context)
        } catch let error as HTTPResponseError {
            let status = Int(error.status.code)
            let message = status == 404 ? "no route \(request.method) \(request.uri.path); see GET /v1/models, POST /v1/chat/completions, POST /v1/completions"
                : status == 405 ? "\(request.method) is not allowed on \(request.uri.path)" : "\(error.status.reasonPhrase)"
            let body = APIError(status: status, message: message, type: "invalid_request_error", param: nil, code: nil).body
            response = Response(status: error.status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: body)))
        }
        metrics.countRequest(endpoint: endpoint, status: Int(response.status.code))
        return response
    }
}
