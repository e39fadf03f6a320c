// BPEModel: the byte-pair-encoding model of HF `tokenizers` (merge ranks, byte fallback,
// unknown-token fusing, ignore_merges), applied to one pre-tokenized word at a time.
import Foundation

/// One merge rule as token strings, in rank order (rank = index).
struct MergeRule {
    let left: String
    let right: String
}

final class BPEModel {
    /// Token strings as the file spells them (byte-level tokens in the GPT-2 alphabet).
    let tokens: [String]
    /// Whether the pre-tokenizer maps bytes to the GPT-2 alphabet; then the vocabulary is
    /// keyed by raw bytes and every byte starts as its own symbol.
    let byteLevel: Bool
    let ignoreMerges: Bool
    let unknownID: Int32?
    let fuseUnknown: Bool
    /// The merge rules and ranks as given (kept to write the tokenizer back, e.g. to GGUF).
    let mergeIDs: [(Int32, Int32, Int32)]
    let mergeRanks: [Int32]?
    let byteFallback: Bool

    private let vocab: ByteStringTable          // model bytes → id
    private let merges: PairTable               // (a, b) → rank, merged id
    private let byteSymbols: UnsafeMutablePointer<Int32>    // [256] byte-level initial ids, -1 if absent
    private let fallbackIDs: UnsafeMutablePointer<Int32>?   // [256] ids of <0xNN>, when byte_fallback

    // Word cache: piece bytes → ids stored in `cacheIDs`.
    private let cache = ByteStringTable(capacity: 1 << 14)
    private var cacheIDs: UnsafeMutablePointer<Int32>
    private var cacheIDCount = 0
    private var cacheIDCapacity = 1 << 16
    private static let cacheLimit = 1 << 17            // entries; the cache stops growing there
    private static let cacheWordLimit = 128            // bytes; longer words are not cached

    // Scratch for one word.
    private var symbols: UnsafeMutablePointer<Int32>
    private var pairs: UnsafeMutablePointer<UInt64>
    private var scratchCapacity = 256

    /// - Parameters:
    ///   - modelBytes: for each token, the bytes the model matches (raw bytes when byteLevel);
    ///     nil for a token merges can never produce (an added token outside the byte alphabet).
    ///   - mergeIDs: merge rules as (left id, right id, merged id) in rank order; `ranks` gives
    ///     an explicit rank per rule (equal ranks resolve to the leftmost pair).
    init(tokens: [String], modelBytes: [[UInt8]?], mergeIDs: [(Int32, Int32, Int32)], ranks: [Int32]? = nil,
         byteLevel: Bool, byteFallback: Bool, unknownID: Int32?, fuseUnknown: Bool, ignoreMerges: Bool) {
        self.tokens = tokens
        self.byteLevel = byteLevel
        self.unknownID = unknownID
        self.fuseUnknown = fuseUnknown
        self.ignoreMerges = ignoreMerges
        self.mergeIDs = mergeIDs
        self.mergeRanks = ranks
        self.byteFallback = byteFallback
        let vocab = ByteStringTable(capacity: max(16, tokens.count))
        for (id, bytes) in modelBytes.enumerated() {
            guard let bytes, !bytes.isEmpty else { continue }
            bytes.withUnsafeBufferPointer { vocab.insert($0.baseAddress!, bytes.count, payload: UInt64(id)) }
        }
        self.vocab = vocab
        let merges = PairTable(capacity: max(16, mergeIDs.count))
        for (rank, m) in mergeIDs.enumerated() {
            merges.insert(m.0, m.1, rank: ranks?[rank] ?? Int32(rank), merged: m.2)
        }
        self.merges = merges
        byteSymbols = .allocate(capacity: 256)
        byteSymbols.initialize(repeating: -1, count: 256)
        for b in 0..<256 {
            var byte = UInt8(b)
            if let id = vocab.lookup(&byte, 1) { byteSymbols[b] = Int32(truncatingIfNeeded: id) }
        }
        if byteFallback {
            let f = UnsafeMutablePointer<Int32>.allocate(capacity: 256)
            f.initialize(repeating: -1, count: 256)
            for b in 0..<256 {
                let name = Array(String(format: "<0x%02X>", b).utf8)
                if let id = name.withUnsafeBufferPointer({ vocab.lookup($0.baseAddress!, $0.count) }) { f[b] = Int32(truncatingIfNeeded: id) }
            }
            fallbackIDs = f
        } else {
            fallbackIDs = nil
        }
        cacheIDs = .allocate(capacity: cacheIDCapacity)
        symbols = .allocate(capacity: scratchCapacity)
        pairs = .allocate(capacity: scratchCapacity)
    }

