// MPICommunicator: the one place that calls Open MPI. Errors come back as return codes
// (MPI_ERRORS_RETURN), and every wait has a deadline so a dead or stuck peer cannot hang
// the job; PeerProgress lets the timeout name the rank that never arrived.
import CMPI
import Foundation

public final class MPICommunicator: Communicator {
    public let rank: Int
    public let size: Int
    public var timeout: Double = 300
    public var stopRequested: @Sendable () -> Bool = { false }
    private let comm: MPI_Comm
    private let progress: PeerProgress

    /// True when this process was started by an MPI launcher: mpirun sets
    /// OMPI_COMM_WORLD_SIZE, PMIx-based launchers (srun --mpi=pmix) set PMIX_RANK.
    public static var launchedByMPI: Bool {
        let environment = ProcessInfo.processInfo.environment
        return environment["OMPI_COMM_WORLD_SIZE"] != nil || environment["PMIX_RANK"] != nil
    }

    /// Initialises MPI and works on MPI_COMM_WORLD; call once per process.
    public convenience init() throws {
        var provided: Int32 = 0
        try Self.check(MPI_Init_thread(nil, nil, Int32(MPI_THREAD_FUNNELED), &provided), "MPI_Init_thread")
        let world: MPI_Comm = cmpi_comm_world()!
        MPI_Comm_set_errhandler(world, cmpi_errors_return())
        try self.init(comm: world)
    }

    private init(comm: MPI_Comm) throws {
        self.comm = comm
        var r: Int32 = 0, s: Int32 = 0
        MPI_Comm_rank(comm, &r)
        MPI_Comm_size(comm, &s)
        rank = Int(r)
        size = Int(s)
        progress = try PeerProgress(duplicating: comm, rank: rank, size: size)
    }

    /// A communicator over the same ranks with its own message space (MPI_Comm_dup), so
    /// traffic of one user cannot match another's. Collective: every rank calls it.
    public static func duplicateWorld() throws -> MPICommunicator {
        var dup: MPI_Comm? = nil
        try check(MPI_Comm_dup(cmpi_comm_world(), &dup), "MPI_Comm_dup")
        MPI_Comm_set_errhandler(dup, cmpi_errors_return())
        return try MPICommunicator(comm: dup!)
    }

    /// Finalises MPI; mpirun counts an exit without it as a failure.
    public func finalize() {
        PeerProgress.cancelAll()
        MPI_Finalize()
        PeerProgress.releaseAll()
    }

    static func check(_ code: Int32, _ what: String) throws {
        guard code != cmpi_success() else { return }
        var length: Int32 = 0
        var text = [CChar](repeating: 0, count: Int(MPI_MAX_ERROR_STRING) + 1)
        MPI_Error_string(code, &text, &length)
        throw CommunicatorError.mpi(call: what, message: String(cString: text))
    }

    /// Announces the collective to the peers, then posts it. On a timeout the caller ends
    /// the job (MPI_Abort), so buffers of an unfinished request are never reused.
    /// `arguments` are the count arrays the request reads until it completes (MPI requires them kept).
    private func pending(_ what: String, _ post: (inout MPI_Request?) -> Int32, _ call: String,
                         arguments: CountArrays? = nil) throws -> MPIPendingReduction {
        let sequence = try progress.enter()
        var request = cmpi_request_null()
        try Self.check(post(&request), call)
        return MPIPendingReduction(request: request, sequence: sequence, progress: progress, rank: rank, what: what,
                                   stopRequested: stopRequested, arguments: arguments)
    }

    public func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws {
        // Non-blocking and out-of-place in chunks (MPI counts are 32-bit), so waits have a deadline.
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: min(count, 1 << 26))
        defer { scratch.deallocate() }
        var offset = 0
        while offset < count {
            let n = min(count - offset, 1 << 26)
            try pending("an all-reduce", {
                MPI_Iallreduce(buffer + offset, scratch, Int32(n), cmpi_float(), cmpi_op_sum(), comm, &$0)
            }, "MPI_Iallreduce").wait(timeout: timeout)
            (buffer + offset).update(from: scratch, count: n)
            offset += n
        }
    }

    public func allReduceSum(_ values: inout [Double]) throws {
        let input = values
        try values.withUnsafeMutableBufferPointer { out in
            try input.withUnsafeBufferPointer { inp in
                try pending("an all-reduce of step statistics", {
                    MPI_Iallreduce(inp.baseAddress, out.baseAddress, Int32(inp.count), cmpi_double(), cmpi_op_sum(), comm, &$0)
                }, "MPI_Iallreduce").wait(timeout: timeout)
            }
        }
    }

    public func startAllReduceSum(input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
                                  count: Int) throws -> PendingReduction {
        precondition(count < Int(Int32.max), "one non-blocking reduction holds < 2^31 floats")
        return try pending("a gradient all-reduce", {
            MPI_Iallreduce(input, output, Int32(count), cmpi_float(), cmpi_op_sum(), comm, &$0)
        }, "MPI_Iallreduce")
    }

    public func startReduceScatterSum(input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
                                      counts: [Int]) throws -> PendingReduction {
        precondition(counts.count == size, "one count per rank")
        precondition(counts.reduce(0, +) < Int(Int32.max), "one non-blocking reduce-scatter holds < 2^31 floats")
        let arguments = CountArrays(counts)
        return try pending("a gradient reduce-scatter", {
            MPI_Ireduce_scatter(input, output, arguments.counts, cmpi_float(), cmpi_op_sum(), comm, &$0)
        }, "MPI_Ireduce_scatter", arguments: arguments)
    }

    public func allGather(_ buffer: UnsafeMutablePointer<Float>, counts: [Int]) throws {
        precondition(counts.count == size, "one count per rank")
        precondition(counts.reduce(0, +) < Int(Int32.max), "one all-gather holds < 2^31 floats")
        let arguments = CountArrays(counts)
        try pending("a parameter all-gather", {
            MPI_Iallgatherv(cmpi_in_place(), 0, cmpi_float(), buffer, arguments.counts, arguments.displacements,
                            cmpi_float(), comm, &$0)
        }, "MPI_Iallgatherv", arguments: arguments).wait(timeout: timeout)
    }

    public func broadcast(_ buffer: UnsafeMutableRawPointer, bytes: Int, root: Int) throws {
        var offset = 0
        while offset < bytes {
            let n = min(bytes - offset, 1 << 30)
            try pending("a broadcast from rank \(root)", {
                MPI_Ibcast(buffer + offset, Int32(n), cmpi_uint8(), Int32(root), comm, &$0)
            }, "MPI_Ibcast").wait(timeout: timeout)
            offset += n
        }
    }

    public func barrier() throws {
        try pending("a barrier", { MPI_Ibarrier(comm, &$0) }, "MPI_Ibarrier").wait(timeout: timeout)
    }

    public func abort(code: Int32) -> Never {
        MPI_Abort(comm, code)
        exit(code)
    }
}

