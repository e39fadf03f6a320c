// TrainingBatchSource: where a rank's micro-batches come from. Positions are global sample
// cursors, not steps, so a run resumed with another world size continues the same stream.
import SortedKit

public protocol TrainingBatchSource {
    /// Examples per micro-batch, and the shape of every batch this source returns.
    var microBatchSize: Int { get }
    var sequenceLength: Int { get }
    /// Rank `rank`'s `accumulationSteps` micro-batches of the global batch that starts at
    /// sample `cursor` of the global stream, for a job of `worldSize` ranks. Together the
    /// ranks cover samples cursor ..< cursor + microBatchSize × worldSize × accumulationSteps,
    /// each once.
    func microBatches(cursor: Int, rank: Int, worldSize: Int, accumulationSteps: Int) throws -> [TokenBatch]
}