    deinit {
        byteSymbols.deallocate()
        fallbackIDs?.deallocate()
        cacheIDs.deallocate()
        symbols.deallocate()
        pairs.deallocate()
    }

    var vocabularySize: Int { tokens.count }

    /// The id of a token given by its model bytes.
    func id(modelBytes: [UInt8]) -> Int32? {
        modelBytes.withUnsafeBufferPointer { b in
            vocab.lookup(b.baseAddress ?? UnsafePointer(bitPattern: 1)!, b.count).map { Int32(truncatingIfNeeded: $0) }
        }
    }

    private func reserveScratch(_ n: Int) {
        guard n > scratchCapacity else { return }
        symbols.deallocate(); pairs.deallocate()
        scratchCapacity = max(n, scratchCapacity * 2)
        symbols = .allocate(capacity: scratchCapacity)
        pairs = .allocate(capacity: scratchCapacity)
    }

    /// Appends the ids of the word p[0..<n] to `out`.
    func encodeWord(_ p: UnsafePointer<UInt8>, _ n: Int, into out: inout [Int32]) {
        guard n > 0 else { return }
        let h = hashBytes(p, n)
        if ignoreMerges, let id = vocab.lookup(p, n, hash: h) {
            out.append(Int32(truncatingIfNeeded: id))
            return
        }
        if let entry = cache.lookup(p, n, hash: h) {
            let offset = Int(entry >> 32), count = Int(entry & 0xFFFF_FFFF)
            out.append(contentsOf: UnsafeBufferPointer(start: cacheIDs + offset, count: count))
            return
        }
        let count = initialSymbols(p, n)
        let merged = count > 48 ? mergeLong(count) : mergeShort(count)
        out.append(contentsOf: UnsafeBufferPointer(start: symbols, count: merged))
        if n <= Self.cacheWordLimit && cache.count < Self.cacheLimit {
            if cacheIDCount + merged > cacheIDCapacity {
                let bigger = UnsafeMutablePointer<Int32>.allocate(capacity: cacheIDCapacity * 2)
                bigger.update(from: cacheIDs, count: cacheIDCount)
                cacheIDs.deallocate()
                cacheIDs = bigger
                cacheIDCapacity *= 2
            }
            (cacheIDs + cacheIDCount).update(from: symbols, count: merged)
            cache.insert(p, n, hash: h, payload: UInt64(cacheIDCount) << 32 | UInt64(merged))
            cacheIDCount += merged
        }
    }

    /// Splits the word into its first symbols (bytes, or characters with byte fallback and
    /// unknown handling as HF's BPE::merge_word does). Returns the symbol count.
    private func initialSymbols(_ p: UnsafePointer<UInt8>, _ n: Int) -> Int {
        reserveScratch(n + 1)
        var count = 0
        if byteLevel {
            for i in 0..<n {
                let id = byteSymbols[Int(p[i])]
                if id >= 0 { symbols[count] = id; count += 1 }
                else if let unk = unknownID {
                    if !(fuseUnknown && count > 0 && symbols[count - 1] == unk) { symbols[count] = unk; count += 1 }
                }
            }
            return count
        }
        var pendingUnknown = false
        var i = 0
        while i < n {
            let len = min(utf8Length(p[i]), n - i)
            if let id = vocab.lookup(p + i, len) {
                if pendingUnknown { symbols[count] = unknownID!; count += 1; pendingUnknown = false }
                symbols[count] = Int32(truncatingIfNeeded: id); count += 1
            } else if let fallback = fallbackIDs, (0..<len).allSatisfy({ fallback[Int(p[i + $0])] >= 0 }) {
                // As in HF, byte tokens do not flush a pending unknown token.
                for k in 0..<len { symbols[count] = fallback[Int(p[i + k])]; count += 1 }
            } else if let unk = unknownID {
                if pendingUnknown && !fuseUnknown { symbols[count] = unk; count += 1 }
                pendingUnknown = true
            }
            i += len
        }
        if pendingUnknown { symbols[count] = unknownID!; count += 1 }
        return count
    }

