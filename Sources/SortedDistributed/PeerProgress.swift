// PeerProgress: how far every peer has got, for MPICommunicator's timeouts to name the
// rank that never arrived (or went silent). Its messages travel on a communicator of its own.
import CMPI

/// PeerProgress: each rank tells every other rank, by a small message on a separate
/// communicator, how many collectives it has entered. When a collective times out, the
/// ranks that never announced it are the ones to blame.
final class PeerProgress {
    private let comm: MPI_Comm
    private let rank: Int
    private let size: Int
    private var entered: Int64 = 0
    private var heard: [Int64]
    private var lastHeard: [ContinuousClock.Instant]
    /// How often a waiting rank says it is alive.
    static let tickSeconds = 0.25
    static let tickInterval: Duration = .milliseconds(250)
    private static let aliveTick: Int64 = -1
    private var receives: [MPI_Request?]
    private let inbox: UnsafeMutablePointer<Int64>      // one slot per peer
    private let outbox: UnsafeMutablePointer<Int64>     // ring of announced values
    private static let ringSize = 4096
    private static let tag: Int32 = 7
    nonisolated(unsafe) private static var live: [PeerProgress] = []

    init(duplicating parent: MPI_Comm, rank: Int, size: Int) throws {
        var dup: MPI_Comm? = nil
        try MPICommunicator.check(MPI_Comm_dup(parent, &dup), "MPI_Comm_dup")
        MPI_Comm_set_errhandler(dup, cmpi_errors_return())
        comm = dup!
        self.rank = rank
        self.size = size
        heard = [Int64](repeating: 0, count: size)
        lastHeard = [ContinuousClock.Instant](repeating: .now, count: size)
        receives = [MPI_Request?](repeating: cmpi_request_null(), count: size)
        inbox = .allocate(capacity: size)
        outbox = .allocate(capacity: Self.ringSize)
        for peer in 0..<size where peer != rank { try post(peer) }
        Self.live.append(self)
    }

    private func post(_ peer: Int) throws {
        try MPICommunicator.check(MPI_Irecv(inbox + peer, 1, cmpi_int64(), Int32(peer), Self.tag, comm, &receives[peer]),
                                  "MPI_Irecv")
    }

    /// Announces the next collective to every peer; returns its sequence number.
    func enter() throws -> Int64 {
        entered += 1
        try send(entered)
        return entered
    }

    /// Tells every peer this rank is alive and waiting.
    func tick() throws {
        try send(Self.aliveTick)
    }

    private var sent: Int = 0

    private func send(_ value: Int64) throws {
        sent += 1
        let slot = outbox + sent % Self.ringSize
        slot.pointee = value
        for peer in 0..<size where peer != rank {
            var request = cmpi_request_null()
            try MPICommunicator.check(MPI_Isend(slot, 1, cmpi_int64(), Int32(peer), Self.tag, comm, &request), "MPI_Isend")
            // Eight bytes go out eagerly; the slot is reused only 4096 messages later.
            MPI_Request_free(&request)
        }
        try poll()
    }

    /// Takes in every announcement that has arrived.
    private func poll() throws {
        for peer in 0..<size where peer != rank {
            while true {
                var flag: Int32 = 0
                try MPICommunicator.check(MPI_Test(&receives[peer], &flag, cmpi_status_ignore()), "MPI_Test")
                guard flag != 0 else { break }
                heard[peer] = max(heard[peer], inbox[peer])
                lastHeard[peer] = .now
                try post(peer)
            }
        }
    }

    /// Peers that have not announced collective `sequence`.
    func peers(behind sequence: Int64) throws -> [Int] {
        try poll()
        return (0..<size).filter { $0 != rank && heard[$0] < sequence }
    }

    /// Peers not heard from (no announcement, no alive tick) for `seconds`.
    func silentPeers(for seconds: Double) throws -> [Int] {
        try poll()
        let cutoff = ContinuousClock.now - .milliseconds(Int(seconds * 1000))
        return (0..<size).filter { $0 != rank && lastHeard[$0] < cutoff }
    }

    /// Cancels the posted receives and waits until MPI has let go of them, as MPI_Finalize
    /// requires. Every instance stays alive (listed) until `releaseAll`: a send posted
    /// with MPI_Request_free may read its outbox slot until MPI_Finalize.
    static func cancelAll() {
        for progress in live { progress.cancelReceives() }
    }

    /// After MPI_Finalize, when no MPI operation can touch the buffers any more: lets the
    /// instances go, so they free them.
    static func releaseAll() {
        live.removeAll()
    }

    /// Cancels each receive still posted and completes it (a cancelled receive's wait is
    /// local), so `inbox` is no longer MPI's. Nothing to do once MPI is finalised.
    private func cancelReceives() {
        var finalized: Int32 = 0
        MPI_Finalized(&finalized)
        guard finalized == 0 else { return }
        for peer in 0..<size where peer != rank && receives[peer] != cmpi_request_null() {
            MPI_Cancel(&receives[peer])
            MPI_Wait(&receives[peer], cmpi_status_ignore())
            receives[peer] = cmpi_request_null()
        }
    }

    /// Reached after `releaseAll` (live instances are listed), or when `init` failed after
    /// posting some receives: those are completed first.
    deinit {
        cancelReceives()
        inbox.deallocate()
        outbox.deallocate()
    }
}
