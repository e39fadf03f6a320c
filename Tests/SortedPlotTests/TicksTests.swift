// Tick values and their labels: 1-2-5 steps on linear axes, decades on log axes, and labels
// printed as people write them.
import XCTest
@testable import SortedPlot

final class TicksTests: XCTestCase {
    func testLinearTicksStepByOneTwoOrFive() {
        // Exact equality: the values are built from integers, so 0.6 is the double nearest 0.6.
        XCTAssertEqual(Ticks.linear(0, 1), [0, 0.2, 0.4, 0.6, 0.8, 1.0])
        XCTAssertEqual(Ticks.linear(0, 7), [0, 2, 4, 6, 8])
        XCTAssertEqual(Ticks.linear(1.38, 5.52), [1, 2, 3, 4, 5, 6])
        XCTAssertEqual(Ticks.linear(1, 600), [0, 100, 200, 300, 400, 500, 600])
        XCTAssertEqual(Ticks.linear(-3, 3), [-4, -2, 0, 2, 4])
        XCTAssertEqual(Ticks.linear(0.1, 0.3), [0.1, 0.15, 0.2, 0.25, 0.3])
        XCTAssertEqual(Ticks.linear(7, 0), [0, 2, 4, 6, 8], "reversed ends")
    }

    func testLinearTicksEncloseTheRangeWithFewTicks() {
        for (lo, hi) in [(0.0, 1e-7), (3.2, 3.3), (-1e6, 2.5e6), (12.0, 9_999.0), (0.013, 0.97)] {
            let t = Ticks.linear(lo, hi)
            XCTAssert((4...11).contains(t.count), "\(lo)…\(hi): \(t)")
            XCTAssertLessThanOrEqual(t.first!, lo)
            XCTAssertGreaterThanOrEqual(t.last!, hi)
        }
        XCTAssertEqual(Ticks.linear(.nan, 1), [])
        XCTAssertEqual(Ticks.linear(-1e308, 1e308), [-1e308, 1e308], "a span beyond Double's range does not trap")
        XCTAssertEqual(Ticks.linear(1e20, 1e20 + 1e5).count, 2, "a range too narrow for its magnitude keeps its ends")
    }

    func testLogTicksAreDecadesOrOneTwoFive() {
        XCTAssertEqual(Ticks.log(0.5, 300), [1, 10, 100])
        XCTAssertEqual(Ticks.log(0.001, 1), [0.001, 0.01, 0.1, 1])
        XCTAssertEqual(Ticks.log(3, 70), [5, 10, 20, 50], "less than two decades: 1-2-5")
        XCTAssertEqual(Ticks.log(1.3, 5.6), [2, 3, 4, 5], "within a decade: linear ticks inside")
        XCTAssertEqual(Ticks.log(100, 400), [100, 200, 300, 400])
        XCTAssertEqual(Ticks.log(1e-3, 1e20).count, 8, "many decades thinned to at most eight")
        XCTAssertEqual(Ticks.log(0, 10), [], "a log axis needs positive ends")
    }

    func testLabelsAreCompact() {
        func labels(_ lo: Double, _ hi: Double) -> [String] {
            let (t, e) = Ticks.linearSteps(lo, hi)
            return Ticks.labels(t, exponent: e)
        }
        XCTAssertEqual(labels(0, 1), ["0.0", "0.2", "0.4", "0.6", "0.8", "1.0"])
        XCTAssertEqual(labels(0.1, 0.3), ["0.10", "0.15", "0.20", "0.25", "0.30"])
        XCTAssertEqual(labels(0, 7), ["0", "2", "4", "6", "8"])
        XCTAssertEqual(labels(0, 250_000), ["0", "50k", "100k", "150k", "200k", "250k"])
        XCTAssertEqual(labels(0, 4e-5), ["0", "1e-5", "2e-5", "3e-5", "4e-5"])
        XCTAssertEqual(labels(0, 3.5e6), ["0", "1M", "2M", "3M", "4M"])
        let logTicks = Ticks.logTicks(0.001, 1e4)
        XCTAssertEqual(zip(logTicks.major, logTicks.exponents).map { Ticks.format($0, exponent: $1, largest: $0) },
                       ["0.001", "0.01", "0.1", "1", "10", "100", "1000", "10000"])
        XCTAssertEqual(Ticks.format(1e6, exponent: 6, largest: 1e6), "1M")
    }
}
