// GradientSync: sums gradients across ranks bucket by bucket while the backward runs.
// Each bucket's out-of-place non-blocking all-reduce starts as soon as SortedPass reports
// it final, and pending reductions are progressed (MPI_Test) every time another bucket
// finishes: Open MPI has no progress thread here. The reduced sums land in `reduced`,
// which the optimizer then reads, so no copy back is needed. Under ZeRO-1 each bucket is
// reduce-scattered instead, and `reduced` holds only the sums of this rank's owned range.
import SortedDistributed
import SortedKit

public final class GradientSync {
    public let communicator: Communicator
    private let layout: ParameterLayout
    private let gradients: FloatBuffer
    /// Σ over ranks of the gradients, valid after `finish`: the whole buffer, or under
    /// ZeRO-1 the owned range (element i is parameter owned.lowerBound + i).
    public let reduced: FloatBuffer
    /// Under ZeRO-1, who owns which range; nil: every rank gets every sum.
    private let partition: ParameterPartition?
    private let timeout: Double
    private var pending: [PendingReduction] = []
    private var started = Set<GradientBucket>()

    public init(communicator: Communicator, model: LlamaModel, timeout: Double, partition: ParameterPartition? = nil) {
        precondition(partition == nil || partition!.ranks == communicator.size, "one owned range per rank")
        self.communicator = communicator
        layout = model.layout
        gradients = model.gradients
        self.partition = partition
        reduced = FloatBuffer(count: partition?.ranges[communicator.rank].count ?? model.layout.count)
        self.timeout = timeout
    }

    /// SortedPass's callback: start this bucket's reduction, progress the others.
    public func bucketReady(_ bucket: GradientBucket) throws {
        let range = layout.range(of: bucket)
        if started.insert(bucket).inserted, !range.isEmpty {
            let input = UnsafePointer(gradients.pointer + range.lowerBound)
            if let partition {
                // This rank's part of the bucket starts where the bucket enters its range.
                let owned = partition.ranges[communicator.rank]
                let into = min(max(range.lowerBound, owned.lowerBound) - owned.lowerBound, reduced.count)
                pending.append(try communicator.startReduceScatterSum(
                    input: input, output: reduced.pointer + into, counts: partition.counts(of: range)))
            } else {
                pending.append(try communicator.startAllReduceSum(
                    input: input, output: reduced.pointer + range.lowerBound, count: range.count))
            }
        }
        for reduction in pending { _ = try reduction.test() }
    }

    /// Starts whatever was not reported (e.g. buckets no exit reached), then waits for all.
    /// Returns the seconds spent waiting: the communication the backward did not hide.
    public func finish() throws -> Double {
        let start = ContinuousClock.now
        for bucket in layout.gradientBucketOrder where !started.contains(bucket) { try bucketReady(bucket) }
        for reduction in pending { try reduction.wait(timeout: timeout) }
        pending.removeAll()
        started.removeAll()
        return (ContinuousClock.now - start).seconds
    }
}
