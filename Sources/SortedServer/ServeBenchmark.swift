// ServeBenchmark: the load generator of `bench serve`. Against a running server it sends
// one stream of requests alone (the single-stream reference), then N concurrent clients × M
// requests, each streamed chat completion of a fixed length (ignore_eos), and reports
// aggregate tokens/s against the single stream, time to first token p50/p99, failures, and
// the server's resident memory at the start, after the first 100 concurrent requests and at
// the end. Mixed mode cycles depths, streaming and sampling over the requests.
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import SortedFormats

public struct ServeBenchmarkOptions: Sendable {
    /// The server's base address, e.g. http://127.0.0.1:8080.
    public var url: String
    /// Model ids: the first for the single stream and the throughput phase; all in mixed mode
    /// (empty: the server's own list, full depth first).
    public var models: [String]
    public var clients = 8
    public var requestsPerClient = 8
    public var maxTokens = 64
    public var prompts: [String]
    /// Cycle models, streaming on and off, greedy and sampled over the requests.
    public var mixed = false
    /// The run stops starting requests after this long (each request is bounded too).
    public var timeLimit: Duration = .seconds(900)
    /// The server process, for its resident memory (/proc/PID/status).
    public var serverPID: Int32?
    public init(url: String, models: [String], prompts: [String]) {
        self.url = url
        self.models = models
        self.prompts = prompts
    }
}

public struct ServeBenchmarkReport: Codable, Sendable {
    public struct Phase: Codable, Sendable {
        public var clients = 0
        public var requests = 0
        public var failed = 0
        public var completionTokens = 0
        public var seconds = 0.0
        public var tokensPerSecond = 0.0
        /// Streamed requests only: from sending to the first token's text.
        public var timeToFirstTokenP50: Double?
        public var timeToFirstTokenP99: Double?
        /// A failure's first line → how many times it happened.
        public var failures: [String: Int] = [:]
    }
    public var single = Phase()
    public var concurrent = Phase()
    /// Aggregate tokens/s of the concurrent phase over the single stream's.
    public var throughputRatio = 0.0
    public var serverRSSStartMB: Double?
    public var serverRSSAfterFirst100MB: Double?
    public var serverRSSEndMB: Double?
    public var mixed = false
    public var maxTokens = 0
}

public enum ServeBenchmark {
    public static func run(_ options: ServeBenchmarkOptions, progress: @escaping @Sendable (String) -> Void) async throws -> ServeBenchmarkReport {
        guard let address = URLComponents(string: options.url), let host = address.host, let port = address.port else {
            throw ServeBenchmarkError("the server address \(options.url) is not http://HOST:PORT")
        }
        let client = LoopbackClient(host: host, port: port)
        var options = options
        if options.models.isEmpty {
            var listing = ""
            let status = try await client.send(.GET, "/v1/models", timeout: .seconds(30)) { listing += $0 }
            options.models = (status == 200 ? try? JSONParser.parse(listing)["data"]?.array?.compactMap({ $0["id"]?.string }) : nil) ?? []
            // The full-depth model first: NAME, without "@".
            options.models.sort { !$0.contains("@") && $1.contains("@") }
            guard !options.models.isEmpty else { throw ServeBenchmarkError("GET \(options.url)/v1/models listed no model (HTTP \(status))") }
        }
        var report = ServeBenchmarkReport()
        report.mixed = options.mixed
        report.maxTokens = options.maxTokens
        report.serverRSSStartMB = options.serverPID.flatMap(residentMB)
        let deadline = ContinuousClock.now + options.timeLimit

        // The reference: the same kind of request, one at a time.
        let singleCount = min(options.requestsPerClient, 8)
        report.single = try await phase(client, options, clients: 1, perClient: singleCount, mixed: false, deadline: deadline) { _ in }
        progress(String(format: "single stream: %d requests, %.1f tokens/s", report.single.requests, report.single.tokensPerSecond))

        let rss = RSSSampler(pid: options.serverPID)
        let total = options.clients * options.requestsPerClient
        report.concurrent = try await phase(client, options, clients: options.clients, perClient: options.requestsPerClient,
                                            mixed: options.mixed, deadline: deadline) { done in
            if done == 100 { rss.sample() }
            if done % 100 == 0 { progress("\(done) of \(total) requests") }
        }
        report.serverRSSAfterFirst100MB = rss.value
        report.serverRSSEndMB = options.serverPID.flatMap(residentMB)
        report.throughputRatio = report.single.tokensPerSecond > 0 ? report.concurrent.tokensPerSecond / report.single.tokensPerSecond : 0
        return report
    }

