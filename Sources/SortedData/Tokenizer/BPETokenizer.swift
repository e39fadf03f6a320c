// BPETokenizer: HF `tokenizers`' pipeline (added tokens → normalizer → pre-tokenizer → BPE
// → post-processor, and the decoder chain) for byte-level BPE and SentencePiece-style BPE.
import Foundation

public final class BPETokenizer: Tokenizer {
    struct AddedToken {
        let content: String
        let id: Int32
        let special: Bool
        let lstrip: Bool
        let rstrip: Bool
        let singleWord: Bool
    }

    enum NormalizerStep {
        case prepend([UInt8])
        case replace([UInt8], [UInt8])
        case replaceRegex(NSRegularExpression, String)
        case nfc, nfd, nfkc, nfkd
        case lowercase
        case strip(left: Bool, right: Bool)
    }

    enum SplitBehavior: String {
        case removed = "Removed", isolated = "Isolated", mergedWithPrevious = "MergedWithPrevious"
        case mergedWithNext = "MergedWithNext", contiguous = "Contiguous"
    }

    enum PrependScheme: String { case always, first, never }

    enum PreTokenizerStep {
        case split(SplitPattern, SplitBehavior, invert: Bool)
        case byteLevel(addPrefixSpace: Bool, useRegex: Bool)
        case digits(individual: Bool)
        case metaspace(replacement: [UInt8], prepend: PrependScheme, split: Bool)
        case whitespaceSplit
    }

    enum DecoderStep {
        case byteLevel
        case replace(String, String)
        case byteFallback
        case fuse
        case strip(Character, start: Int, stop: Int)
        case metaspace(Character, stripFirst: Bool)
    }

    /// Everything a tokenizer file defines.
    struct Definition {
        var kind: String
        var model: BPEModel
        var addedTokens: [AddedToken] = []
        var normalizers: [NormalizerStep] = []
        var preTokenizers: [PreTokenizerStep] = []
        var decoders: [DecoderStep] = []
        var prefixIDs: [Int32] = []
        var suffixIDs: [Int32] = []
        var bosID: Int32?
        var eosID: Int32?
        var padID: Int32?
        var lossless: Bool
    }

    let model: BPEModel
    let added: [AddedToken]
    private let addedBytes: [[UInt8]]           // UTF-8 of each added token
    private let addedByFirstByte: [[Int]]       // [256] → indices into `added`, longest first
    let normalizers: [NormalizerStep]
    let preTokenizers: [PreTokenizerStep]
    private let decoders: [DecoderStep]
    let prefixIDs: [Int32]
    let suffixIDs: [Int32]
    let idToToken: [String]
    private let specialIDs: Set<Int32>
    private let tokenToID: [String: Int32]
    private let lock = NSLock()
    private let kind: String
    /// SentencePiece-style models without a pre-tokenizer see whole segments as one word.
    /// When no token has a "▁" right after another character, no merge can cross the
    /// boundary before such a "▁", so splitting there gives the same ids, faster and cached.
    let splitBeforeMetaspace: Bool

    public let vocabularySize: Int
    public let bosID: Int32?
    public let eosID: Int32?
    public let padID: Int32?
    public let isLossless: Bool
    public var addsBOS: Bool { bosID.map { prefixIDs.contains($0) } ?? false }
    public var summary: String { "\(kind), \(vocabularySize) ids" }

    init(_ d: Definition) {
        model = d.model
        added = d.addedTokens
        addedBytes = d.addedTokens.map { Array($0.content.utf8) }
        normalizers = d.normalizers
        preTokenizers = d.preTokenizers
        decoders = d.decoders
        prefixIDs = d.prefixIDs
        suffixIDs = d.suffixIDs
        bosID = d.bosID
        eosID = d.eosID
        padID = d.padID
        isLossless = d.lossless
        kind = d.kind
        var byFirst = [[Int]](repeating: [], count: 256)
        let addedList = d.addedTokens
        for (i, t) in addedList.enumerated() where !t.content.isEmpty {
            byFirst[Int(t.content.utf8.first!)].append(i)
        }
        for b in 0..<256 { byFirst[b].sort { addedList[$0].content.utf8.count > addedList[$1].content.utf8.count } }
        addedByFirstByte = byFirst
        var names = d.model.tokens
        let maxAdded = addedList.map { Int($0.id) }.max() ?? -1
        if maxAdded >= names.count { names += Array(repeating: "", count: maxAdded + 1 - names.count) }
        for t in addedList { names[Int(t.id)] = t.content }
        idToToken = names
        vocabularySize = names.count
        splitBeforeMetaspace = d.preTokenizers.isEmpty && !d.model.byteLevel && !d.model.tokens.contains { token in
            var previous: Unicode.Scalar?
            for c in token.unicodeScalars {
                if c == "\u{2581}", let p = previous, p != "\u{2581}" { return true }
                previous = c
            }
            return false
        }
        specialIDs = Set(addedList.filter(\.special).map(\.id))
        var lookup: [String: Int32] = [:]
        lookup.reserveCapacity(names.count)
        for (i, name) in names.enumerated() where lookup[name] == nil { lookup[name] = Int32(i) }
        tokenToID = lookup
    }

