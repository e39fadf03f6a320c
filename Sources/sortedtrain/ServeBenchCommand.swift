// `sortedtrain bench serve`: the server under load. Starts `sortedtrain serve MODEL` on a
// free loopback port (or uses --url), sends one request stream alone and then N concurrent
// clients × M requests, and reports aggregate tokens/s against the single stream, time to
// first token, failures and the server's memory, all measured in this run.
import ArgumentParser
import Foundation
import SortedData
import SortedServer

struct ServeBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Concurrent clients against a local server: aggregate tokens/s against one stream, time to first token, failures, server memory.",
        discussion: """
        Every request is a chat completion of exactly --max-tokens tokens (ignore_eos), \
        streamed, greedy, at full depth; with --mixed the requests cycle through every model \
        the server lists (every depth, early exit), streamed or not, greedy or sampled. The \
        single-stream reference is the same request, one at a time, in the same run. Bounded: \
        no request starts after --time-limit seconds.
        """)

    @Argument(help: "The model to serve (anything `serve` takes); omit with --url.")
    var model: String?

    @Option(help: "Benchmark a server already running at this address (http://HOST:PORT) instead of starting one.")
    var url: String?

    @Option(help: "Weights the started server decodes with: f32, q8_0, q4_0 or q4_1.")
    var dtype: String = "f32"

    @Option(parsing: .unconditional, help: "Concurrent clients.")
    var clients = 8

    @Option(parsing: .unconditional, help: "Requests each client sends, one after the other.")
    var requests = 8

    @Option(parsing: .unconditional, help: "Tokens per answer.")
    var maxTokens = 64

    @Option(help: "JSONL of prompts ({\"instruction\": …} or {\"prompt\": …}); default: a few built-in questions.")
    var promptsFile: String?

    @Flag(help: "Cycle every listed model, streaming on and off, greedy and sampled.")
    var mixed = false

    @Option(parsing: .unconditional, help: "Seconds after which no request starts.")
    var timeLimit: Double = 900

    @Flag(help: "Print the report as JSON instead of text.")
    var json = false

    static let builtInPrompts = [
        "Sort the letters of qwertyuiop alphabetically.",
        "What is the capital of France? Answer in one sentence.",
        "Write a short poem about the sea.",
        "Explain in two sentences why the sky is blue.",
        "List three prime numbers greater than 50.",
        "Reverse the word 'benchmark'.",
        "Give a synonym of 'quick' and use it in a sentence.",
        "Count from one to ten in French.",
    ]

    func validate() throws {
        guard (model == nil) != (url == nil) else { throw CommandLineError("give MODEL (a server is started) or --url (a running server), one of them") }
        guard (1...256).contains(clients) else { throw CommandLineError("--clients must be in 1...256, got \(clients)") }
        guard (1...100_000).contains(requests) else { throw CommandLineError("--requests must be in 1...100000, got \(requests)") }
        guard (1...100_000).contains(maxTokens) else { throw CommandLineError("--max-tokens must be in 1...100000, got \(maxTokens)") }
        guard timeLimit.isFinite && timeLimit > 0 else { throw CommandLineError("--time-limit must be a positive number of seconds") }
    }

    func run() throws {
        let prompts = try promptsFile.map { try readPromptsFile($0).map { $0.input.isEmpty ? $0.instruction : $0.instruction + "\n\n" + $0.input } }
            ?? Self.builtInPrompts
        guard !prompts.isEmpty else { throw CommandLineError("--prompts-file \(promptsFile!) holds no prompt") }
        var server: Process?
        defer { if let server, server.isRunning { server.terminate(); server.waitUntilExit() } }
        let address: String
        if let url {
            address = url
        } else {
            let started = try startServer()
            server = started.process
            address = started.url
        }
        var options = ServeBenchmarkOptions(url: address, models: [], prompts: prompts)
        options.clients = clients
        options.requestsPerClient = requests
        options.maxTokens = maxTokens
        options.mixed = mixed
        options.timeLimit = .milliseconds(Int64(timeLimit * 1000))
        options.serverPID = server?.processIdentifier
        let outcome = BenchOutcome()
        let done = DispatchSemaphore(value: 0)
        Task {
            do { outcome.report = try await ServeBenchmark.run(options) { printProgress($0) } } catch { outcome.error = error }
            done.signal()
        }
        done.wait()
        if let error = outcome.error { throw CommandLineError("bench serve: \(error)") }
        let report = outcome.report!
        if json { try printJSON(report) } else { print(Self.describe(report)) }
    }

    /// `sortedtrain serve MODEL --port 0` as a child process, once it listens.
    private func startServer() throws -> (process: Process, url: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
        process.arguments = ["serve", model!, "--port", "0", "--dtype", dtype, "--parallel", String(clients),
                             "--queue", String(max(64, clients * 2)), "--timeout", String(timeLimit + 120)]
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        var text = ""
        while process.isRunning || !text.isEmpty {
            let data = errors.fileHandleForReading.availableData
            if data.isEmpty { break }
            text += String(decoding: data, as: UTF8.self)
            if let range = text.range(of: #"at http://[0-9.]+:[0-9]+"#, options: .regularExpression) {
                printProgress(text.split(separator: "\n").last { $0.contains("serving") }.map(String.init) ?? "")
                // Keep draining the server's stderr so it never blocks on a full pipe.
                errors.fileHandleForReading.readabilityHandler = { _ = $0.availableData }
                return (process, String(text[range].dropFirst(3)))
            }
        }
        throw CommandLineError("bench serve: the server did not start: \(text.split(separator: "\n").last ?? "no output")")
    }

    static func describe(_ r: ServeBenchmarkReport) -> String {
        func ms(_ s: Double?) -> String { s.map { String(format: "%.0f ms", $0 * 1000) } ?? "-" }
        func mb(_ v: Double?) -> String { v.map { String(format: "%.0f MB", $0) } ?? "-" }
        var lines = [
            String(format: "single stream:   %d requests × %d tokens, %.1f tokens/s, time to first token p50 %@",
                   r.single.requests, r.maxTokens, r.single.tokensPerSecond, ms(r.single.timeToFirstTokenP50)),
            String(format: "%d clients%@: %d requests, %d failed, %.1f tokens/s aggregate = %.2f× the single stream",
                   r.concurrent.clients, r.mixed ? " (mixed)" : "", r.concurrent.requests, r.concurrent.failed,
                   r.concurrent.tokensPerSecond, r.throughputRatio),
            "time to first token: p50 \(ms(r.concurrent.timeToFirstTokenP50)), p99 \(ms(r.concurrent.timeToFirstTokenP99))",
            "server RSS: \(mb(r.serverRSSStartMB)) at start, \(mb(r.serverRSSAfterFirst100MB)) after 100 requests, \(mb(r.serverRSSEndMB)) at the end"
                + ((r.serverRSSAfterFirst100MB).flatMap { first in r.serverRSSEndMB.map { String(format: " (%+.1f%% from request 100 to the end)", 100 * ($0 / first - 1)) } } ?? ""),
        ]
        for (failure, n) in (r.single.failures.merging(r.concurrent.failures, uniquingKeysWith: +)).sorted(by: { $0.value > $1.value }) {
            lines.append("failed \(n)×: \(failure)")
        }
        return lines.joined(separator: "\n")
    }
}

private final class BenchOutcome: @unchecked Sendable {
    var report: ServeBenchmarkReport?
    var error: Error?
}
