// RobustnessTests: random and damaged input never crashes — the JSON reader, the record
// reader, and the tokenizers (which also round-trip random text exactly where lossless).
import Foundation
import SortedFormats
import SortedTestSupport
import XCTest
@testable import SortedData
import SortedKit

final class RobustnessTests: XCTestCase {
    func testJSONParserSurvivesDamage() throws {
        let valid = Array("{\"a\": [1, 2.5e3, -0, \"x\\u00e9\\ud83e\\udd99\"], \"b\": {\"c\": null, \"d\": true}, \"e\": \"\\n\"}".utf8)
        let parsed = try JSONParser.parse(Data(valid))
        XCTAssertEqual(parsed["a"]?.array?[3].string, "xé🦙")
        XCTAssertEqual(parsed["a"]?.array?[1].double, 2500)
        var rng = SplitMix64(seed: 11)
        var errors = 0
        for _ in 0..<20_000 {
            var bytes = valid
            for _ in 0..<(1 + rng.below(3)) {
                switch rng.below(3) {
                case 0: bytes[rng.below(bytes.count)] = UInt8(truncatingIfNeeded: rng.next())
                case 1: bytes.remove(at: rng.below(bytes.count))
                default: bytes.insert(UInt8(truncatingIfNeeded: rng.next()), at: rng.below(bytes.count))
                }
            }
            do { _ = try JSONParser.parse(Data(bytes)) } catch let e as JSONSyntaxError {
                errors += 1
                XCTAssertGreaterThanOrEqual(e.column, 1)
            }
        }
        XCTAssertGreaterThan(errors, 10_000)
        XCTAssertThrowsError(try JSONParser.parse(String(repeating: "[", count: 10_000)))
        XCTAssertThrowsError(try JSONParser.parse("\"\\ud800\""))
        XCTAssertThrowsError(try JSONParser.parse("1 2"))
    }

    func testRecordReaderSurvivesDamage() throws {
        let dir = try makeTemporaryDirectory("sortedtrain-fuzz")
        let (train, _) = SynthTasks.generate(trainCount: 20, validationCount: 0, seed: 2)
        let good = Array((train.map(\.jsonLine).joined(separator: "\n") + "\n").utf8)
        var rng = SplitMix64(seed: 5)
        for trial in 0..<300 {
            var bytes = good
            for _ in 0..<(1 + rng.below(4)) { bytes[rng.below(bytes.count)] = UInt8(truncatingIfNeeded: rng.next()) }
            let url = dir.appendingPathComponent("f\(trial % 2).jsonl")
            try Data(bytes).write(to: url)
            do {
                let r = try RecordReader.read(url, policy: .skip)
                XCTAssertEqual(r.records.count + r.skipped.count, bytes.split(separator: 0x0A).filter { !$0.allSatisfy { $0 == 0x20 || $0 == 0x09 || $0 == 0x0D } }.count)
            } catch let e as DataError {
                XCTAssertFalse(e.description.contains("\n"))
            }
            do { _ = try RecordReader.read(url, policy: .fail) } catch let e as DataError {
                XCTAssertNotNil(e.line)
            }
        }
    }

    func testTokenizersRoundTripRandomText() throws {
        var rng = SplitMix64(seed: 99)
        let ranges: [ClosedRange<UInt32>] = [0x20...0x7E, 0x09...0x0D, 0xA0...0x24F, 0x370...0x52F, 0x4E00...0x4FFF,
                                            0x3040...0x30FF, 0x1F300...0x1F6FF, 0x10000...0x1007F, 0x2000...0x206F, 0xAC00...0xACFF]
        func randomString() -> String {
            var s = String.UnicodeScalarView()
            for _ in 0..<rng.below(60) {
                let r = ranges[rng.below(ranges.count)]
                if let scalar = Unicode.Scalar(r.lowerBound + UInt32(rng.below(Int(r.upperBound - r.lowerBound) + 1))) {
                    s.append(scalar)
                }
            }
            return String(s)
        }
        let tokenizers: [Tokenizer] = try ["bytelevel", "llama3", "spm-legacy", "spm-metaspace"].map {
            try TokenizerLoader.load(tokenizerFixtures.appendingPathComponent("\($0).json").path)
        } + [ByteTokenizer()]
        for _ in 0..<2000 {
            let s = randomString()
            for t in tokenizers {
                let ids = t.encode(s, addSpecialTokens: true, parseSpecial: false)
                XCTAssertTrue(ids.allSatisfy { $0 >= 0 && Int($0) < t.vocabularySize })
                if t.isLossless && !s.unicodeScalars.contains("\u{2581}") {
                    XCTAssertEqual(t.decode(ids, skipSpecialTokens: true), s, "\(t.summary): \(jsonQuoted(s))")
                }
            }
        }
    }
}