    /// Merges by rank, lowest rank first and leftmost on ties, for short words: an O(n²) scan
    /// over a pair-rank array is cheaper than a heap there.
    private func mergeShort(_ n: Int) -> Int {
        guard n > 1 else { return n }
        let none = UInt64.max
        var count = n
        for i in 0..<(count - 1) { pairs[i] = merges.lookup(symbols[i], symbols[i + 1]) ?? none }
        while true {
            var best = -1
            var bestRank = none
            for i in 0..<(count - 1) where pairs[i] >> 32 < bestRank >> 32 {
                best = i
                bestRank = pairs[i]
            }
            if best < 0 { break }
            symbols[best] = Int32(truncatingIfNeeded: bestRank & 0xFFFF_FFFF)
            // Remove symbol best+1 and pair best+1.
            var k = best + 1
            while k < count - 1 { symbols[k] = symbols[k + 1]; k += 1 }
            k = best + 1
            while k < count - 2 { pairs[k] = pairs[k + 1]; k += 1 }
            count -= 1
            if best > 0 { pairs[best - 1] = merges.lookup(symbols[best - 1], symbols[best]) ?? none }
            if best < count - 1 { pairs[best] = merges.lookup(symbols[best], symbols[best + 1]) ?? none }
        }
        return count
    }

    /// HF's heap-based merge (Word::merge_all) for long words: O(n log n).
    private func mergeLong(_ n: Int) -> Int {
        var prev = [Int32](repeating: -1, count: n)
        var next = [Int32](repeating: -1, count: n)
        var alive = [Bool](repeating: true, count: n)
        for i in 0..<n { prev[i] = Int32(i - 1); next[i] = i + 1 < n ? Int32(i + 1) : -1 }
        var heap = MergeHeap()
        for i in 0..<(n - 1) {
            if let m = merges.lookup(symbols[i], symbols[i + 1]) {
                heap.push(.init(rank: UInt32(m >> 32), pos: Int32(i), merged: Int32(truncatingIfNeeded: m & 0xFFFF_FFFF)))
            }
        }
        while let top = heap.pop() {
            let pos = Int(top.pos)
            guard alive[pos], next[pos] >= 0 else { continue }
            let right = Int(next[pos])
            guard let m = merges.lookup(symbols[pos], symbols[right]), Int32(truncatingIfNeeded: m & 0xFFFF_FFFF) == top.merged else { continue }
            symbols[pos] = top.merged
            alive[right] = false
            next[pos] = next[right]
            if next[right] >= 0 { prev[Int(next[right])] = Int32(pos) }
            if prev[pos] >= 0, let m = merges.lookup(symbols[Int(prev[pos])], symbols[pos]) {
                heap.push(.init(rank: UInt32(m >> 32), pos: prev[pos], merged: Int32(truncatingIfNeeded: m & 0xFFFF_FFFF)))
            }
            if next[pos] >= 0, let m = merges.lookup(symbols[pos], symbols[Int(next[pos])]) {
                heap.push(.init(rank: UInt32(m >> 32), pos: Int32(pos), merged: Int32(truncatingIfNeeded: m & 0xFFFF_FFFF)))
            }
        }
        var count = 0
        for i in 0..<n where alive[i] { symbols[count] = symbols[i]; count += 1 }
        return count
    }

    /// For tests: merge a word with the heap algorithm regardless of its length.
    func encodeWordWithHeap(_ bytes: [UInt8]) -> [Int32] {
        bytes.withUnsafeBufferPointer { b in
            let count = initialSymbols(b.baseAddress!, b.count)
            let merged = count > 1 ? mergeLong(count) : count
            return Array(UnsafeBufferPointer(start: symbols, count: merged))
        }
    }

    /// For tests: merge a word with the short-word scan regardless of its length.
    func encodeWordWithScan(_ bytes: [UInt8]) -> [Int32] {
        bytes.withUnsafeBufferPointer { b in
            let count = initialSymbols(b.baseAddress!, b.count)
            let merged = mergeShort(count)
            return Array(UnsafeBufferPointer(start: symbols, count: merged))
        }
    }
}

/// A min-heap of pending merges ordered by (rank, position).
private struct MergeHeap {
    struct Entry {
        let rank: UInt32
        let pos: Int32
        let merged: Int32
        @inline(__always) static func < (a: Entry, b: Entry) -> Bool { a.rank != b.rank ? a.rank < b.rank : a.pos < b.pos }
    }
    private var items: [Entry] = []

    mutating func push(_ e: Entry) {
        items.append(e)
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            if !(items[i] < items[parent]) { break }
            items.swapAt(i, parent)
            i = parent
        }
    }

    mutating func pop() -> Entry? {
        guard !items.isEmpty else { return nil }
        let top = items[0]
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < items.count && items[l] < items[m] { m = l }
                if r < items.count && items[r] < items[m] { m = r }
                if m == i { break }
                items.swapAt(i, m)
                i = m
            }
        }
        return top
    }
}
