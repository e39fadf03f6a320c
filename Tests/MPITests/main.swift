// Multi-rank checks of SortedDistributed, run by launch/test under `mpirun -np N`.
// Every rank runs every check; rank 0 prints one line per check and the summary line.
import Foundation
import SortedDistributed

guard MPICommunicator.launchedByMPI else {
    print("sortedtrain-mpi-tests must run under mpirun, e.g. mpirun -np 2 .build/release/sortedtrain-mpi-tests")
    exit(2)
}
let comm = try MPICommunicator()
var results: [(String, Bool)] = []

func check(_ name: String, _ body: () throws -> Bool) {
    let ok = (try? body()) ?? false
    results.append((name, ok))
}

let world = comm.size
check("rank and size agree with mpirun") {
    comm.size == Int(ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_SIZE"]!)! && (0..<world).contains(comm.rank)
}

check("blocking all-reduce sums floats across ranks") {
    let n = 1000
    let buffer = UnsafeMutablePointer<Float>.allocate(capacity: n)
    defer { buffer.deallocate() }
    for i in 0..<n { buffer[i] = Float(comm.rank + 1) * Float(i) }
    try comm.allReduceSum(buffer, count: n)
    let factor = Float(world * (world + 1) / 2)
    return (0..<n).allSatisfy { buffer[$0] == factor * Float($0) }
}

check("non-blocking out-of-place all-reduce leaves the input and fills the output") {
    let n = 100_003
    let input = UnsafeMutablePointer<Float>.allocate(capacity: n), output = UnsafeMutablePointer<Float>.allocate(capacity: n)
    defer { input.deallocate(); output.deallocate() }
    for i in 0..<n { input[i] = Float(comm.rank) + 0.5; output[i] = -1 }
    let pending = try comm.startAllReduceSum(input: input, output: output, count: n)
    try pending.wait(timeout: 30)
    let expected = Float(world * (world - 1) / 2) + 0.5 * Float(world)
    return (0..<n).allSatisfy { output[$0] == expected && input[$0] == Float(comm.rank) + 0.5 }
}

check("all-reduce of doubles") {
    var values = [Double(comm.rank), 1.0]
    try comm.allReduceSum(&values)
    return values == [Double(world * (world - 1) / 2), Double(world)]
}

check("broadcast copies rank 0's bytes") {
    var value: [UInt64] = [comm.rank == 0 ? 0xDEAD_BEEF : 0, UInt64(comm.rank)]
    try value.withUnsafeMutableBytes { try comm.broadcast($0.baseAddress!, bytes: $0.count, root: 0) }
    return value == [0xDEAD_BEEF, 0]
}

check("barrier returns") {
    try comm.barrier()
    return true
}

// A check passes only when it passed on every rank.
var failures = results.map { $0.1 ? 0.0 : 1.0 }
try comm.allReduceSum(&failures)
if comm.rank == 0 {
    for (i, (name, _)) in results.enumerated() {
        print("\(failures[i] == 0 ? "ok  " : "FAIL") [np \(world)] \(name)")
    }
    let failed = failures.filter { $0 > 0 }.count
    print("mpi: \(results.count - failed) passed, \(failed) failed")
}
let anyFailed = failures.contains { $0 > 0 }
comm.finalize()
exit(anyFailed ? 1 : 0)