    public func id(forToken token: String) -> Int32? { tokenToID[token] }

    public func token(forID id: Int32) -> String? {
        id >= 0 && Int(id) < idToToken.count ? idToToken[Int(id)] : nil
    }

    // MARK: Encoding

    public func encode(_ text: String, addSpecialTokens: Bool, parseSpecial: Bool) -> [Int32] {
        lock.lock()
        defer { lock.unlock() }
        var out: [Int32] = []
        out.reserveCapacity(text.utf8.count / 3 + 4)
        if addSpecialTokens { out += prefixIDs }
        var text = text
        text.withUTF8 { buffer in
            guard let p = buffer.baseAddress, buffer.count > 0 else { return }
            splitOnAddedTokens(p, buffer.count, parseSpecial: parseSpecial, out: &out)
        }
        if addSpecialTokens { out += suffixIDs }
        return out
    }

    /// Finds added tokens (leftmost, longest first) and encodes the text between them.
    private func splitOnAddedTokens(_ p: UnsafePointer<UInt8>, _ n: Int, parseSpecial: Bool, out: inout [Int32]) {
        var segmentStart = 0
        var i = 0
        if !added.isEmpty {
            while i < n {
                let candidates = addedByFirstByte[Int(p[i])]
                if candidates.isEmpty { i += 1; continue }
                var found: AddedToken?
                var foundLength = 0
                for c in candidates {
                    let t = added[c]
                    if t.special && !parseSpecial { continue }
                    let len = addedBytes[c].count
                    guard i + len <= n else { continue }
                    guard addedBytes[c].withUnsafeBufferPointer({ memcmp($0.baseAddress!, p + i, len) == 0 }) else { continue }
                    if t.singleWord && !(isWordBoundary(p, n, before: i) && isWordBoundary(p, n, after: i + len)) { continue }
                    found = t
                    foundLength = len
                    break
                }
                guard let token = found else { i += 1; continue }
                var matchStart = i
                var matchEnd = i + foundLength
                if token.lstrip {
                    while matchStart > segmentStart, let (s, l) = scalarBefore(p, matchStart),
                          UnicodeClasses.shared.classOf(s) & CharClass.whitespace != 0 { matchStart -= l }
                }
                if token.rstrip {
                    while matchEnd < n {
                        let (s, l) = decodeUTF8(p, matchEnd)
                        if UnicodeClasses.shared.classOf(s) & CharClass.whitespace == 0 { break }
                        matchEnd += l
                    }
                }
                if matchStart > segmentStart { encodeSegment(p, segmentStart, matchStart, out: &out) }
                out.append(token.id)
                segmentStart = matchEnd
                i = matchEnd
            }
        }
        if n > segmentStart { encodeSegment(p, segmentStart, n, out: &out) }
    }

    private func scalarBefore(_ p: UnsafePointer<UInt8>, _ i: Int) -> (UInt32, Int)? {
        guard i > 0 else { return nil }
        var k = i - 1
        while k > 0 && p[k] & 0xC0 == 0x80 { k -= 1 }
        return (decodeUTF8(p, k).0, i - k)
    }

    private func isWordBoundary(_ p: UnsafePointer<UInt8>, _ n: Int, before i: Int) -> Bool {
        guard let (s, _) = scalarBefore(p, i) else { return true }
        return UnicodeClasses.shared.classOf(s) & (CharClass.letter | CharClass.number) == 0 && s != 0x5F
    }

    private func isWordBoundary(_ p: UnsafePointer<UInt8>, _ n: Int, after i: Int) -> Bool {
        guard i < n else { return true }
        let s = decodeUTF8(p, i).0
        return UnicodeClasses.shared.classOf(s) & (CharClass.letter | CharClass.number) == 0 && s != 0x5F
    }

