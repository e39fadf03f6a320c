// SamplerTests: every example once per epoch across ranks for world sizes 1, 2, 3, 8; a
// resume on another world size continues the stream with no repeat and no gap; the order is
// a fixed function of (seed, epoch).
import XCTest
@testable import SortedData
import SortedFormats
import SortedKit

final class SamplerTests: XCTestCase {
    /// All (position, example) pairs trained by all ranks in the steps from `cursor` until at
    /// least `until` positions are consumed. Returns the pairs and the next cursor.
    func run(_ s: ShardedSampler, from cursor: Int, until end: Int) -> ([Int: Int], Int) {
        var seen: [Int: Int] = [:]
        var c = cursor
        while c < end {
            for rank in 0..<s.worldSize {
                let positions = s.positions(cursor: c, rank: rank)
                let examples = s.microBatches(cursor: c, rank: rank)
                XCTAssertEqual(positions.count, s.accumulationSteps)
                for (p, e) in zip(positions.joined(), examples.joined()) {
                    XCTAssertNil(seen[p], "position \(p) trained twice")
                    seen[p] = e
                }
            }
            c = s.cursor(after: c)
        }
        return (seen, c)
    }

    func testEveryExampleOncePerEpochForWorldSizes() throws {
        for datasetSize in [37, 64, 100] {
            for world in [1, 2, 3, 8] {
                for (micro, accumulation) in [(1, 1), (2, 3), (4, 1)] {
                    let s = try ShardedSampler(datasetSize: datasetSize, microBatchSize: micro, worldSize: world,
                                               accumulationSteps: accumulation, seed: 42)
                    let (seen, _) = run(s, from: 0, until: 3 * datasetSize)
                    // The steps cover stream positions 0..<k·G with no hole.
                    XCTAssertEqual(Set(seen.keys), Set(0..<seen.count))
                    for epoch in 0..<3 {
                        let examples = (epoch * datasetSize..<(epoch + 1) * datasetSize).map { seen[$0]! }
                        XCTAssertEqual(examples.sorted(), Array(0..<datasetSize), "size \(datasetSize) world \(world) epoch \(epoch)")
                    }
                    // Ranks get disjoint slices of each step.
                    let step = (0..<world).map { Set(s.positions(cursor: 0, rank: $0).joined()) }
                    XCTAssertEqual(step.reduce(0) { $0 + $1.count }, s.globalBatchSize)
                    XCTAssertEqual(step.reduce(Set<Int>()) { $0.union($1) }.count, s.globalBatchSize)
                }
            }
        }
    }

    func testResumeOnAnotherWorldSizeHasNoRepeatAndNoGap() throws {
        let n = 53
        for (before, after) in [(2, 3), (8, 1), (1, 8), (3, 2)] {
            let a = try ShardedSampler(datasetSize: n, microBatchSize: 2, worldSize: before, accumulationSteps: 2, seed: 7)
            var (first, cursor) = run(a, from: 0, until: 70)   // stop mid-epoch 1, at a step boundary
            let saved = cursor
            let b = try ShardedSampler(datasetSize: n, microBatchSize: 3, worldSize: after, accumulationSteps: 1, seed: 7)
            let (second, _) = run(b, from: saved, until: 3 * n)
            XCTAssertTrue(Set(first.keys).isDisjoint(with: second.keys), "no position trained twice")
            first.merge(second) { a, _ in a }
            let covered = first.keys.max()! + 1
            XCTAssertEqual(Set(first.keys), Set(0..<covered), "no gap")
            // The continued stream is the one an uninterrupted run would see.
            let reference = try ShardedSampler(datasetSize: n, microBatchSize: 1, worldSize: 1, seed: 7)
            for p in 0..<covered { XCTAssertEqual(first[p], reference.example(atPosition: p)) }
            cursor = 0
        }
    }

    func testOrderDependsOnlyOnSeedAndEpoch() throws {
        let a = epochOrder(count: 1000, seed: 1, epoch: 0)
        XCTAssertEqual(a, epochOrder(count: 1000, seed: 1, epoch: 0))
        XCTAssertNotEqual(a, epochOrder(count: 1000, seed: 1, epoch: 1))
        XCTAssertNotEqual(a, epochOrder(count: 1000, seed: 2, epoch: 0))
        XCTAssertEqual(a.sorted(), Array(0..<1000))
        XCTAssertEqual(epochOrder(count: 5, seed: 1, epoch: 0, shuffle: false), [0, 1, 2, 3, 4])
        // Pinned values: the generator must never change, or resumed runs would change course.
        XCTAssertEqual(Array(epochOrder(count: 10, seed: 0, epoch: 0)), [7, 4, 6, 5, 1, 9, 3, 8, 2, 0], "pinned order")
        var g = SplitMix64(seed: 0)
        XCTAssertEqual(g.next(), 0xE220_A839_7B1D_CDAF)
    }

