// When the progress printer draws the live bar: explicit settings win, then the launchers'
// SORTEDTRAIN_PROGRESS, then plain lines under mpirun, then the terminal test.
import XCTest
@testable import SortedTraining

final class ProgressPrinterTests: XCTestCase {
    let terminal = ["TERM": "xterm-256color"]
    let mpiRank = ["TERM": "xterm", "OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "0"]

    func testExplicitSettingWins() {
        XCTAssertTrue(ProgressPrinter.drawsBar(setting: .bar, environment: [:], stdoutIsTerminal: false))
        XCTAssertTrue(ProgressPrinter.drawsBar(setting: .bar, environment: mpiRank.merging(["SORTEDTRAIN_PROGRESS": "lines"]) { $1 },
                                               stdoutIsTerminal: false))
        XCTAssertFalse(ProgressPrinter.drawsBar(setting: .lines, environment: terminal.merging(["SORTEDTRAIN_PROGRESS": "bar"]) { $1 },
                                                stdoutIsTerminal: true))
    }

    func testAutoAloneFollowsTheTerminal() {
        XCTAssertTrue(ProgressPrinter.drawsBar(setting: .auto, environment: terminal, stdoutIsTerminal: true))
        XCTAssertFalse(ProgressPrinter.drawsBar(setting: .auto, environment: terminal, stdoutIsTerminal: false))
        XCTAssertFalse(ProgressPrinter.drawsBar(setting: .auto, environment: [:], stdoutIsTerminal: true))
        XCTAssertFalse(ProgressPrinter.drawsBar(setting: .auto, environment: ["TERM": "dumb"], stdoutIsTerminal: true))
        XCTAssertFalse(ProgressPrinter.drawsBar(setting: .auto, environment: ["TERM": ""], stdoutIsTerminal: true))
    }

    /// Open MPI gives every rank a pseudo-terminal even when mpirun writes to a file.
    func testAutoUnderMpirunPrefersLinesUnlessTold() {
        XCTAssertFalse(ProgressPrinter.drawsBar(setting: .auto, environment: mpiRank, stdoutIsTerminal: true))
        XCTAssertFalse(ProgressPrinter.drawsBar(setting: .auto, environment: ["TERM": "xterm", "PMIX_RANK": "0"], stdoutIsTerminal: true))
        XCTAssertTrue(ProgressPrinter.drawsBar(setting: .auto, environment: mpiRank.merging(["SORTEDTRAIN_PROGRESS": "bar"]) { $1 },
                                               stdoutIsTerminal: true))
        XCTAssertFalse(ProgressPrinter.drawsBar(setting: .auto, environment: mpiRank.merging(["SORTEDTRAIN_PROGRESS": "lines"]) { $1 },
                                                stdoutIsTerminal: true))
    }

    func testTheLaunchersWordOutsideMpirun() {
        XCTAssertFalse(ProgressPrinter.drawsBar(setting: .auto, environment: terminal.merging(["SORTEDTRAIN_PROGRESS": "lines"]) { $1 },
                                                stdoutIsTerminal: true))
        XCTAssertTrue(ProgressPrinter.drawsBar(setting: .auto, environment: ["SORTEDTRAIN_PROGRESS": "bar"], stdoutIsTerminal: false))
    }

    func testUnknownValueIsIgnoredWithAWarning() {
        let typo = mpiRank.merging(["SORTEDTRAIN_PROGRESS": "yes"]) { $1 }
        XCTAssertFalse(ProgressPrinter.drawsBar(setting: .auto, environment: typo, stdoutIsTerminal: true))
        XCTAssertTrue(ProgressPrinter.drawsBar(setting: .auto, environment: ["TERM": "xterm", "SORTEDTRAIN_PROGRESS": "yes"],
                                               stdoutIsTerminal: true))
        XCTAssertEqual(ProgressPrinter.environmentWarning(typo), "warning: SORTEDTRAIN_PROGRESS=yes is not bar or lines; ignored")
        for fine in ["bar", "lines", "auto", ""] {
            XCTAssertNil(ProgressPrinter.environmentWarning(["SORTEDTRAIN_PROGRESS": fine]))
        }
        XCTAssertNil(ProgressPrinter.environmentWarning([:]))
    }
}
