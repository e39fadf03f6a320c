// XXH64: the 64-bit xxHash digest (seed 0), stored with every checkpoint dataset and
// verified on load. Several GB/s, so checking costs far less than the disk; the same
// value as Python's `xxhash.xxh64(data).intdigest()`.

public enum XXH64 {
    static let p1: UInt64 = 11_400_714_785_074_694_791
    static let p2: UInt64 = 14_029_467_366_897_019_727
    static let p3: UInt64 = 1_609_587_929_392_839_161
    static let p4: UInt64 = 9_650_029_242_287_828_579
    static let p5: UInt64 = 2_870_177_450_012_600_261

    @inline(__always) static func rotl(_ x: UInt64, _ r: UInt64) -> UInt64 { (x << r) | (x >> (64 - r)) }

    @inline(__always) static func round(_ acc: UInt64, _ input: UInt64) -> UInt64 {
        rotl(acc &+ input &* p2, 31) &* p1
    }

    @inline(__always) static func merge(_ acc: UInt64, _ value: UInt64) -> UInt64 {
        (acc ^ round(0, value)) &* p1 &+ p4
    }

    public static func digest(_ data: UnsafeRawPointer, count: Int) -> UInt64 {
        var p = 0
        var h: UInt64
        @inline(__always) func read64(_ at: Int) -> UInt64 { UInt64(littleEndian: (data + at).loadUnaligned(as: UInt64.self)) }
        if count >= 32 {
            var v1 = p1 &+ p2, v2 = p2, v3: UInt64 = 0, v4 = 0 &- p1
            while p + 32 <= count {
                v1 = round(v1, read64(p))
                v2 = round(v2, read64(p + 8))
                v3 = round(v3, read64(p + 16))
                v4 = round(v4, read64(p + 24))
                p += 32
            }
            h = rotl(v1, 1) &+ rotl(v2, 7) &+ rotl(v3, 12) &+ rotl(v4, 18)
            h = merge(merge(merge(merge(h, v1), v2), v3), v4)
        } else {
            h = p5
        }
        h &+= UInt64(count)
        while p + 8 <= count {
            h = rotl(h ^ round(0, read64(p)), 27) &* p1 &+ p4
            p += 8
        }
        if p + 4 <= count {
            h = rotl(h ^ (UInt64(UInt32(littleEndian: (data + p).loadUnaligned(as: UInt32.self))) &* p1), 23) &* p2 &+ p3
            p += 4
        }
        while p < count {
            h = rotl(h ^ (UInt64(data.load(fromByteOffset: p, as: UInt8.self)) &* p5), 11) &* p1
            p += 1
        }
        h ^= h >> 33
        h &*= p2
        h ^= h >> 29
        h &*= p3
        h ^= h >> 32
        return h
    }
}
