// HashTables: open-addressing tables over raw memory for the tokenizer's hot loops:
// token-id pairs → merge, and byte strings → id (the vocabulary, the word cache).
import Foundation

/// (left id, right id) → (merge rank, merged id). Linear probing, power-of-two capacity.
final class PairTable {
    private let keys: UnsafeMutablePointer<UInt64>
    private let values: UnsafeMutablePointer<UInt64>
    private let mask: Int
    private(set) var count = 0
    private static let empty = UInt64.max

    init(capacity: Int) {
        var size = 16
        while size < capacity * 2 { size <<= 1 }
        mask = size - 1
        keys = .allocate(capacity: size)
        keys.initialize(repeating: Self.empty, count: size)
        values = .allocate(capacity: size)
        values.initialize(repeating: 0, count: size)
    }

    deinit {
        keys.deallocate()
        values.deallocate()
    }

    @inline(__always) private static func key(_ a: Int32, _ b: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: a)) << 32 | UInt64(UInt32(bitPattern: b))
    }

    @inline(__always) private func slot(_ key: UInt64) -> Int {
        Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> 32) & mask
    }

    /// Inserts or replaces (a later duplicate merge wins, as in HF tokenizers).
    func insert(_ a: Int32, _ b: Int32, rank: Int32, merged: Int32) {
        precondition(count * 2 < mask + 1, "PairTable is full")
        let k = Self.key(a, b)
        var i = slot(k)
        while keys[i] != Self.empty && keys[i] != k { i = (i + 1) & mask }
        if keys[i] == Self.empty { count += 1 }
        keys[i] = k
        values[i] = UInt64(UInt32(bitPattern: rank)) << 32 | UInt64(UInt32(bitPattern: merged))
    }

    /// The merge of (a, b): rank in the high 32 bits, merged id in the low 32 bits; nil if none.
    @inline(__always) func lookup(_ a: Int32, _ b: Int32) -> UInt64? {
        let k = Self.key(a, b)
        var i = slot(k)
        while true {
            let stored = keys[i]
            if stored == k { return values[i] }
            if stored == Self.empty { return nil }
            i = (i + 1) & mask
        }
    }
}

@inline(__always) func hashBytes(_ p: UnsafePointer<UInt8>, _ n: Int) -> UInt64 {
    var h: UInt64 = 0xCBF2_9CE4_8422_2325
    var i = 0
    while i + 8 <= n {
        let w = UnsafeRawPointer(p + i).loadUnaligned(as: UInt64.self)
        h = (h ^ w) &* 0x0000_0100_0000_01B3
        h ^= h >> 29
        i += 8
    }
    while i < n {
        h = (h ^ UInt64(p[i])) &* 0x0000_0100_0000_01B3
        i += 1
    }
    h ^= UInt64(n)
    h = (h ^ (h >> 31)) &* 0x7FB5_D329_728E_A185
    return h ^ (h >> 27)
}

/// Byte string → (Int32 offset, Int32 length) payload; keys are copied into an arena.
/// Used for the vocabulary (payload: id, 1) and the word cache (payload: ids in an arena).
final class ByteStringTable {
    private var hashes: UnsafeMutablePointer<UInt64>
    private var keyOffsets: UnsafeMutablePointer<Int32>   // -1 marks an empty slot
    private var keyLengths: UnsafeMutablePointer<Int32>
    private var payloads: UnsafeMutablePointer<UInt64>
    private var mask: Int
    private(set) var count = 0
    private var arena: UnsafeMutablePointer<UInt8>
    private var arenaCount = 0
    private var arenaCapacity: Int

    /// `size` empty slots (a power of two).
    private static func slots(_ size: Int) -> (UnsafeMutablePointer<UInt64>, UnsafeMutablePointer<Int32>,
                                               UnsafeMutablePointer<Int32>, UnsafeMutablePointer<UInt64>) {
        let offsets = UnsafeMutablePointer<Int32>.allocate(capacity: size)
        offsets.initialize(repeating: -1, count: size)
        return (.allocate(capacity: size), offsets, .allocate(capacity: size), .allocate(capacity: size))
    }

    init(capacity: Int = 1024) {
        var size = 16
        while size < capacity * 2 { size <<= 1 }
        mask = size - 1
        (hashes, keyOffsets, keyLengths, payloads) = Self.slots(size)
        arenaCapacity = max(1024, capacity * 8)
        arena = .allocate(capacity: arenaCapacity)
    }

    deinit {
        hashes.deallocate(); keyOffsets.deallocate(); keyLengths.deallocate(); payloads.deallocate()
        arena.deallocate()
    }

    @inline(__always) func lookup(_ p: UnsafePointer<UInt8>, _ n: Int) -> UInt64? {
        lookup(p, n, hash: hashBytes(p, n))
    }

    @inline(__always) func lookup(_ p: UnsafePointer<UInt8>, _ n: Int, hash h: UInt64) -> UInt64? {
        var i = Int(truncatingIfNeeded: h) & mask
        while true {
            let off = keyOffsets[i]
            if off < 0 { return nil }
            if hashes[i] == h && Int(keyLengths[i]) == n && memcmp(arena + Int(off), p, n) == 0 { return payloads[i] }
            i = (i + 1) & mask
        }
    }

    func insert(_ p: UnsafePointer<UInt8>, _ n: Int, payload: UInt64) {
        insert(p, n, hash: hashBytes(p, n), payload: payload)
    }

    /// Inserts or replaces.
    func insert(_ p: UnsafePointer<UInt8>, _ n: Int, hash h: UInt64, payload: UInt64) {
        if (count + 1) * 2 > mask + 1 { grow() }
        var i = Int(truncatingIfNeeded: h) & mask
        while true {
            let off = keyOffsets[i]
            if off < 0 { break }
            if hashes[i] == h && Int(keyLengths[i]) == n && memcmp(arena + Int(off), p, n) == 0 {
                payloads[i] = payload
                return
            }
            i = (i + 1) & mask
        }
        if arenaCount + n > arenaCapacity {
            var newCapacity = arenaCapacity * 2
            while arenaCount + n > newCapacity { newCapacity *= 2 }
            let a = UnsafeMutablePointer<UInt8>.allocate(capacity: newCapacity)
            a.update(from: arena, count: arenaCount)
            arena.deallocate()
            arena = a
            arenaCapacity = newCapacity
        }
        (arena + arenaCount).update(from: p, count: n)
        hashes[i] = h
        keyOffsets[i] = Int32(arenaCount)
        keyLengths[i] = Int32(n)
        payloads[i] = payload
        arenaCount += n
        count += 1
    }

    private func grow() {
        let oldSize = mask + 1
        let (oh, oo, ol, op) = (hashes, keyOffsets, keyLengths, payloads)
        let size = oldSize * 2
        mask = size - 1
        (hashes, keyOffsets, keyLengths, payloads) = Self.slots(size)
        for s in 0..<oldSize where oo[s] >= 0 {
            var i = Int(truncatingIfNeeded: oh[s]) & mask
            while keyOffsets[i] >= 0 { i = (i + 1) & mask }
            hashes[i] = oh[s]; keyOffsets[i] = oo[s]; keyLengths[i] = ol[s]; payloads[i] = op[s]
        }
        oh.deallocate(); oo.deallocate(); ol.deallocate(); op.deallocate()
    }
}
