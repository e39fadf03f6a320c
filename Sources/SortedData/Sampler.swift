// Sampler: the deterministic order in which examples are trained, and each rank's share.
//
// The sample stream is epoch 0's permutation, then epoch 1's, and so on; a permutation depends
// only on (seed, epoch). A global step takes the next G = microBatch × worldSize ×
// accumulationSteps positions of the stream, from a global sample cursor. Within a step,
// position j belongs to micro-step j / (microBatch·worldSize) and to rank
// (j / microBatch) mod worldSize. Remainder policy: nothing is dropped — when the dataset
// size is not a multiple of G, the last step of an epoch continues into the next epoch's
// order. Every example so appears exactly once per epoch, and because the cursor counts
// samples (not steps), a run resumed on another world size or batch shape continues the
// same stream with no repeat and no gap.
import SortedKit

/// The order of one epoch: a Fisher–Yates permutation of 0..<count seeded by (seed, epoch),
/// or the identity when shuffling is off.
public func epochOrder(count: Int, seed: UInt64, epoch: Int, shuffle: Bool = true) -> [Int] {
    var order = Array(0..<count)
    guard shuffle, count > 1 else { return order }
    var rng = SplitMix64(seed: seed ^ (UInt64(truncatingIfNeeded: epoch) &* 0xD1B5_4A32_D192_ED03) ^ 0x5EED)
    for i in stride(from: count - 1, to: 0, by: -1) {
        order.swapAt(i, rng.below(i + 1))
    }
    return order
}

public enum SamplerError: Error, Equatable, CustomStringConvertible {
    case emptyDataset
    case nonPositive(microBatchSize: Int, worldSize: Int, accumulationSteps: Int)

    public var description: String {
        switch self {
        case .emptyDataset: return "the dataset is empty: there is nothing to train on"
        case .nonPositive(let b, let w, let a):
            return "micro-batch size (\(b)), world size (\(w)) and accumulation steps (\(a)) must all be positive"
        }
    }
}

/// Which examples each rank trains at each step. Pure: no communication, no hidden state
/// except a cache of the last two epoch orders (so use one instance per thread).
public final class ShardedSampler {
    public let datasetSize: Int
    public let microBatchSize: Int
    public let worldSize: Int
    public let accumulationSteps: Int
    public let seed: UInt64
    public let shuffle: Bool
    private var cache: [Int: [Int]] = [:]

    public init(datasetSize: Int, microBatchSize: Int, worldSize: Int, accumulationSteps: Int = 1,
                seed: UInt64, shuffle: Bool = true) throws {
        guard datasetSize > 0 else { throw SamplerError.emptyDataset }
        guard microBatchSize > 0, worldSize > 0, accumulationSteps > 0 else {
            throw SamplerError.nonPositive(microBatchSize: microBatchSize, worldSize: worldSize, accumulationSteps: accumulationSteps)
        }
        self.datasetSize = datasetSize
        self.microBatchSize = microBatchSize
        self.worldSize = worldSize
        self.accumulationSteps = accumulationSteps
        self.seed = seed
        self.shuffle = shuffle
    }

    /// G = microBatch × worldSize × accumulationSteps: samples per optimizer step.
    public var globalBatchSize: Int { microBatchSize * worldSize * accumulationSteps }

    /// The epoch that stream position `cursor` falls in.
    public func epoch(atCursor cursor: Int) -> Int { cursor / datasetSize }

    /// The example at stream position `position`.
    public func example(atPosition position: Int) -> Int {
        precondition(position >= 0, "stream positions start at 0")
        let epoch = position / datasetSize
        if cache[epoch] == nil {
            if cache.count >= 2 { cache.removeValue(forKey: cache.keys.min()!) }
            cache[epoch] = epochOrder(count: datasetSize, seed: seed, epoch: epoch, shuffle: shuffle)
        }
        return cache[epoch]![position % datasetSize]
    }

    /// The stream positions rank `rank` trains in the step that starts at `cursor`, one array
    /// of microBatchSize positions per micro-step.
    public func positions(cursor: Int, rank: Int) -> [[Int]] {
        precondition(rank >= 0 && rank < worldSize, "rank \(rank) is outside 0..<\(worldSize)")
        return (0..<accumulationSteps).map { step in
            let start = cursor + step * microBatchSize * worldSize + rank * microBatchSize
            return Array(start..<(start + microBatchSize))
        }
    }

    /// The example indices rank `rank` trains in the step that starts at `cursor`, one array
    /// per micro-step (feed each to `PreparedDataset.batch`).
    public func microBatches(cursor: Int, rank: Int) -> [[Int]] {
        positions(cursor: cursor, rank: rank).map { $0.map(example(atPosition:)) }
    }

    /// The cursor after the step that starts at `cursor`; save it in the checkpoint.
    public func cursor(after cursor: Int) -> Int { cursor + globalBatchSize }
}
