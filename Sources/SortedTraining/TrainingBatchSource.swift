// TrainingBatchSource: where a rank's micro-batches for a global step come from.
import SortedKit

public protocol TrainingBatchSource {
    /// Examples per micro-batch, and the shape of every batch this source returns.
    var microBatchSize: Int { get }
    var sequenceLength: Int { get }
    /// Rank `rank`'s `accumulationSteps` micro-batches of global step `step` (0-based), for
    /// a job of `worldSize` ranks. Together the ranks cover the step's global batch of
    /// microBatchSize × worldSize × accumulationSteps examples, each example once.
    func microBatches(step: Int, rank: Int, worldSize: Int, accumulationSteps: Int) throws -> [TokenBatch]
}