    /// Normalizes then pre-tokenizes p[start..<end] and encodes each piece.
    private func encodeSegment(_ p: UnsafePointer<UInt8>, _ start: Int, _ end: Int, out: inout [Int32]) {
        if normalizers.isEmpty {
            preTokenize(0, p, start, end, atOrigin: start == 0, out: &out)
            return
        }
        var bytes = Array(UnsafeBufferPointer(start: p + start, count: end - start))
        for step in normalizers { bytes = normalize(bytes, step) }
        bytes.withUnsafeBufferPointer { b in
            if let base = b.baseAddress, b.count > 0 {
                preTokenize(0, base, 0, b.count, atOrigin: start == 0, out: &out)
            }
        }
    }

    private func normalize(_ bytes: [UInt8], _ step: NormalizerStep) -> [UInt8] {
        switch step {
        case .prepend(let prefix): return bytes.isEmpty ? bytes : prefix + bytes
        case .replace(let pattern, let content): return replaceAll(bytes, pattern, content)
        case .replaceRegex(let re, let template):
            let s = String(decoding: bytes, as: UTF8.self)
            let r = re.stringByReplacingMatches(in: s, range: NSRange(location: 0, length: (s as NSString).length),
                                                withTemplate: NSRegularExpression.escapedTemplate(for: template))
            return Array(r.utf8)
        case .nfc: return Array(String(decoding: bytes, as: UTF8.self).precomposedStringWithCanonicalMapping.utf8)
        case .nfd: return Array(String(decoding: bytes, as: UTF8.self).decomposedStringWithCanonicalMapping.utf8)
        case .nfkc: return Array(String(decoding: bytes, as: UTF8.self).precomposedStringWithCompatibilityMapping.utf8)
        case .nfkd: return Array(String(decoding: bytes, as: UTF8.self).decomposedStringWithCompatibilityMapping.utf8)
        case .lowercase: return Array(String(decoding: bytes, as: UTF8.self).lowercased().utf8)
        case .strip(let left, let right):
            var s = Substring(String(decoding: bytes, as: UTF8.self))
            if left { s = s.drop(while: { $0.isWhitespace }) }
            if right { while let last = s.last, last.isWhitespace { s = s.dropLast() } }
            return Array(s.utf8)
        }
    }

