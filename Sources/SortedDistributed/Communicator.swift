// Communicator: what training needs from the process group — rank, size, sum-reductions
// (blocking and non-blocking, whole or scattered), all-gather, broadcast, barrier, abort.
// MPI and single-process versions.
import Foundation

/// A collective that failed: MPI refused, or peers did not arrive in time. `seenBy` is the
/// rank that reports it; the text names the ranks to blame. `hosts` is the host of every rank
/// when the job spans several (empty on one host): the text then says where the blamed ranks
/// run, and which hosts fell silent as a whole.
public enum CommunicatorError: Error, Equatable, CustomStringConvertible {
    /// An MPI call returned an error (MPI's own text).
    case mpi(call: String, message: String)
    /// `ranks` never announced `collective` within `seconds`.
    case peersBehind(ranks: [Int], collective: String, seconds: Double, seenBy: Int, hosts: [String] = [])
    /// `ranks` stopped saying they wait during `collective` (their last `quietSeconds`).
    case peersSilent(ranks: [Int], collective: String, seconds: Double, quietSeconds: Double, seenBy: Int, hosts: [String] = [])
    /// `collective` did not complete within `seconds`, and no peer can be blamed.
    case timedOut(collective: String, seconds: Double, seenBy: Int)

    /// The ranks this error blames.
    public var blamedRanks: [Int] {
        switch self {
        case .peersBehind(let ranks, _, _, _, _), .peersSilent(let ranks, _, _, _, _, _): return ranks
        case .mpi, .timedOut: return []
        }
    }

    public var description: String {
        func s(_ v: Double) -> String { String(format: "%g", v) }
        switch self {
        case .mpi(let call, let message): return "\(call) failed: \(message)"
        case .peersBehind(let ranks, let what, let seconds, let rank, let hosts):
            let place = RankPlaces(hosts: hosts)
            return "\(place.names(ranks)) did not reach \(what) within \(s(seconds)) s (distributed.timeout_s): dead or stuck\(place.unreachable(ranks, seenBy: rank)) (seen from \(place.names([rank])))"
        case .peersSilent(let ranks, let what, let seconds, let quiet, let rank, let hosts):
            let place = RankPlaces(hosts: hosts)
            return "\(place.names(ranks)) went silent during \(what): the others waited \(s(seconds)) s (distributed.timeout_s) and heard nothing from \(ranks.count == 1 ? "it" : "them") for the last \(s(quiet)) s; dead or stuck\(place.unreachable(ranks, seenBy: rank)) (seen from \(place.names([rank])))"
        case .timedOut(let what, let seconds, let rank):
            return "\(what) did not complete within \(s(seconds)) s (distributed.timeout_s): a peer rank is dead or stuck (seen from rank \(rank))"
        }
    }
}

/// Where ranks run, for messages: "ranks 2, 3 on node2". On one host (or with no hosts known)
/// ranks are named alone, as before multi-host runs.
public struct RankPlaces {
    /// The host of every rank, indexed by rank; empty when unknown.
    public let hosts: [String]

    public init(hosts: [String]) {
        self.hosts = Set(hosts).count > 1 ? hosts : []
    }

    private static func plain(_ ranks: [Int]) -> String {
        ranks.count == 1 ? "rank \(ranks[0])" : "ranks " + ranks.map(String.init).joined(separator: ", ")
    }

    /// "rank 1", "ranks 2, 3 on node2", "rank 1 on node1 and ranks 2, 3 on node2".
    public func names(_ ranks: [Int]) -> String {
        guard !hosts.isEmpty, ranks.allSatisfy(hosts.indices.contains) else { return Self.plain(ranks) }
        var order: [String] = []
        var byHost: [String: [Int]] = [:]
        for rank in ranks {
            if byHost[hosts[rank]] == nil { order.append(hosts[rank]) }
            byHost[hosts[rank], default: []].append(rank)
        }
        return order.map { "\(Self.plain(byHost[$0]!)) on \($0)" }.joined(separator: " and ")
    }

    /// Hosts other than `seenBy`'s all of whose ranks are among `ranks`: from where `seenBy`
    /// stands, each may be unreachable rather than its ranks stuck.
    public func silentHosts(_ ranks: [Int], seenBy: Int) -> [String] {
        guard !hosts.isEmpty, hosts.indices.contains(seenBy) else { return [] }
        let named = Set(ranks)
        var seen: [String] = []
        for rank in ranks where hosts.indices.contains(rank) && hosts[rank] != hosts[seenBy] && !seen.contains(hosts[rank]) {
            let host = hosts[rank]
            if hosts.indices.allSatisfy({ hosts[$0] != host || named.contains($0) }) { seen.append(host) }
        }
        return seen
    }

    /// ", or node2 unreachable" when a whole other host fell silent; empty otherwise.
    func unreachable(_ ranks: [Int], seenBy: Int) -> String {
        let silent = silentHosts(ranks, seenBy: seenBy)
        return silent.isEmpty ? "" : ", or \(silent.joined(separator: " and ")) unreachable"
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
