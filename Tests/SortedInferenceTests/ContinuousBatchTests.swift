// Continuous batching against the path it replaces: every sequence's tokens equal
// TextGenerator's fixed-depth answer for the same prompt, depth and sampling, whatever the
// other sequences in the batch, their depths, and when they joined or left.
import XCTest
import SortedKit
@testable import SortedInference

final class ContinuousBatchTests: XCTestCase {
    let prompts: [[Int32]] = [[5, 17, 33], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], [40], [7, 7, 8, 2, 60, 3]]

    /// Runs requests through a batch, admitting request i before step `joins[i]`; returns each
    /// request's tokens and finish.
    private func run(_ batch: ContinuousBatch, _ requests: [ContinuousBatch.Request], joins: [Int],
                     cancel: (request: Int, atStep: Int)? = nil) throws -> [(tokens: [Int32], finish: ContinuousBatch.Finish?)] {
        var results = [(tokens: [Int32], finish: ContinuousBatch.Finish?)](repeating: ([], nil), count: requests.count)
        var slotOwner: [Int: Int] = [:]
        var step = 0
        while results.indices.contains(where: { results[$0].finish == nil && !(cancel?.request == $0 && step > cancel!.atStep) }) {
            for (i, join) in joins.enumerated() where join == step {
                slotOwner[try batch.admit(requests[i])] = i
            }
            if let cancel, cancel.atStep == step, let slot = slotOwner.first(where: { $0.value == cancel.request })?.key {
                batch.cancel(slot: slot)
                slotOwner[slot] = nil
            }
            for event in batch.step() {
                let i = slotOwner[event.slot]!
                if let token = event.token { results[i].tokens.append(token) }
                if let finish = event.finish { results[i].finish = finish; slotOwner[event.slot] = nil }
            }
            step += 1
            XCTAssertLessThan(step, 200, "the batch never finished")
            if step >= 200 { break }
        }
        return results
    }

    func testEverySequenceEqualsItsFixedDepthAnswerWhateverJoinsOrLeaves() throws {
        let model = try inferenceModel()
        let depths = [4, 2, 4, 1]
        let samplings = [SamplingSettings(), SamplingSettings(temperature: 0.8, topK: 20, seed: 3),
                         SamplingSettings(), SamplingSettings(temperature: 1.1, topP: 0.9, seed: 9)]
        let stop: Set<Int32> = [13]
        let requests = (0..<4).map {
            ContinuousBatch.Request(prompt: prompts[$0], depth: depths[$0], sampling: samplings[$0], maxNewTokens: 6 + 3 * $0, stop: stop)
        }
        let batch = try ContinuousBatch(model: model, slots: 3, capacity: 40)
        // Request 3 joins when request 0 has left its slot (3 slots, 4 requests).
        let results = try run(batch, requests, joins: [0, 0, 2, 7])
        for (i, request) in requests.enumerated() {
            let alone = try TextGenerator(model: model, strategy: .fixed(depth: request.depth), sampling: request.sampling,
                                          stop: stop, capacity: 40)
            let expected = alone.generate([request.prompt], maxNewTokens: request.maxNewTokens)[0]
            XCTAssertEqual(results[i].tokens, expected, "request \(i) at depth \(request.depth)")
            XCTAssertEqual(results[i].finish, expected.count == request.maxNewTokens ? .length : .stop, "request \(i)")
        }
        XCTAssertEqual(batch.running, 0)
        XCTAssertEqual(batch.freeSlots, 3)
    }

    func testRequestsAdmittedTogetherAnswerAsAlone() throws {
        let model = try inferenceModel()
        // Prompts of several lengths and depths, one longer than a prefill chunk (it continues
        // in the next chunk after the others' rows).
        let long = (0..<85).map { Int32(($0 * 7) % 61) }
        let requests = [(prompts[1], 4), (long, 4), (prompts[0], 2), (prompts[3], 1)].map {
            ContinuousBatch.Request(prompt: $0.0, depth: $0.1, sampling: SamplingSettings(), maxNewTokens: 8, stop: [])
        }
        let batch = try ContinuousBatch(model: model, slots: 4, capacity: 96)   // chunks of 96 rows: 12 + 85 at depth 4 split
        let slots = try batch.admit(requests)
        var tokens = [[Int32]](repeating: [], count: 4)
        while batch.running > 0 {
            for event in batch.step() { if let t = event.token { tokens[slots.firstIndex(of: event.slot)!].append(t) } }
        }
        for (i, request) in requests.enumerated() {
            let alone = try TextGenerator(model: model, strategy: .fixed(depth: request.depth), stop: [], capacity: 96)
            XCTAssertEqual(tokens[i], alone.generate([request.prompt], maxNewTokens: 8)[0], "request \(i)")
        }
    }

    func testCancelFreesTheSlotAndLeavesTheOthersUnchanged() throws {
        let model = try inferenceModel()
        let requests = (0..<3).map {
            ContinuousBatch.Request(prompt: prompts[$0], depth: 4, sampling: SamplingSettings(), maxNewTokens: 10, stop: [])
        }
        let batch = try ContinuousBatch(model: model, slots: 2, capacity: 40)
        let results = try run(batch, requests, joins: [0, 0, 4], cancel: (request: 0, atStep: 3))
        XCTAssertEqual(results[0].tokens.count, 3, "cancelled after three steps")
        for i in 1...2 {
            let alone = try TextGenerator(model: model, strategy: .fixed(depth: 4), stop: [], capacity: 40)
            XCTAssertEqual(results[i].tokens, alone.generate([requests[i].prompt], maxNewTokens: 10)[0], "request \(i)")
        }
    }

    func testCapacityEndsASequenceAndBadRequestsAreRefused() throws {
        let model = try inferenceModel()
        let batch = try ContinuousBatch(model: model, slots: 1, capacity: 8)
        let long = ContinuousBatch.Request(prompt: [1, 2, 3, 4, 5], depth: 4, sampling: SamplingSettings(), maxNewTokens: 50, stop: [])
        let results = try run(batch, [long], joins: [0])
        // 5 prompt tokens + 3 new fill the 8 positions (the last new token is never fed back).
        XCTAssertEqual(results[0].tokens.count, 3)
        XCTAssertEqual(results[0].finish, .length)
        var bad = long
        bad.prompt = Array(repeating: 1, count: 8)
        XCTAssertNotNil(batch.problem(bad), "a prompt that fills the context")
        bad = long; bad.depth = 5
        XCTAssertNotNil(batch.problem(bad), "a depth the model does not have")
        bad = long; bad.prompt = [1, 999]
        XCTAssertNotNil(batch.problem(bad), "a token outside the vocabulary")
        bad = long; bad.sampling.temperature = .nan
        XCTAssertNotNil(batch.problem(bad), "a NaN temperature")
        _ = try batch.admit(long)
        XCTAssertThrowsError(try batch.admit(long), "no free slot")
        // Slots whose KV cache with the weights exceeds the machine are refused before allocation.
        XCTAssertThrowsError(try ContinuousBatch(model: model, slots: 1 << 30, capacity: 96)) {
            XCTAssertTrue("\($0)".contains("the model's weights") && "\($0)".contains("KV cache of 1073741824 sequences"), "\($0)")
        }
    }
}