    /// Runs pre-tokenizer `step` on p[start..<end]; pieces flow to the next step, and after
    /// the last step to the model.
    private func preTokenize(_ step: Int, _ p: UnsafePointer<UInt8>, _ start: Int, _ end: Int, atOrigin: Bool,
                             out: inout [Int32]) {
        guard end > start else { return }
        guard step < preTokenizers.count else {
            if splitBeforeMetaspace {
                // Pieces start at each "▁" (E2 96 81) that follows another character.
                var pieceStart = start
                var i = start + 1
                while i + 2 < end {
                    if p[i] == 0xE2 && p[i + 1] == 0x96 && p[i + 2] == 0x81
                        && !(i - 3 >= pieceStart && p[i - 3] == 0xE2 && p[i - 2] == 0x96 && p[i - 1] == 0x81) {
                        model.encodeWord(p + pieceStart, i - pieceStart, into: &out)
                        pieceStart = i
                        i += 3
                    } else {
                        i += 1
                    }
                }
                model.encodeWord(p + pieceStart, end - pieceStart, into: &out)
                return
            }
            model.encodeWord(p + start, end - start, into: &out)
            return
        }
        switch preTokenizers[step] {
        case .byteLevel(let addPrefixSpace, let useRegex):
            if addPrefixSpace && p[start] != 0x20 {
                var spaced = [UInt8](repeating: 0x20, count: end - start + 1)
                spaced.withUnsafeMutableBufferPointer { b in
                    (b.baseAddress! + 1).update(from: p + start, count: end - start)
                    let q = UnsafePointer(b.baseAddress!)
                    if useRegex {
                        gpt2Matches(q, 0, b.count, UnicodeClasses.shared) { s, e in
                            preTokenize(step + 1, q, s, e, atOrigin: false, out: &out)
                        }
                    } else {
                        preTokenize(step + 1, q, 0, b.count, atOrigin: false, out: &out)
                    }
                }
            } else if useRegex {
                gpt2Matches(p, start, end, UnicodeClasses.shared) { s, e in
                    preTokenize(step + 1, p, s, e, atOrigin: atOrigin && s == start, out: &out)
                }
            } else {
                preTokenize(step + 1, p, start, end, atOrigin: atOrigin, out: &out)
            }

        case .split(let pattern, let behavior, let invert):
            switch pattern {
            case .gpt2 where behavior == .isolated && !invert:
                // These patterns match every character, so the matches are the pieces.
                gpt2Matches(p, start, end, UnicodeClasses.shared) { s, e in
                    preTokenize(step + 1, p, s, e, atOrigin: atOrigin && s == start, out: &out)
                }
            case .llama3 where behavior == .isolated && !invert:
                llama3Matches(p, start, end, UnicodeClasses.shared) { s, e in
                    preTokenize(step + 1, p, s, e, atOrigin: atOrigin && s == start, out: &out)
                }
            default:
                var matches: [(Int, Int)] = []
                pattern.forEachMatch(p, start, end) { s, e in matches.append((s, e)) }
                for (s, e) in pieces(start, end, matches, behavior, invert) {
                    preTokenize(step + 1, p, s, e, atOrigin: atOrigin && s == start, out: &out)
                }
            }

        case .digits(let individual):
            var matches: [(Int, Int)] = []
            var i = start
            while i < end {
                let (s, l) = decodeUTF8(p, i)
                if UnicodeClasses.shared.classOf(s) & CharClass.number != 0 {
                    if !individual, let last = matches.last, last.1 == i { matches[matches.count - 1].1 = i + l }
                    else { matches.append((i, i + l)) }
                }
                i += l
            }
            for (s, e) in pieces(start, end, matches, .isolated, false) {
                preTokenize(step + 1, p, s, e, atOrigin: atOrigin && s == start, out: &out)
            }

        case .whitespaceSplit:
            var i = start
            var pieceStart = -1
            while i < end {
                let (s, l) = decodeUTF8(p, i)
                if UnicodeClasses.shared.classOf(s) & CharClass.whitespace != 0 {
                    if pieceStart >= 0 { preTokenize(step + 1, p, pieceStart, i, atOrigin: atOrigin && pieceStart == start, out: &out) }
                    pieceStart = -1
                } else if pieceStart < 0 {
                    pieceStart = i
                }
                i += l
            }
            if pieceStart >= 0 { preTokenize(step + 1, p, pieceStart, end, atOrigin: atOrigin && pieceStart == start, out: &out) }

        case .metaspace(let replacement, let scheme, let split):
            var bytes = replaceAll(Array(UnsafeBufferPointer(start: p + start, count: end - start)), [0x20], replacement)
            let startsWithReplacement = bytes.starts(with: replacement)
            if !startsWithReplacement && (scheme == .always || (scheme == .first && atOrigin)) {
                bytes = replacement + bytes
            }
            bytes.withUnsafeBufferPointer { b in
                let q = b.baseAddress!
                if split {
                    var matches: [(Int, Int)] = []
                    SplitPattern.literal(replacement).forEachMatch(q, 0, b.count) { s, e in matches.append((s, e)) }
                    for (s, e) in pieces(0, b.count, matches, .mergedWithNext, false) {
                        preTokenize(step + 1, q, s, e, atOrigin: false, out: &out)
                    }
                } else {
                    preTokenize(step + 1, q, 0, b.count, atOrigin: false, out: &out)
                }
            }
        }
    }

    /// HF's SplitDelimiterBehavior applied to the matches of a pattern in [start, end).
    private func pieces(_ start: Int, _ end: Int, _ matches: [(Int, Int)], _ behavior: SplitBehavior,
                        _ invert: Bool) -> [(Int, Int)] {
        // Alternating spans covering [start, end), each flagged as a delimiter match or not.
        var spans: [(Int, Int, Bool)] = []
        var cursor = start
        for (s, e) in matches {
            if s > cursor { spans.append((cursor, s, invert)) }
            spans.append((s, e, !invert))
            cursor = e
        }
        if end > cursor { spans.append((cursor, end, invert)) }
        // The folds of HF's SplitDelimiterBehavior, span by span.
        var out: [(Int, Int)] = []
        switch behavior {
        case .removed:
            out = spans.filter { !$0.2 }.map { ($0.0, $0.1) }
        case .isolated:
            out = spans.map { ($0.0, $0.1) }
        case .mergedWithPrevious:
            var previousMatch = false
            for (s, e, isMatch) in spans {
                if isMatch && !previousMatch && !out.isEmpty { out[out.count - 1].1 = e } else { out.append((s, e)) }
                previousMatch = isMatch
            }
        case .mergedWithNext:
            var previousMatch = false
            for (s, e, isMatch) in spans.reversed() {
                if isMatch && !previousMatch && !out.isEmpty { out[out.count - 1].0 = s } else { out.append((s, e)) }
                previousMatch = isMatch
            }
            out.reverse()
        case .contiguous:
            var previousMatch = false
            for (s, e, isMatch) in spans {
                if isMatch == previousMatch && !out.isEmpty { out[out.count - 1].1 = e } else { out.append((s, e)) }
                previousMatch = isMatch
            }
        }
        return out.filter { $0.1 > $0.0 }
    }