    func testBadShapesAreErrors() {
        XCTAssertThrowsError(try ShardedSampler(datasetSize: 0, microBatchSize: 1, worldSize: 1, seed: 0))
        XCTAssertThrowsError(try ShardedSampler(datasetSize: 5, microBatchSize: 0, worldSize: 1, seed: 0))
        XCTAssertThrowsError(try ShardedSampler(datasetSize: 5, microBatchSize: 1, worldSize: 0, seed: 0))
    }

    func testBelowIsUniformEnough() {
        var g = SplitMix64(seed: 3)
        var counts = [Int](repeating: 0, count: 7)
        for _ in 0..<70_000 { counts[g.below(7)] += 1 }
        for c in counts { XCTAssertEqual(Double(c), 10_000, accuracy: 500) }
    }
}

final class SynthTests: XCTestCase {
    func testDeterministicAndSplitWithoutLeaks() {
        let a = SynthTasks.generate(trainCount: 3000, validationCount: 300, seed: 5)
        let b = SynthTasks.generate(trainCount: 3000, validationCount: 300, seed: 5)
        XCTAssertEqual(a.train, b.train)
        XCTAssertEqual(a.validation, b.validation)
        XCTAssertNotEqual(a.train, SynthTasks.generate(trainCount: 3000, validationCount: 300, seed: 6).train)
        let validationKeys = Set(a.validation.map { $0.instruction + "\u{0}" + $0.input })
        XCTAssertEqual(validationKeys.count, 300)
        XCTAssertTrue(a.train.allSatisfy { !validationKeys.contains($0.instruction + "\u{0}" + $0.input) })
        XCTAssertEqual(Set(a.train.map(\.task)), Set(SynthTasks.taskNames))
        let hard = a.train.filter { $0.difficulty == .hard }.count
        XCTAssertEqual(Double(hard) / 3000, 0.5, accuracy: 0.05)
    }

    func testAnswersAreCorrect() throws {
        let (train, _) = SynthTasks.generate(trainCount: 2000, validationCount: 0, seed: 9)
        for e in train {
            XCTAssertFalse(e.output.isEmpty)
            switch e.task {
            case "add", "subtract", "multiply":
                let parts = e.instruction.dropFirst("What is ".count).dropLast().split(separator: " ")
                let x = Int(parts[0])!, y = Int(parts[2])!
                let want = parts[1] == "+" ? x + y : parts[1] == "-" ? x - y : x * y
                XCTAssertEqual(e.output, String(want), e.instruction)
            case "reverse": XCTAssertEqual(e.output, String(e.input.reversed()))
            case "sort_letters": XCTAssertEqual(e.output, String(e.input.sorted()))
            case "parity":
                let v = Int(e.instruction.split(separator: " ")[1])!
                XCTAssertEqual(e.output, v % 2 == 0 ? "even" : "odd")
            case "lookup":
                let key = String(e.instruction.dropFirst("What is the value of ".count).dropLast())
                let pairs = e.input.components(separatedBy: ", ").map { $0.split(separator: "=") }
                XCTAssertEqual(e.output, String(pairs.first { String($0[0]) == key }![1]))
            case "count_letter":
                let letter = e.instruction.split(separator: "\"")[1].first!
                XCTAssertEqual(e.output, String(e.input.filter { $0 == letter }.count))
            default: break
            }
        }
        XCTAssertTrue(SynthTasks.grade(prediction: " 42\n", answer: "42"))
        XCTAssertFalse(SynthTasks.grade(prediction: "42.", answer: "42"))
    }

    func testJSONLinesReadBackAsAlpaca() throws {
        let (train, _) = SynthTasks.generate(trainCount: 50, validationCount: 0, seed: 1)
        for (i, e) in train.enumerated() {
            let record = try RecordReader.record(from: try JSONParser.parse(e.jsonLine), format: .auto, path: "x", line: i + 1)
            XCTAssertEqual(record, .instruction(instruction: e.instruction, input: e.input, output: e.output))
        }
    }
}