/// Per-rank counts and displacements as MPI's 32-bit arrays, alive as long as the request.
final class CountArrays {
    let counts: UnsafeMutablePointer<Int32>
    let displacements: UnsafeMutablePointer<Int32>

    init(_ values: [Int]) {
        counts = .allocate(capacity: max(values.count, 1))
        displacements = .allocate(capacity: max(values.count, 1))
        var offset = 0
        for (i, value) in values.enumerated() {
            counts[i] = Int32(value)
            displacements[i] = Int32(offset)
            offset += value
        }
    }

    deinit {
        counts.deallocate()
        displacements.deallocate()
    }
}

final class MPIPendingReduction: PendingReduction {
    private var request: MPI_Request?
    private let arguments: CountArrays?
    private var done = false
    private let sequence: Int64
    private let progress: PeerProgress
    private let rank: Int
    private let what: String
    private let stopRequested: @Sendable () -> Bool

    init(request: MPI_Request?, sequence: Int64, progress: PeerProgress, rank: Int, what: String,
         stopRequested: @escaping @Sendable () -> Bool, arguments: CountArrays? = nil) {
        self.request = request
        self.arguments = arguments
        self.sequence = sequence
        self.progress = progress
        self.rank = rank
        self.what = what
        self.stopRequested = stopRequested
    }

    func test() throws -> Bool {
        if done { return true }
        var flag: Int32 = 0
        try MPICommunicator.check(MPI_Test(&request, &flag, cmpi_status_ignore()), "MPI_Test")
        done = flag != 0
        return done
    }

    func wait(timeout: Double) throws {
        let start = ContinuousClock.now
        let deadline = start + .milliseconds(Int(timeout * 1000))
        var nextTick = start + PeerProgress.tickInterval
        var stoppedAt: ContinuousClock.Instant?
        var warned = false
        var spins = 0
        while try !test() {
            let now = ContinuousClock.now
            if now > deadline { throw timeoutError(timeout) }
            if now > nextTick {
                // Still waiting: tell the peers this rank is alive.
                try progress.tick()
                nextTick = now + PeerProgress.tickInterval
                if stoppedAt == nil, stopRequested() { stoppedAt = now }
                if !warned, let since = stoppedAt, now - since >= .milliseconds(200) {
                    // A warning, not an error: a slow but living peer still completes the
                    // collective and the stop saves as usual. The rank to name: one that never
                    // entered this collective, else one that stopped saying it waits (a peer
                    // ticks every 0.25 s while it waits; a dead one falls silent).
                    var named = (try? progress.peers(behind: sequence)) ?? []
                    if named.isEmpty { named = (try? progress.silentPeers(for: 0.35)) ?? [] }
                    if !named.isEmpty || now - since >= .milliseconds(750) {
                        warnStoppedWhileWaiting(named)
                        warned = true
                    }
                }
            }
            spins += 1
            if spins > 1000 { usleep(50) }
        }
    }

    private func warnStoppedWhileWaiting(_ named: [Int]) {
        let peers = named.isEmpty ? "its peers" : (named.count == 1 ? "rank \(named[0])" : "ranks " + named.map(String.init).joined(separator: ", "))
        let line = "sortedtrain: rank \(rank) was told to stop while waiting for \(peers) in \(what); if mpirun reports that a process exited, that rank died: resume from the last checkpoint with --resume auto\n"
        FileHandle.standardError.write(Data(line.utf8))
    }

    /// Names the ranks to blame: those that never announced this collective, else those
    /// that went silent while everyone else kept announcing that it was waiting.
    private func timeoutError(_ timeout: Double) -> CommunicatorError {
        let behind = (try? progress.peers(behind: sequence)) ?? []
        if !behind.isEmpty {
            return .peersBehind(ranks: behind, collective: what, seconds: timeout, seenBy: rank)
        }
        let quiet = min(timeout / 2, 4 * PeerProgress.tickSeconds)
        let silent = (try? progress.silentPeers(for: quiet)) ?? []
        if !silent.isEmpty {
            return .peersSilent(ranks: silent, collective: what, seconds: timeout, quietSeconds: quiet, seenBy: rank)
        }
        return .timedOut(collective: what, seconds: timeout, seenBy: rank)
    }
}
