// The training loop's guards: a NaN/Inf loss stops the run before any update, or is skipped
// and counted, as configured.
import Foundation
import SortedTestSupport
import XCTest
import SortedKit
@testable import SortedTraining

final class TrainerTests: XCTestCase {
    var directory: URL!

    override func setUpWithError() throws { directory = try makeTemporaryDirectory("sortedtrain-trainer") }

    func testNonFiniteLossStopsBeforeTheUpdate() throws {
        let t = try smallTrainer(try smallRunConfig(in: directory))
        t.model.parameters[t.model.layout.finalNorm] = .nan
        let before = t.model.parameters.array()
        XCTAssertThrowsError(try t.run()) { error in
            let e = error as! TrainingError
            XCTAssertTrue(e.isRaisedOnEveryRank)
            guard case .nonFinite(step: 1, quantity: "loss", let value) = e, value.isNaN else { return XCTFail("\(e)") }
            XCTAssertTrue("\(e)".contains("train.on_nonfinite"), "\(e)")
        }
        let after = t.model.parameters.array()
        XCTAssertTrue(zip(before, after).allSatisfy { $0 == $1 || ($0.isNaN && $1.isNaN) }, "no update was applied")
        XCTAssertEqual(t.state.optimizerSteps, 0)
    }

    func testNonFiniteStepsAreSkippedAndCountedWhenConfigured() throws {
        let t = try smallTrainer(try smallRunConfig(in: directory, maxSteps: 3, extra: ", \"on_nonfinite\": \"skip\""))
        t.model.parameters[t.model.layout.finalNorm] = .infinity
        var skipped: [Bool] = []
        t.onStep = { skipped.append($0.skipped) }
        let summary = try t.run()
        XCTAssertEqual(summary.skippedSteps, 3)
        XCTAssertEqual(skipped, [true, true, true])
        XCTAssertEqual(t.state.optimizerSteps, 0)
        XCTAssertEqual(t.state.sampleCursor, 3 * t.globalBatchSize, "the data moves on past skipped steps")
    }
}
