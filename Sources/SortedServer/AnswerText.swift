// AnswerText: an answer's tokens as text, given out piece by piece as it grows: a piece is
// sent once it is stable (no unfinished UTF-8 sequence at its end) and cannot be the start of
// a stop string; the answer ends before the first stop string it contains.
import SortedData

struct AnswerText {
    let tokenizer: Tokenizer
    let stopStrings: [String]
    private(set) var tokens: [Int32] = []
    /// The text given out so far.
    private(set) var sent = ""
    /// A stop string was met: the answer is complete.
    private(set) var stopped = false

    init(tokenizer: Tokenizer, stopStrings: [String]) {
        self.tokenizer = tokenizer
        self.stopStrings = stopStrings
    }

    /// Adds a token; returns the text that may be sent now (possibly empty).
    mutating func append(_ token: Int32) -> String {
        guard !stopped else { return "" }
        tokens.append(token)
        let text = tokenizer.decode(tokens, skipSpecialTokens: true)
        if let cut = firstStop(in: text) {
            stopped = true
            return piece(String(text[..<cut]))
        }
        guard !text.hasSuffix("\u{FFFD}") else { return "" }
        // Hold back a tail that a stop string could still begin with.
        let held = stopStrings.map { stop in
            let most = min(stop.count, text.count)
            return most == 0 ? 0 : (1...most).last { text.hasSuffix(stop.prefix($0)) } ?? 0
        }.max() ?? 0
        return piece(String(text.dropLast(held)))
    }

    /// The rest of the answer once generation has ended.
    mutating func finish() -> String {
        guard !stopped else { return "" }
        let text = tokenizer.decode(tokens, skipSpecialTokens: true)
        if let cut = firstStop(in: text) {
            stopped = true
            return piece(String(text[..<cut]))
        }
        return piece(text)
    }

    private func firstStop(in text: String) -> String.Index? {
        stopStrings.compactMap { text.range(of: $0)?.lowerBound }.min()
    }

    /// What `upTo` adds to the text sent, recorded as sent.
    private mutating func piece(_ upTo: String) -> String {
        guard upTo.hasPrefix(sent), upTo.count > sent.count else { return "" }
        let new = String(upTo.dropFirst(sent.count))
        sent = upTo
        return new
    }
}
