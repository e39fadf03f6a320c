// Communicator: what training needs from the process group — rank, size, sum-reductions
// (blocking and non-blocking), broadcast, barrier, abort. MPI and single-process versions.
import Foundation

public struct CommunicatorError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
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
