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
    /// The host of every rank (MPI_Get_processor_name), gathered when the communicator is
    /// made, so that a timeout can say where the ranks it blames run, and whether a whole
    /// host fell silent.
    public private(set) var hosts: [String] = []

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
        hosts = try gatherHosts()
    }

    private func gatherHosts() throws -> [String] {
        let width = Int(MPI_MAX_PROCESSOR_NAME) + 1
        var mine = [CChar](repeating: 0, count: width)
        var length: Int32 = 0
        MPI_Get_processor_name(&mine, &length)
        var all = [CChar](repeating: 0, count: width * size)
        try mine.withUnsafeBufferPointer { own in
            try all.withUnsafeMutableBufferPointer { out in
                try pending("a gathering of host names", {
                    MPI_Iallgather(own.baseAddress, Int32(width), cmpi_uint8(), out.baseAddress, Int32(width), cmpi_uint8(), comm, &$0)
                }, "MPI_Iallgather").wait(timeout: timeout)
            }
        }
        return (0..<size).map { r in
            all[(r * width)..<((r + 1) * width)].withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        }
    }

    /// Hosts other than this rank's all of whose ranks are among `ranks` (empty on one host).
    public func silentHosts(_ ranks: [Int]) -> [String] {
        RankPlaces(hosts: hosts).silentHosts(ranks, seenBy: rank)
    }

    /// Under mpirun (Open MPI's ORTE), the longest its daemons take to notice a host that
    /// stopped answering: TCP keepalive on their connections, oob_tcp_keepalive_time +
    /// oob_tcp_keepalive_intvl × oob_tcp_keepalive_probes as mpirun passed them to this
    /// process (Open MPI's defaults 300, 20 and 9 for those it did not). nil when mpirun did
    /// not start this process, or its keepalive is off.
    public static var launcherNoticeSeconds: Double? {
        let environment = ProcessInfo.processInfo.environment
        guard environment["OMPI_MCA_orte_hnp_uri"] != nil else { return nil }
        func value(_ name: String, _ fallback: Double) -> Double {
            environment["OMPI_MCA_oob_tcp_keepalive_" + name].flatMap { Double($0.trimmingCharacters(in: .whitespaces)) } ?? fallback
        }
        let time = value("time", 300)
        guard time > 0 else { return nil }
        return time + value("intvl", 20) * value("probes", 9)
    }

    /// Whether this process's own daemon is mpirun: its output then reaches mpirun without
    /// crossing the network.
    public static var besideLauncher: Bool {
        let environment = ProcessInfo.processInfo.environment
        guard let launcher = environment["OMPI_MCA_orte_hnp_uri"] else { return false }
        return environment["OMPI_MCA_orte_local_daemon_uri"].map { $0 == launcher } ?? true
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
                                   stopRequested: stopRequested, arguments: arguments, hosts: hosts)
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
    private let hosts: [String]

    init(request: MPI_Request?, sequence: Int64, progress: PeerProgress, rank: Int, what: String,
         stopRequested: @escaping @Sendable () -> Bool, arguments: CountArrays? = nil, hosts: [String] = []) {
        self.hosts = hosts
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
                    let longSilent = (try? progress.silentPeers(for: 4 * PeerProgress.tickSeconds)) ?? []
                    let together = Array(Set(named).union(longSilent)).sorted()
                    if !RankPlaces(hosts: hosts).silentHosts(together, seenBy: rank).isEmpty { named = together }
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
        let place = RankPlaces(hosts: hosts)
        let peers = named.isEmpty ? "its peers" : place.names(named)
        let lost = place.silentHosts(named, seenBy: rank)
        let cause = lost.isEmpty ? "if mpirun reports that a process exited, that rank died"
            : "if mpirun reports that it lost communication with \(lost.joined(separator: " and ")), that host is unreachable"
        let line = "sortedtrain: \(place.names([rank])) was told to stop while waiting for \(peers) in \(what); \(cause): resume from the last checkpoint with --resume auto\n"
        FileHandle.standardError.write(Data(line.utf8))
    }

    /// Names the ranks to blame: those that never announced this collective, else those
    /// that went silent while everyone else kept announcing that it was waiting.
    private func timeoutError(_ timeout: Double) -> CommunicatorError {
        let behind = (try? progress.peers(behind: sequence)) ?? []
        let quiet = min(timeout / 2, 4 * PeerProgress.tickSeconds)
        let silent = (try? progress.silentPeers(for: quiet)) ?? []
        // A host cut off mid-step may have passed on some of its ranks' announcements of this
        // collective and not others': when the ranks behind and those silent for 4 ticks
        // together make up a whole other host, all of them are named (and the job waits for
        // mpirun, see TrainCommand), not just those behind.
        let longSilent = (try? progress.silentPeers(for: 4 * PeerProgress.tickSeconds)) ?? []
        let together = Array(Set(behind).union(longSilent)).sorted()
        let place = RankPlaces(hosts: hosts)
        if together != behind && place.silentHosts(together, seenBy: rank) != place.silentHosts(behind, seenBy: rank) {
            return .peersSilent(ranks: together, collective: what, seconds: timeout, quietSeconds: quiet, seenBy: rank, hosts: hosts)
        }
        if !behind.isEmpty {
            return .peersBehind(ranks: behind, collective: what, seconds: timeout, seenBy: rank, hosts: hosts)
        }
        if !silent.isEmpty {
            return .peersSilent(ranks: silent, collective: what, seconds: timeout, quietSeconds: quiet, seenBy: rank, hosts: hosts)
        }
        return .timedOut(collective: what, seconds: timeout, seenBy: rank)
    }
}
