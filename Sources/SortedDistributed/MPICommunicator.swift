// MPICommunicator: the one place that calls Open MPI. Errors come back as return codes
// (MPI_ERRORS_RETURN), and every wait has a deadline so a dead peer cannot hang the job.
import CMPI
import Foundation

public final class MPICommunicator: Communicator {
    public let rank: Int
    public let size: Int
    public var timeout: Double = 300
    private let comm: MPI_Comm

    /// True when this process was started by an MPI launcher: mpirun sets
    /// OMPI_COMM_WORLD_SIZE, PMIx-based launchers (srun --mpi=pmix) set PMIX_RANK.
    public static var launchedByMPI: Bool {
        let environment = ProcessInfo.processInfo.environment
        return environment["OMPI_COMM_WORLD_SIZE"] != nil || environment["PMIX_RANK"] != nil
    }

    /// Initialises MPI; call once per process, before any other MPI use.
    public init() throws {
        var provided: Int32 = 0
        try Self.check(MPI_Init_thread(nil, nil, Int32(MPI_THREAD_FUNNELED), &provided), "MPI_Init_thread")
        comm = cmpi_comm_world()
        MPI_Comm_set_errhandler(comm, cmpi_errors_return())
        var r: Int32 = 0, s: Int32 = 0
        MPI_Comm_rank(comm, &r)
        MPI_Comm_size(comm, &s)
        rank = Int(r)
        size = Int(s)
    }

    private init(comm: MPI_Comm, rank: Int, size: Int) {
        self.comm = comm
        self.rank = rank
        self.size = size
    }

    /// A communicator over the same ranks with its own message space (MPI_Comm_dup), so
    /// traffic of one user cannot match another's.
    public static func duplicateWorld() throws -> MPICommunicator {
        var dup: MPI_Comm? = nil
        try check(MPI_Comm_dup(cmpi_comm_world(), &dup), "MPI_Comm_dup")
        MPI_Comm_set_errhandler(dup, cmpi_errors_return())
        var r: Int32 = 0, s: Int32 = 0
        MPI_Comm_rank(dup, &r)
        MPI_Comm_size(dup, &s)
        return MPICommunicator(comm: dup!, rank: Int(r), size: Int(s))
    }

    /// Finalises MPI; mpirun counts an exit without it as a failure.
    public func finalize() {
        MPI_Finalize()
    }

    static func check(_ code: Int32, _ what: String) throws {
        guard code != cmpi_success() else { return }
        var length: Int32 = 0
        var text = [CChar](repeating: 0, count: Int(MPI_MAX_ERROR_STRING) + 1)
        MPI_Error_string(code, &text, &length)
        throw CommunicatorError("\(what) failed: \(String(cString: text))")
    }

    public func allReduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws {
        // In chunks: MPI counts are 32-bit.
        var offset = 0
        while offset < count {
            let n = min(count - offset, 1 << 30)
            try Self.check(MPI_Allreduce(cmpi_in_place(), buffer + offset, Int32(n), cmpi_float(), cmpi_op_sum(), comm),
                           "MPI_Allreduce")
            offset += n
        }
    }

    public func allReduceSum(_ values: inout [Double]) throws {
        // Non-blocking and out-of-place, so the wait has a deadline.
        let input = values
        var request = cmpi_request_null()
        try values.withUnsafeMutableBufferPointer { out in
            try input.withUnsafeBufferPointer { inp in
                try Self.check(MPI_Iallreduce(inp.baseAddress, out.baseAddress, Int32(inp.count), cmpi_double(),
                                              cmpi_op_sum(), comm, &request), "MPI_Iallreduce")
                try MPIPendingReduction(request: request).wait(timeout: timeout, what: "an all-reduce of step statistics")
            }
        }
    }

    public func startAllReduceSum(input: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>,
                                  count: Int) throws -> PendingReduction {
        precondition(count < Int(Int32.max), "one non-blocking reduction holds < 2^31 floats")
        var request = cmpi_request_null()
        try Self.check(MPI_Iallreduce(input, output, Int32(count), cmpi_float(), cmpi_op_sum(), comm, &request),
                       "MPI_Iallreduce")
        return MPIPendingReduction(request: request)
    }

    public func broadcast(_ buffer: UnsafeMutableRawPointer, bytes: Int, root: Int) throws {
        var offset = 0
        while offset < bytes {
            let n = min(bytes - offset, 1 << 30)
            var request = cmpi_request_null()
            try Self.check(MPI_Ibcast(buffer + offset, Int32(n), cmpi_uint8(), Int32(root), comm, &request), "MPI_Ibcast")
            try MPIPendingReduction(request: request).wait(timeout: timeout, what: "a broadcast from rank \(root)")
            offset += n
        }
    }

    public func barrier() throws {
        var request = cmpi_request_null()
        try Self.check(MPI_Ibarrier(comm, &request), "MPI_Ibarrier")
        try MPIPendingReduction(request: request).wait(timeout: timeout, what: "a barrier")
    }

    public func abort(code: Int32) -> Never {
        MPI_Abort(comm, code)
        exit(code)
    }
}

final class MPIPendingReduction: PendingReduction {
    private var request: MPI_Request?
    private var done = false

    init(request: MPI_Request?) { self.request = request }

    func test() throws -> Bool {
        if done { return true }
        var flag: Int32 = 0
        try MPICommunicator.check(MPI_Test(&request, &flag, cmpi_status_ignore()), "MPI_Test")
        done = flag != 0
        return done
    }

    func wait(timeout: Double) throws {
        try wait(timeout: timeout, what: "a gradient all-reduce")
    }

    func wait(timeout: Double, what: String) throws {
        let deadline = ContinuousClock.now + .milliseconds(Int(timeout * 1000))
        var spins = 0
        while try !test() {
            if ContinuousClock.now > deadline {
                throw CommunicatorError("\(what) did not complete within \(timeout) s: a peer rank is dead or stuck (distributed.timeout_s)")
            }
            spins += 1
            if spins > 1000 { usleep(50) }
        }
    }
}
