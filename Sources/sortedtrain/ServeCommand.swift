// `sortedtrain serve`: an OpenAI-compatible HTTP server over one loaded model, in which
// every trained depth is a model of its own, with a chat page at `/`.
import ArgumentParser
import Foundation
import SortedInference
import SortedServer

struct ServeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "serve",
        abstract: "Serve a model over the OpenAI API (chat and text completions, streamed or not), every trained depth a model of its own.",
        discussion: """
        MODEL is anything `generate` takes. GET /v1/models lists NAME@k for each trained \
        exit k, NAME for full depth, and NAME@auto (early exit by the calibrated probes at \
        --agreement) when the model has been calibrated. A request may also choose its \
        strategy in a `sortedtrain` field: {"depth": k}, {"early_exit": {"agreement": a}}, \
        {"early_exit": {"thresholds": [t, …]}} or {"draft_depth": k, "speculate": n}; the \
        answer reports its layers per token. Fixed-depth requests decode together \
        (continuous batching: up to --parallel at once, joining between steps); early exit \
        and self-speculation decode one request at a time beside them. A chat page is at /, \
        Prometheus metrics at /metrics. A prompt longer than --context is refused (400), or \
        cut to its last tokens under --truncate left (logged). SIGTERM or SIGINT stops the \
        server cleanly.

        Example:
          sortedtrain serve runs/demo/checkpoints --port 8080
          curl http://127.0.0.1:8080/v1/chat/completions -H 'Content-Type: application/json' \\
            -d '{"model": "demo@2", "messages": [{"role": "user", "content": "Hi"}]}'
        """)

    @OptionGroup var served: ServedModelOptions
    @OptionGroup var window: ContextOptions

    @Option(help: "Address to listen on (127.0.0.1: this machine only).")
    var host = "127.0.0.1"

    @Option(parsing: .unconditional, help: "Port to listen on (0: any free port, printed at start).")
    var port = 8080

    @Option(help: "The model's name in the API (default: the run or file name).")
    var name: String?

    @Option(parsing: .unconditional, help: "Requests decoded together (continuous batching slots).")
    var parallel = 8

    @Option(parsing: .unconditional, help: "Requests that may wait for a slot; more are answered 503.")
    var queue = 64

    @Option(parsing: .unconditional, help: "Seconds one request may take before it is ended (504, or an error event when streamed).")
    var timeout: Double = 300

    @Option(parsing: .unconditional, help: "Largest request body in bytes (larger: 413).")
    var maxBody = 1 << 20

    @Option(parsing: .unconditional, help: "Agreement with full-depth greedy that NAME@auto asks of the calibrated exit probes.")
    var agreement = 0.95

    func validate() throws {
        guard (0...65535).contains(port) else { throw CommandLineError("--port must be in 0...65535, got \(port)") }
        guard (1...256).contains(parallel) else { throw CommandLineError("--parallel must be in 1...256, got \(parallel)") }
        guard queue >= 0 else { throw CommandLineError("--queue must be ≥ 0, got \(queue)") }
        guard timeout.isFinite && timeout > 0 else { throw CommandLineError("--timeout must be a positive number of seconds") }
        guard maxBody >= 1024 else { throw CommandLineError("--max-body must be at least 1024 bytes, got \(maxBody)") }
        guard agreement > 0 && agreement <= 1 else { throw CommandLineError("--agreement must be in (0, 1], got \(agreement)") }
        if let name, name.isEmpty || name.contains("@") || name.contains(where: \.isWhitespace) {
            throw CommandLineError("--name must be a word without '@' or spaces, got '\(name)'")
        }
    }

    func run() throws {
        let loaded = try served.load()
        // Each slot holds --context tokens; by default the model's positions, at most 4096.
        let context = window.context == nil ? min(try window.window(loaded), 4096) : try window.window(loaded)
        var options = ServerOptions()
        options.host = host
        options.port = port
        options.slots = parallel
        options.context = context
        options.truncateLeft = window.truncate == .left
        options.queueLimit = queue
        options.timeLimit = .milliseconds(Int64(timeout * 1000))
        options.maxBodyBytes = maxBody
        options.autoAgreement = agreement
        let modelName = name ?? Self.defaultName(served.model)
        let server = try OpenAIServer(loaded: loaded, name: modelName, options: options)
        let L = loaded.model.config.numHiddenLayers
        let exits = loaded.exits.filter { $0 < L }.map(String.init).joined(separator: ", ")
        let slotTokens = options.context
        let failure = ServeFailure()
        let done = DispatchSemaphore(value: 0)
        Task {
            do {
                try await server.run { address in
                    printProgress("serving \(modelName) (\(L) layers\(exits.isEmpty ? "" : "; exits \(exits)")\(loaded.probes == nil ? "" : "; calibrated")) at http://\(address) — \(parallel) slots × \(slotTokens) tokens")
                }
            } catch {
                failure.error = error
            }
            done.signal()
        }
        done.wait()
        if let error = failure.error { throw CommandLineError("serve: \(error)") }
        printProgress("server stopped")
    }

    /// A run's name for a checkpoint (runs/NAME/checkpoints[/step-N]), else the file's name.
    static func defaultName(_ path: String) -> String {
        var url = URL(fileURLWithPath: path).standardizedFileURL
        while ["checkpoints", ""].contains(url.lastPathComponent) || url.lastPathComponent.hasPrefix("step-") {
            let parent = url.deletingLastPathComponent()
            if parent.path == url.path { break }
            url = parent
        }
        let name = url.deletingPathExtension().lastPathComponent.replacingOccurrences(of: "@", with: "-")
            .replacingOccurrences(of: " ", with: "-")
        return name.isEmpty ? "model" : name
    }
}

/// The server task's error, handed to the blocked main thread.
private final class ServeFailure: @unchecked Sendable {
    var error: Error?
}
