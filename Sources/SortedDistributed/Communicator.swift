// Communicator: what training needs from the process group — rank, size, sum-reductions
// (blocking and non-blocking, whole or scattered), all-gather, broadcast, barrier, abort.
// MPI and single-process versions.
import Foundation

/// A collective that failed: MPI refused, or peers did not arrive in time. `seenBy` is the
/// rank that reports it; the text names the ranks to blame.
public enum CommunicatorError: Error, Equatable, CustomStringConvertible {
    /// An MPI call returned an error (MPI's own text).
    case mpi(call: String, message: String)
    /// `ranks` never announced `collective` within `seconds`.
    case peersBehind(ranks: [Int], collective: String, seconds: Double, seenBy: Int)
    /// `ranks` stopped saying they wait during `collective` (their last `quietSeconds`).
    case peersSilent(ranks: [Int], collective: String, seconds: Double, quietSeconds: Double, seenBy: Int)
    /// `collective` did not complete within `seconds`, and no peer can be blamed.
    case timedOut(collective: String, seconds: Double, seenBy: Int)

    public var description: String {
        func names(_ ranks: [Int]) -> String {
            ranks.count == 1 ? "rank \(ranks[0])" : "ranks " + ranks.map(String.init).joined(separator: ", ")
        }
        func s(_ v: Double) -> String { String(format: "%g", v) }
        switch self {
        case .mpi(let call, let message): return "\(call) failed: \(message)"
        case .peersBehind(let ranks, let what, let seconds, let rank):
            return "\(names(ranks)) did not reach \(what) within \(s(seconds)) s (distributed.timeout_s): dead or stuck (seen from rank \(rank))"
        case .peersSilent(let ranks, let what, let seconds, let quiet, let rank):
            return "\(names(ranks)) went silent during \(what): the others waited \(s(seconds)) s (distributed.timeout_s) and heard nothing from \(ranks.count == 1 ? "it" : "them") for the last \(s(quiet)) s; dead or stuck (seen from rank \(rank))"
        case .timedOut(let what, let seconds, let rank):
            return "\(what) did not complete within \(s(seconds)) s (distributed.timeout_s): a peer rank is dead or stuck (seen from rank \(rank))"
        }
    }
}

/// A reduction started with `startAllReduceSum`; finished by `wait` or polled by `test`.
public protocol PendingReduction: AnyObject {
    /// Drives progress; true once the result is in the output buffer.
    func test() throws -> Bool
    /// Blocks until done, or throws after `timeout` seconds.
    func wait(timeout: Double) throws
}

public protocol Communicator: AnyObject {
    var rank: Int { get }
    var size: Int { get }
    /// Seconds any collective may wait for its peers before it throws.
    var timeout: Double { get set }
    /// Whether the process was asked to stop (a signal). A collective still waiting for a
    /// peer shortly after that says which one: when a rank dies, mpirun stops the others
    /// and kills them a moment later, and this is their only chance to name it.
    var stopRequested: @Sendable () -> Bool { get set }
    /// Σ over ranks of `count` floats, in place.
    func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws
    /// Σ over ranks of doubles, in place (loss sums, token counts).
    func allReduceSum(_ values: inout [Double]) throws
    /// Starts Σ over ranks of `input` into `output` (out-of-place, non-blocking). Both
    /// buffers must stay valid and untouched until the reduction completes.
    func startAllReduceSum(input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>, count: Int) throws -> PendingReduction
    /// Starts Σ over ranks of `input` (Σ counts floats), scattered: rank r receives the sum of
    /// the `counts[r]` floats after those of ranks 0..<r, into `output` (non-blocking; counts
    /// of 0 allowed). Both buffers must stay valid and untouched until it completes.
    func startReduceScatterSum(input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>, counts: [Int]) throws -> PendingReduction
    /// In place: rank r's `counts[r]` floats, after those of ranks 0..<r in `buffer`, are
    /// copied to every rank (blocking).
    func allGather(_ buffer: UnsafeMutablePointer<Float>, counts: [Int]) throws
    /// Copies rank `root`'s bytes to every rank.
    func broadcast(_ buffer: UnsafeMutableRawPointer, bytes: Int, root: Int) throws
    func barrier() throws
    /// Ends every process of the job with `code` (a dead or stuck peer must not hang us).
    func abort(code: Int32) -> Never
}

/// One process, no MPI: reductions are copies.
public final class SingleProcessCommunicator: Communicator {
    public init() {}
    public var timeout: Double = 300
    public var stopRequested: @Sendable () -> Bool = { false }
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws {}
    public func allReduceSum(_ values: inout [Double]) throws {}
    public func startAllReduceSum(input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>, count: Int) throws -> PendingReduction {
        if UnsafePointer(output) != input { output.update(from: input, count: count) }
        return CompletedReduction()
    }
    public func startReduceScatterSum(input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>, counts: [Int]) throws -> PendingReduction {
        precondition(counts.count == 1, "one count per rank")
        return try startAllReduceSum(input: input, output: output, count: counts[0])
    }
    public func allGather(_ buffer: UnsafeMutablePointer<Float>, counts: [Int]) throws {}
    public func broadcast(_ buffer: UnsafeMutableRawPointer, bytes: Int, root: Int) throws {}
    public func barrier() throws {}
    public func abort(code: Int32) -> Never { exit(code) }
}

final class CompletedReduction: PendingReduction {
    func test() throws -> Bool { true }
    func wait(timeout: Double) throws {}
}

/// The communicator of this process, decided once: MPI when an MPI launcher started it
/// (`MPICommunicator.launchedByMPI`), else a single process. Initialising MPI can throw.
public func communicatorFromEnvironment() throws -> any Communicator {
    MPICommunicator.launchedByMPI ? try MPICommunicator() : SingleProcessCommunicator()
}
