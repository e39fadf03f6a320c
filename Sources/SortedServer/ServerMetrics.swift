// ServerMetrics: what `GET /metrics` reports, in Prometheus' text exposition format:
// requests by endpoint and status, prompt and completion tokens, tokens by the depth that
// computed them, the waiting queue, and histograms of time to first token and of the
// time between tokens.
import Foundation

final class ServerMetrics: @unchecked Sendable {
    /// A cumulative histogram with fixed upper bounds (seconds).
    private struct Histogram {
        let bounds: [Double]
        var counts: [Int]
        var sum = 0.0
        var count = 0
        init(bounds: [Double]) {
            self.bounds = bounds
            counts = [Int](repeating: 0, count: bounds.count)
        }
        mutating func observe(_ value: Double) {
            for (i, bound) in bounds.enumerated() where value <= bound { counts[i] += 1 }
            sum += value
            count += 1
        }
        func lines(_ name: String) -> [String] {
            zip(bounds, counts).map { "\(name)_bucket{le=\"\($0)\"} \($1)" }
                + ["\(name)_bucket{le=\"+Inf\"} \(count)", "\(name)_sum \(sum)", "\(name)_count \(count)"]
        }
    }

    private let lock = NSLock()
    private var requests: [String: Int] = [:]   // "endpoint|status"
    private var promptTokens = 0
    private var completionTokens = 0
    private var tokensByDepth: [Int: Int] = [:]
    private var queued = 0
    private var timeToFirstToken = Histogram(bounds: [0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30])
    private var tokenLatency = Histogram(bounds: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1])

    func countRequest(endpoint: String, status: Int) { lock.withLock { requests["\(endpoint)|\(status)", default: 0] += 1 } }
    func countUsage(prompt: Int, completion: Int) {
        lock.withLock {
            promptTokens += prompt
            completionTokens += completion
        }
    }
    func countToken(depth: Int) { lock.withLock { tokensByDepth[depth, default: 0] += 1 } }
    func setQueued(_ n: Int) { lock.withLock { queued = n } }
    func observeTimeToFirstToken(_ seconds: Double) { lock.withLock { timeToFirstToken.observe(seconds) } }
    func observeTokenLatency(_ seconds: Double) { lock.withLock { tokenLatency.observe(seconds) } }

    /// The exposition text.
    func render() -> String {
        lock.withLock {
            var out: [String] = []
            func metric(_ name: String, _ type: String, _ help: String, _ samples: [String]) {
                out += ["# HELP \(name) \(help)", "# TYPE \(name) \(type)"] + samples
            }
            metric("sortedtrain_requests_total", "counter", "HTTP requests by endpoint and status.",
                   requests.sorted { $0.key < $1.key }.map { key, n in
                       let parts = key.split(separator: "|", maxSplits: 1)
                       return "sortedtrain_requests_total{endpoint=\"\(parts[0])\",status=\"\(parts[1])\"} \(n)"
                   })
            metric("sortedtrain_prompt_tokens_total", "counter", "Prompt tokens of answered requests.",
                   ["sortedtrain_prompt_tokens_total \(promptTokens)"])
            metric("sortedtrain_completion_tokens_total", "counter", "Tokens generated for answered requests.",
                   ["sortedtrain_completion_tokens_total \(completionTokens)"])
            metric("sortedtrain_tokens_by_depth_total", "counter", "Generated tokens by the number of layers that computed them.",
                   tokensByDepth.sorted { $0.key < $1.key }.map { "sortedtrain_tokens_by_depth_total{depth=\"\($0.key)\"} \($0.value)" })
            metric("sortedtrain_requests_waiting", "gauge", "Requests queued for a decoding slot.",
                   ["sortedtrain_requests_waiting \(queued)"])
            metric("sortedtrain_time_to_first_token_seconds", "histogram", "From a request's arrival to its first token.",
                   timeToFirstToken.lines("sortedtrain_time_to_first_token_seconds"))
            metric("sortedtrain_token_latency_seconds", "histogram", "Time between consecutive tokens of one answer.",
                   tokenLatency.lines("sortedtrain_token_latency_seconds"))
            return out.joined(separator: "\n") + "\n"
        }
    }
}
