// The answer text given out piece by piece: the pieces always add up to the whole answer as
// it would be decoded at once, cut before the first stop string; no piece ever carries the
// start of a stop string that later completes, nor half a UTF-8 character.
import XCTest
import SortedData
@testable import SortedServer

final class AnswerTextTests: XCTestCase {
    let tokenizer = ByteTokenizer()

    /// Streams `text` byte by byte (byte tokenizer: one token per byte) and returns the pieces.
    private func stream(_ text: String, stops: [String]) -> (pieces: [String], stopped: Bool) {
        var answer = AnswerText(tokenizer: tokenizer, stopStrings: stops)
        var pieces: [String] = []
        for id in tokenizer.encode(text, addSpecialTokens: false) {
            let piece = answer.append(id)
            if !piece.isEmpty { pieces.append(piece) }
            if answer.stopped { break }
        }
        let rest = answer.finish()
        if !rest.isEmpty { pieces.append(rest) }
        return (pieces, answer.stopped)
    }

    func testPiecesAddUpToTheWholeAnswerCutAtTheFirstStop() {
        let cases: [(text: String, stops: [String], expected: String, stopped: Bool)] = [
            ("hello world", [], "hello world", false),
            ("hello world", ["wor"], "hello ", true),
            ("hello world", ["zzz", "lo w", "o"], "hell", true),
            ("abcab", ["abd"], "abcab", false),              // a partial match held back, then given out
            ("naïve café ☕ done", ["☕"], "naïve café ", true), // multi-byte characters, a multi-byte stop
            ("stop at the end", ["end"], "stop at the ", true),
        ]
        for c in cases {
            let (pieces, stopped) = stream(c.text, stops: c.stops)
            XCTAssertEqual(pieces.joined(), c.expected, "\(c.text) with \(c.stops)")
            XCTAssertEqual(stopped, c.stopped, "\(c.text) with \(c.stops)")
            XCTAssertFalse(pieces.contains { $0.contains("\u{FFFD}") }, "half a character given out: \(pieces)")
        }
    }

    func testAPieceNeverEndsWithTheStartOfAStopThatCompletesLater() {
        let (pieces, _) = stream("xxabcyy", stops: ["abc"])
        XCTAssertEqual(pieces.joined(), "xx")
        XCTAssertFalse(pieces.contains { $0.contains("a") }, "the start of the stop string was sent: \(pieces)")
    }
}
