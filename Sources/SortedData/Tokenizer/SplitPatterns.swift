// SplitPatterns: hand-written matchers for the pre-tokenizer regexes that real tokenizers use
// (GPT-2, LLaMA-3), equal to the regex's leftmost-first semantics, over UTF-8 bytes.
// Other patterns go through NSRegularExpression (slower, same result).
import Foundation

enum SplitPattern {
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
    case gpt2
    /// `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
    case llama3
    /// A literal string.
    case literal([UInt8])
    /// Any other regex.
    case regex(NSRegularExpression)

    static let gpt2Source = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
    static let llama3Source = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#

    /// The native matcher for a known regex source, else a compiled NSRegularExpression.
    static func fromRegex(_ source: String) throws -> SplitPattern {
        if source == gpt2Source { return .gpt2 }
        if source == llama3Source { return .llama3 }
        do {
            return .regex(try NSRegularExpression(pattern: source, options: []))
        } catch {
            throw TokenizerLoadError("split regex '\(source)' does not compile: \(error.localizedDescription)")
        }
    }

    /// Calls `match(start, end)` for each match in p[start..<end], left to right.
    func forEachMatch(_ p: UnsafePointer<UInt8>, _ start: Int, _ end: Int, _ match: (Int, Int) -> Void) {
        switch self {
        case .gpt2: gpt2Matches(p, start, end, UnicodeClasses.shared, match)
        case .llama3: llama3Matches(p, start, end, UnicodeClasses.shared, match)
        case .literal(let needle):
            guard !needle.isEmpty else { return }
            var i = start
            while i + needle.count <= end {
                var equal = true
                for k in 0..<needle.count where p[i + k] != needle[k] { equal = false; break }
                if equal { match(i, i + needle.count); i += needle.count } else { i += 1 }
            }
        case .regex(let re):
            regexMatches(re, p, start, end, match)
        }
    }
}

/// GPT-2's pattern. Every character belongs to some match, so matches tile the input.
func gpt2Matches(_ p: UnsafePointer<UInt8>, _ start: Int, _ end: Int, _ classes: UnicodeClasses,
                 _ match: (Int, Int) -> Void) {
    let L = CharClass.letter, N = CharClass.number, W = CharClass.whitespace
    var i = start
    while i < end {
        let (c, len) = decodeUTF8(p, i)
        // 's 't 're 've 'm 'll 'd
        if c == 0x27 && i + 1 < end {
            let c1 = p[i + 1]
            if c1 == UInt8(ascii: "s") || c1 == UInt8(ascii: "t") || c1 == UInt8(ascii: "m") || c1 == UInt8(ascii: "d") {
                match(i, i + 2); i += 2; continue
            }
            if i + 2 < end {
                let c2 = p[i + 2]
                if (c1 == UInt8(ascii: "r") && c2 == UInt8(ascii: "e")) || (c1 == UInt8(ascii: "v") && c2 == UInt8(ascii: "e"))
                    || (c1 == UInt8(ascii: "l") && c2 == UInt8(ascii: "l")) {
                    match(i, i + 3); i += 3; continue
                }
            }
        }
        // ` ?X+` for X in letters, numbers, other: an optional leading space joins the run.
        var j = i
        var cls = classes.classOf(c)
        var clen = len
        if c == 0x20 && i + 1 < end {
            let (c2, l2) = decodeUTF8(p, i + 1)
            let k2 = classes.classOf(c2)
            if k2 & W == 0 { j = i + 1; cls = k2; clen = l2 }
        }
        if cls & W == 0 {
            var k = j + clen
            if cls & L != 0 {
                while k < end { let (s, l) = decodeUTF8(p, k); if classes.classOf(s) & L == 0 { break }; k += l }
            } else if cls & N != 0 {
                while k < end { let (s, l) = decodeUTF8(p, k); if classes.classOf(s) & N == 0 { break }; k += l }
            } else {
                while k < end { let (s, l) = decodeUTF8(p, k); if classes.classOf(s) != 0 { break }; k += l }
            }
            match(i, k); i = k; continue
        }
        // Whitespace: `\s+(?!\S)` leaves the last space of a run to the word that follows.
        var k = i + len
        var lastStart = i
        while k < end {
            let (s, l) = decodeUTF8(p, k)
            if classes.classOf(s) & W == 0 { break }
            lastStart = k
            k += l
        }
        if k == end || lastStart == i { match(i, k); i = k } else { match(i, lastStart); i = lastStart }
    }
}

