// ProgressPrinter: rank 0's view of a run — a live bar on the user's terminal, plain lines
// otherwise (files, pipes, tee, batch jobs; see drawsBar for how mpirun is handled).
import Foundation

/// log.progress: how training shows its progress.
public enum ProgressStyle: String, CaseIterable, Sendable {
    /// A live bar on an interactive terminal, plain lines otherwise (see drawsBar).
    case auto
    case bar
    case lines
}

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
        let exits = m.exitLosses.keys.sorted { Int($0)! < Int($1)! }
            .map { "L\($0) \(String(format: "%.3f", m.exitLosses[$0]!))" }.joined(separator: " ")
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

    /// The launchers' word on the user's terminal: "bar" or "lines". launch/common.sh's
    /// mpirun_local sets it from whether its own stdout is an interactive terminal and
    /// forwards it with `mpirun -x`; anyone may set it by hand.
    public static let environmentVariable = "SORTEDTRAIN_PROGRESS"

    /// Whether `log.progress = setting` draws the live bar. "bar" and "lines" are explicit
    /// and win. "auto" asks, in order:
    /// 1. SORTEDTRAIN_PROGRESS = bar | lines, when set (any other value is ignored);
    /// 2. under mpirun (OMPI_COMM_WORLD_SIZE or PMIX_RANK set): lines. Open MPI gives every
    ///    rank a pseudo-terminal whatever mpirun's own output is (a file, a pipe, `tee`,
    ///    Slurm's output file), so the rank cannot see the user's terminal and must not
    ///    write escapes into a log unless told it is a terminal;
    /// 3. otherwise stdout a tty and TERM naming a terminal (not unset, empty or "dumb").
    public static func drawsBar(setting: ProgressStyle,
                                environment: [String: String] = ProcessInfo.processInfo.environment,
                                stdoutIsTerminal: Bool = isatty(STDOUT_FILENO) != 0) -> Bool {
        switch setting {
        case .bar: return true
        case .lines: return false
        case .auto: break
        }
        switch environment[environmentVariable] {
        case "bar": return true
        case "lines": return false
        default: break
        }
        if environment["OMPI_COMM_WORLD_SIZE"] != nil || environment["PMIX_RANK"] != nil { return false }
        guard stdoutIsTerminal, let term = environment["TERM"] else { return false }
        return !term.isEmpty && term != "dumb"
    }

    /// A warning when SORTEDTRAIN_PROGRESS holds something other than bar, lines or auto.
    public static func environmentWarning(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> String? {
        guard let value = environment[environmentVariable], !["", "auto", "bar", "lines"].contains(value) else { return nil }
        return "warning: \(environmentVariable)=\(value) is not bar or lines; ignored"
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
