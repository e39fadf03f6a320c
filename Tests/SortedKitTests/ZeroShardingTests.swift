// ZeRO-1's single-process pieces: the ownership partition of the parameter buffer, and
// AdamW restricted to an owned range against the full AdamW.
import XCTest
@testable import SortedKit

final class ZeroShardingTests: XCTestCase {
    let layout = ParameterLayout(config: LlamaConfig(hiddenSize: 32, intermediateSize: 48, numHiddenLayers: 4,
                                                     numAttentionHeads: 4, numKeyValueHeads: 2, vocabSize: 40))

    func testThePartitionCutsTheBufferIntoContiguousRunsOfWholeTensorsInRankOrder() {
        let boundaries = Set(layout.tensors.map(\.offset) + [layout.count])
        for ranks in 1...5 {
            let partition = ParameterPartition(layout: layout, ranks: ranks)
            XCTAssertEqual(partition.ranges.count, ranks)
            XCTAssertEqual(partition.ranges.first?.lowerBound, 0)
            XCTAssertEqual(partition.ranges.last?.upperBound, layout.count)
            for (a, b) in zip(partition.ranges, partition.ranges.dropFirst()) { XCTAssertEqual(a.upperBound, b.lowerBound) }
            for range in partition.ranges {
                XCTAssertTrue(boundaries.contains(range.lowerBound) && boundaries.contains(range.upperBound),
                              "\(ranks) ranks: \(range) cuts a tensor")
            }
            for tensor in layout.tensors {
                XCTAssertTrue(partition.ranges[partition.owner(of: tensor)].contains(tensor.range.lowerBound)
                              && partition.ranges[partition.owner(of: tensor)].upperBound >= tensor.range.upperBound)
            }
            // Balanced: no share exceeds an equal one by more than the largest tensor.
            let largest = layout.tensors.map(\.count).max()!
            XCTAssertLessThanOrEqual(partition.ranges.map(\.count).max()!, layout.count / ranks + largest, "\(ranks) ranks")
        }
    }

    func testABucketsCountsPerRankAreItsIntersectionsWithTheOwnedRanges() {
        let partition = ParameterPartition(layout: layout, ranks: 3)
        for l in layout.layers.indices {
            let range = layout.layerRange(l)
            let counts = partition.counts(of: range)
            XCTAssertEqual(counts.reduce(0, +), range.count)
            for (rank, count) in counts.enumerated() {
                XCTAssertEqual(count, partition.ranges[rank].clamped(to: range).count)
            }
        }
        XCTAssertEqual(partition.counts(of: 0..<layout.count), partition.ranges.map(\.count))
    }

    func testShardedAdamWEqualsTheFullAdamWOnItsOwnedRange() throws {
        let settings = AdamWSettings(learningRate: 0.01, weightDecay: 0.1)
        let start = randomArray(layout.count, seed: 3)
        let full = try AdamW(layout: layout, settings: settings)
        let fullParameters = buffer(start)
        let partition = ParameterPartition(layout: layout, ranks: 3)
        let shards = try partition.ranges.map { try AdamW(layout: layout, settings: settings, owned: $0) }
        let shardParameters = buffer(start)
        for step in 1...4 {
            let gradients = randomArray(layout.count, seed: 100 + UInt64(step))
            full.step(step, parameters: fullParameters, gradients: buffer(gradients), learningRate: 0.01, gradientScale: 0.7)
            for (shard, owned) in zip(shards, partition.ranges) {
                shard.step(step, parameters: shardParameters, gradients: buffer(Array(gradients[owned])), learningRate: 0.01,
                           gradientScale: 0.7)
            }
        }
        XCTAssertEqual(shardParameters.array(), fullParameters.array())
        for (shard, owned) in zip(shards, partition.ranges) {
            XCTAssertEqual(shard.momentBytes, owned.count * 8)
            XCTAssertEqual(shard.firstMoment.array(), Array(full.firstMoment.array()[owned]))
            XCTAssertEqual(shard.secondMoment.array(), Array(full.secondMoment.array()[owned]))
        }
    }
}
