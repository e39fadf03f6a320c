// ProgressPrinter: rank 0's view of a run — a live bar on a terminal, plain lines otherwise.
import Foundation

public final class ProgressPrinter {
    private let totalSteps: Int
    private let every: Int
    private let live: Bool
    private let started = ContinuousClock.now
    private var tokens = 0
    private var firstStep: Int?
    private var lineOpen = false

    public init(totalSteps: Int, every: Int, live: Bool) {
        self.totalSteps = totalSteps
        self.every = every
        self.live = live
    }

    public func report(_ m: StepMetrics) {
        if firstStep == nil { firstStep = m.step - 1 }
        tokens += m.tokens
        let elapsed = (ContinuousClock.now - started).seconds
        let done = m.step - firstStep!
        let rate = Double(tokens) / max(elapsed, 1e-9)
        let eta = Double(totalSteps - m.step) * elapsed / Double(max(done, 1))
        let exits = m.exit_losses.keys.sorted { Int($0)! < Int($1)! }
            .map { "L\($0) \(String(format: "%.3f", m.exit_losses[$0]!))" }.joined(separator: " ")
        let stats = "\(exits) | lr \(String(format: "%.2e", m.lr)) | \(String(format: "%.0f", rate)) tok/s | ETA \(Self.clock(eta))\(m.skipped ? " | skipped (non-finite)" : "")"
        if live {
            let width = 24, filled = totalSteps > 0 ? width * m.step / totalSteps : width
            let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
            print("\r\u{1B}[2Kstep \(m.step)/\(totalSteps) \(bar) \(stats)", terminator: "")
            lineOpen = true
            fflush(stdout)
        } else if m.step % every == 0 || m.step == totalSteps || m.step == firstStep! + 1 {
            print("step \(m.step)/\(totalSteps) | \(stats)")
            fflush(stdout)
        }
    }

    /// A live bar needs a real terminal: stdout a tty and TERM naming one. (mpirun gives
    /// rank 0 a pseudo-terminal even when its own output goes to a file or pipe, so the
    /// tty test alone is not enough; TERM is unset or "dumb" in CI and batch jobs.)
    public static var terminalIsInteractive: Bool {
        guard isatty(STDOUT_FILENO) != 0, let term = ProcessInfo.processInfo.environment["TERM"] else { return false }
        return !term.isEmpty && term != "dumb"
    }

    /// Ends a live line so later messages start on their own line.
    public func finish() {
        if lineOpen { print("") }
        lineOpen = false
    }

    static func clock(_ seconds: Double) -> String {
        guard seconds.isFinite else { return "?" }
        let s = Int(seconds.rounded())
        return s >= 3600 ? String(format: "%dh%02dm", s / 3600, s % 3600 / 60)
             : s >= 60 ? String(format: "%dm%02ds", s / 60, s % 60) : "\(s)s"
    }
}