    /// One request's outcome.
    private struct Outcome: Sendable {
        var tokens = 0
        var timeToFirstToken: Double?
        var failure: String?
    }

    private static func phase(_ client: LoopbackClient, _ options: ServeBenchmarkOptions, clients: Int, perClient: Int, mixed: Bool,
                              deadline: ContinuousClock.Instant, onDone: @escaping @Sendable (Int) -> Void) async throws -> ServeBenchmarkReport.Phase {
        let start = ContinuousClock.now
        let counter = Counter()
        let outcomes = await withTaskGroup(of: [Outcome].self) { group in
            for c in 0..<clients {
                group.addTask {
                    var results: [Outcome] = []
                    for r in 0..<perClient where ContinuousClock.now < deadline {
                        let index = c * perClient + r
                        results.append(await request(client, options, index: index, mixed: mixed, deadline: deadline))
                        onDone(counter.increment())
                    }
                    return results
                }
            }
            var all: [Outcome] = []
            for await results in group { all += results }
            return all
        }
        var phase = ServeBenchmarkReport.Phase()
        phase.clients = clients
        phase.seconds = (ContinuousClock.now - start).seconds
        phase.requests = outcomes.count
        for o in outcomes {
            if let failure = o.failure {
                phase.failed += 1
                phase.failures[failure, default: 0] += 1
            }
            phase.completionTokens += o.tokens
        }
        phase.tokensPerSecond = Double(phase.completionTokens) / max(phase.seconds, 1e-9)
        let firsts = outcomes.compactMap(\.timeToFirstToken).sorted()
        if !firsts.isEmpty {
            phase.timeToFirstTokenP50 = percentile(firsts, 0.5)
            phase.timeToFirstTokenP99 = percentile(firsts, 0.99)
        }
        return phase
    }

    /// Request `index`: a streamed chat completion of maxTokens tokens at the first model; in
    /// mixed mode the model, streaming and sampling vary with the index.
    private static func request(_ client: LoopbackClient, _ options: ServeBenchmarkOptions, index: Int, mixed: Bool,
                                deadline: ContinuousClock.Instant) async -> Outcome {
        let model = mixed ? options.models[index % options.models.count] : options.models[0]
        let stream = !mixed || index % 3 != 2
        let sampled = mixed && index % 2 == 1
        var body: [String: JSONValue] = [
            "model": .string(model),
            "messages": .array([.object(["role": .string("user"), "content": .string(options.prompts[index % options.prompts.count])])]),
            "max_tokens": .number(Double(options.maxTokens)),
            "ignore_eos": .bool(true),
            "stream": .bool(stream),
            "temperature": .number(sampled ? 0.8 : 0),
        ]
        if sampled { body["seed"] = .number(Double(index)); body["top_p"] = .number(0.95) }
        let sent = ContinuousClock.now
        var outcome = Outcome()
        do {
            var pending = ""
            var whole = ""
            let status = try await client.send(.POST, "/v1/chat/completions", body: JSONValue.object(body).serialized,
                                               timeout: max(.seconds(60), deadline - sent + .seconds(60))) { text in
                guard stream else { whole += text; return }
                pending += text
                while let end = pending.range(of: "\n\n") {
                    let event = String(pending[..<end.lowerBound])
                    pending.removeSubrange(..<end.upperBound)
                    guard event.hasPrefix("data: ") else { continue }
                    let data = event.dropFirst(6)
                    if data == "[DONE]" { continue }
                    let value = try JSONParser.parse(String(data))
                    if let error = value["error"] { outcome.failure = error["message"]?.string ?? "error event"; continue }
                    if outcome.timeToFirstToken == nil, let delta = value["choices"]?.array?.first?["delta"]?["content"]?.string, !delta.isEmpty {
                        outcome.timeToFirstToken = (ContinuousClock.now - sent).seconds
                    }
                    if let tokens = value["usage"]?["completion_tokens"]?.int { outcome.tokens = tokens }
                }
            }
            if status != 200 {
                outcome.failure = "HTTP \(status)"
            } else if !stream {
                outcome.tokens = try JSONParser.parse(whole)["usage"]?["completion_tokens"]?.int ?? 0
            }
            if outcome.failure == nil && outcome.tokens != options.maxTokens {
                outcome.failure = "answered \(outcome.tokens) tokens, not \(options.maxTokens)"
            }
        } catch {
            outcome.failure = "\(error)".split(separator: "\n").first.map(String.init) ?? "error"
        }
        return outcome
    }