    // MARK: Decoding

    public func decode(_ ids: [Int32], skipSpecialTokens: Bool) -> String {
        var tokens: [String] = []
        tokens.reserveCapacity(ids.count)
        for id in ids {
            guard id >= 0 && Int(id) < idToToken.count else { continue }
            if skipSpecialTokens && specialIDs.contains(id) { continue }
            tokens.append(idToToken[Int(id)])
        }
        if decoders.isEmpty { return tokens.joined(separator: " ") }
        for step in decoders { tokens = decodeStep(tokens, step) }
        return tokens.joined()
    }

    private func decodeStep(_ tokens: [String], _ step: DecoderStep) -> [String] {
        switch step {
        case .byteLevel:
            var bytes: [UInt8] = []
            for t in tokens {
                if let b = ByteLevel.bytes(of: t) { bytes += b } else { bytes += Array(t.utf8) }
            }
            return [String(decoding: bytes, as: UTF8.self)]
        case .replace(let pattern, let content):
            // Literal, scalar by scalar (Foundation's search would treat "▁" + a combining
            // mark as one unit).
            let p = Array(pattern.utf8), c = Array(content.utf8)
            return tokens.map { String(decoding: replaceAll(Array($0.utf8), p, c), as: UTF8.self) }
        case .byteFallback:
            var out: [String] = []
            var pending: [UInt8] = []
            func flush() {
                guard !pending.isEmpty else { return }
                if let s = String(validating: pending, as: UTF8.self) { out.append(s) }
                else { out.append(String(repeating: "\u{FFFD}", count: pending.count)) }
                pending = []
            }
            for t in tokens {
                if let b = byteTokenValue(t) { pending.append(b) } else { flush(); out.append(t) }
            }
            flush()
            return out
        case .fuse:
            return [tokens.joined()]
        case .strip(let c, let start, let stop):
            // On Unicode scalars, as Rust's chars: " " followed by a combining mark is still a space.
            let strip = c.unicodeScalars.first!
            return tokens.map { t in
                var scalars = Substring(t).unicodeScalars
                var k = 0
                while k < start, scalars.first == strip { scalars = scalars.dropFirst(); k += 1 }
                k = 0
                while k < stop, scalars.last == strip { scalars = scalars.dropLast(); k += 1 }
                return String(String.UnicodeScalarView(scalars))
            }
        case .metaspace(let replacement, let stripFirst):
            let r = replacement.unicodeScalars.first!
            return tokens.enumerated().map { i, t in
                var s = String.UnicodeScalarView()
                for scalar in t.unicodeScalars {
                    if scalar == r { if !(i == 0 && stripFirst) { s.append(" ") } } else { s.append(scalar) }
                }
                return String(s)
            }
        }
    }

    /// The byte of a `<0xNN>` token.
    private func byteTokenValue(_ t: String) -> UInt8? {
        let u = Array(t.utf8)
        guard u.count == 6, u[0] == UInt8(ascii: "<"), u[1] == UInt8(ascii: "0"), u[2] == UInt8(ascii: "x"),
              u[5] == UInt8(ascii: ">") else { return nil }
        return UInt8(String(decoding: u[3..<5], as: UTF8.self), radix: 16)
    }
}

/// Replaces every non-overlapping occurrence of `pattern`, left to right.
func replaceAll(_ bytes: [UInt8], _ pattern: [UInt8], _ content: [UInt8]) -> [UInt8] {
    guard !pattern.isEmpty, bytes.count >= pattern.count else { return bytes }
    var out: [UInt8] = []
    out.reserveCapacity(bytes.count + bytes.count / 4)
    var i = 0
    while i < bytes.count {
        if i + pattern.count <= bytes.count && bytes[i] == pattern[0]
            && (pattern.count == 1 || bytes[i..<(i + pattern.count)].elementsEqual(pattern)) {
            out += content
            i += pattern.count
        } else {
            out.append(bytes[i])
            i += 1
        }
    }
    return out
}