/// LLaMA-3's pattern (also used by many later byte-level tokenizers).
func llama3Matches(_ p: UnsafePointer<UInt8>, _ start: Int, _ end: Int, _ classes: UnicodeClasses,
                   _ match: (Int, Int) -> Void) {
    let L = CharClass.letter, N = CharClass.number, W = CharClass.whitespace
    @inline(__always) func isNewline(_ c: UInt32) -> Bool { c == 0x0A || c == 0x0D }
    @inline(__always) func lower(_ b: UInt8) -> UInt8 { b | 0x20 }
    var i = start
    while i < end {
        let (c, len) = decodeUTF8(p, i)
        // (?i:'s|'t|'re|'ve|'m|'ll|'d); case folding also maps U+017F (long s) to s.
        if c == 0x27 && i + 1 < end {
            let c1 = p[i + 1]
            let l1 = lower(c1)
            if c1 < 0x80 && (l1 == UInt8(ascii: "s") || l1 == UInt8(ascii: "t") || l1 == UInt8(ascii: "m") || l1 == UInt8(ascii: "d")) {
                match(i, i + 2); i += 2; continue
            }
            if c1 == 0xC5 && i + 2 < end && p[i + 2] == 0xBF { match(i, i + 3); i += 3; continue }
            if i + 2 < end && c1 < 0x80 && p[i + 2] < 0x80 {
                let l2 = lower(p[i + 2])
                if (l1 == UInt8(ascii: "r") && l2 == UInt8(ascii: "e")) || (l1 == UInt8(ascii: "v") && l2 == UInt8(ascii: "e"))
                    || (l1 == UInt8(ascii: "l") && l2 == UInt8(ascii: "l")) {
                    match(i, i + 3); i += 3; continue
                }
            }
        }
        let cls = classes.classOf(c)
        // [^\r\n\p{L}\p{N}]?\p{L}+
        var letterStart = -1
        if cls & L != 0 {
            letterStart = i
        } else if cls & N == 0 && !isNewline(c) && i + len < end {
            let (c2, _) = decodeUTF8(p, i + len)
            if classes.classOf(c2) & L != 0 { letterStart = i + len }
        }
        if letterStart >= 0 {
            var k = letterStart
            while k < end { let (s, l) = decodeUTF8(p, k); if classes.classOf(s) & L == 0 { break }; k += l }
            match(i, k); i = k; continue
        }
        // \p{N}{1,3}
        if cls & N != 0 {
            var k = i + len
            var count = 1
            while k < end && count < 3 {
                let (s, l) = decodeUTF8(p, k)
                if classes.classOf(s) & N == 0 { break }
                k += l; count += 1
            }
            match(i, k); i = k; continue
        }
        //  ?[^\s\p{L}\p{N}]+[\r\n]*
        var j = -1
        if cls == 0 {
            j = i
        } else if c == 0x20 && i + 1 < end {
            let (c2, _) = decodeUTF8(p, i + 1)
            if classes.classOf(c2) == 0 { j = i + 1 }
        }
        if j >= 0 {
            var k = j
            while k < end { let (s, l) = decodeUTF8(p, k); if classes.classOf(s) != 0 { break }; k += l }
            while k < end && (p[k] == 0x0A || p[k] == 0x0D) { k += 1 }
            match(i, k); i = k; continue
        }
        // Whitespace run: \s*[\r\n]+ up to the last newline, else \s+(?!\S), else \s+.
        var k = i
        var lastStart = i
        var lastNewlineEnd = -1
        while k < end {
            let (s, l) = decodeUTF8(p, k)
            if classes.classOf(s) & W == 0 { break }
            if isNewline(s) { lastNewlineEnd = k + l }
            lastStart = k
            k += l
        }
        if lastNewlineEnd > 0 { match(i, lastNewlineEnd); i = lastNewlineEnd; continue }
        if k == end || lastStart == i { match(i, k); i = k } else { match(i, lastStart); i = lastStart }
    }
}

/// Matches of an arbitrary regex, reported as UTF-8 byte ranges.
func regexMatches(_ re: NSRegularExpression, _ p: UnsafePointer<UInt8>, _ start: Int, _ end: Int,
                  _ match: (Int, Int) -> Void) {
    let text = String(decoding: UnsafeBufferPointer(start: p + start, count: end - start), as: UTF8.self)
    let utf16 = text.utf16
    // NSRegularExpression reports UTF-16 offsets; map them back to UTF-8 byte offsets.
    var utf16ToByte = [Int](repeating: 0, count: utf16.count + 1)
    var u16 = 0
    var byte = 0
    for scalar in text.unicodeScalars {
        let n16 = scalar.value > 0xFFFF ? 2 : 1
        for k in 0..<n16 { utf16ToByte[u16 + k] = byte }
        u16 += n16
        byte += String(scalar).utf8.count
    }
    utf16ToByte[u16] = byte
    let ns = text as NSString
    for m in re.matches(in: text, options: [], range: NSRange(location: 0, length: ns.length)) where m.range.length > 0 {
        match(start + utf16ToByte[m.range.location], start + utf16ToByte[m.range.location + m.range.length])
    }
}
