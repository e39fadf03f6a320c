// DatasetBatchSource: micro-batches from a tokenized dataset in the sampler's global order.
import SortedData
import SortedKit

public final class DatasetBatchSource: TrainingBatchSource {
    public let dataset: PreparedDataset
    public let microBatchSize: Int
    public let sequenceLength: Int
    private let seed: UInt64
    private let shuffle: Bool
    private var sampler: ShardedSampler?

    public init(dataset: PreparedDataset, microBatchSize: Int, sequenceLength: Int, seed: UInt64, shuffle: Bool) {
        self.dataset = dataset
        self.microBatchSize = microBatchSize
        self.sequenceLength = sequenceLength
        self.seed = seed
        self.shuffle = shuffle
    }

    /// Examples in one epoch.
    public var count: Int { dataset.count }

    public func microBatches(cursor: Int, rank: Int, worldSize: Int, accumulationSteps: Int) throws -> [TokenBatch] {
        if sampler == nil || sampler!.worldSize != worldSize || sampler!.accumulationSteps != accumulationSteps {
            sampler = try ShardedSampler(datasetSize: dataset.count, microBatchSize: microBatchSize, worldSize: worldSize,
                                         accumulationSteps: accumulationSteps, seed: seed, shuffle: shuffle)
        }
        return sampler!.microBatches(cursor: cursor, rank: rank).map { indices in
            let (tokens, labels) = dataset.batch(indices, sequenceLength: sequenceLength)
            return TokenBatch(batchSize: indices.count, sequenceLength: sequenceLength, tokens: tokens, labels: labels)
        }
    }
}