    private static func percentile(_ sorted: [Double], _ p: Double) -> Double {
        let rank = Int((p * Double(sorted.count)).rounded(.up))
        return sorted[max(0, min(sorted.count - 1, rank - 1))]
    }

    /// VmRSS of a process in MB, from /proc.
    static func residentMB(_ pid: Int32) -> Double? {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
              let kB = Double(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") else { return nil }
        return kB / 1024
    }
}

private final class Counter: @unchecked Sendable {
    private let lock = NSLock()
    private var n = 0
    func increment() -> Int { lock.withLock { n += 1; return n } }
}

private final class RSSSampler: @unchecked Sendable {
    let pid: Int32?
    private let lock = NSLock()
    private var _value: Double?
    init(pid: Int32?) { self.pid = pid }
    func sample() { let v = pid.flatMap(ServeBenchmark.residentMB); lock.withLock { _value = v } }
    var value: Double? { lock.withLock { _value } }
}

struct ServeBenchmarkError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// One HTTP/1.1 connection per request to the server under test (NIO's client codec).
struct LoopbackClient: Sendable {
    let host: String
    let port: Int

    /// Sends a request (a JSON body when given); hands each piece of the response body to
    /// `onBody` as it arrives; returns the status, 0 when the connection closed first or the
    /// request took longer than `timeout`.
    func send(_ method: HTTPMethod, _ path: String, body: String? = nil, timeout: Duration,
              onBody: (String) throws -> Void) async throws -> Int {
        let channel = try await ClientBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .connect(host: host, port: port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try channel.pipeline.syncOperations.addHTTPClientHandlers()
                    return try NIOAsyncChannel<HTTPClientResponsePart, HTTPClientRequestPart>(wrappingChannelSynchronously: channel)
                }
            }
        let raw = channel.channel
        let limit = raw.eventLoop.scheduleTask(in: .nanoseconds(Int64(timeout.seconds * 1e9))) { raw.close(promise: nil) }
        defer { limit.cancel() }
        return try await channel.executeThenClose { inbound, outbound in
            var headers = HTTPHeaders()
            headers.add(name: "Host", value: "\(host):\(port)")
            headers.add(name: "Connection", value: "close")
            if let body {
                headers.add(name: "Content-Type", value: "application/json")
                headers.add(name: "Content-Length", value: String(body.utf8.count))
            }
            try await outbound.write(.head(HTTPRequestHead(version: .http1_1, method: method, uri: path, headers: headers)))
            if let body { try await outbound.write(.body(.byteBuffer(ByteBuffer(string: body)))) }
            try await outbound.write(.end(nil))
            var status = 0
            for try await part in inbound {
                switch part {
                case .head(let head): status = Int(head.status.code)
                case .body(let buffer): try onBody(String(buffer: buffer))
                case .end: return status
                }
            }
            return 0
        }
    }
}
