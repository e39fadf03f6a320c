// SyntheticBatchSource: a deterministic stream of generated sequences for benchmarks and
// tests. Example g is a fixed function of g, so every world size sees the same data.
import SortedKit

public final class SyntheticBatchSource: TrainingBatchSource {
    public let microBatchSize: Int
    public let sequenceLength: Int
    public let vocabSize: Int

    public init(microBatchSize: Int, sequenceLength: Int, vocabSize: Int) {
        self.microBatchSize = microBatchSize
        self.sequenceLength = sequenceLength
        self.vocabSize = vocabSize
    }

    /// Example g: tokens, and labels with a "prompt" of g % 4 ignored positions.
    public func example(_ g: Int) -> (tokens: [Int32], labels: [Int32]) {
        var rng = SplitMix64(seed: UInt64(g) &* 7919 &+ 17)
        // A learnable pattern: token t+1 = (token t + 3) mod V, with noise.
        var tokens = [Int32](repeating: 0, count: sequenceLength)
        tokens[0] = Int32(rng.next() % UInt64(vocabSize))
        for t in 1..<sequenceLength {
            tokens[t] = rng.next() % 5 == 0 ? Int32(rng.next() % UInt64(vocabSize)) : (tokens[t - 1] + 3) % Int32(vocabSize)
        }
        var labels = tokens
        for t in 0..<min(g % 4, sequenceLength) { labels[t] = TokenBatch.ignoreIndex }
        return (tokens, labels)
    }

    public func microBatches(cursor: Int, rank: Int, worldSize: Int, accumulationSteps: Int) throws -> [TokenBatch] {
        (0..<accumulationSteps).map { i in
            let first = cursor + (i * worldSize + rank) * microBatchSize
            let examples = (first..<(first + microBatchSize)).map(example)
            return TokenBatch(batchSize: microBatchSize, sequenceLength: sequenceLength,
                              tokens: examples.flatMap(\.tokens), labels: examples.flatMap(\.labels))
        }
    }
}
