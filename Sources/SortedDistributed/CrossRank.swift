// CrossRank: what ranks decide together, over any Communicator — agreeing on a failure,
// sharing rank 0's string, checking that every rank holds the same values (and the checksum
// they compare), the element-wise maximum over ranks.
extension Communicator {
    /// Runs `body` on every rank, then agrees on failure: when any rank failed, every rank
    /// throws `failure(first, error)`, where `first` is the lowest failing rank and `error`
    /// is this rank's own error on that rank (nil on every other rank).
    public func agreed<T>(_ body: () throws -> T, failure: (_ first: Int, _ error: Error?) -> Error) throws -> T {
        var result: T?
        var caught: Error?
        do { result = try body() } catch { caught = error }
        var failed = [Double](repeating: 0, count: size)
        if caught != nil { failed[rank] = 1 }
        try allReduceSum(&failed)
        if let first = failed.firstIndex(where: { $0 > 0 }) {
            throw failure(first, first == rank ? caught : nil)
        }
        return result!
    }

    /// Rank `root`'s optional string on every rank.
    public func broadcast(_ value: String?, root: Int = 0) throws -> String? {
        var bytes = Array((value ?? "").utf8)
        var header: [Int64] = [value == nil ? -1 : Int64(bytes.count)]
        try header.withUnsafeMutableBytes { try broadcast($0.baseAddress!, bytes: 8, root: root) }
        guard header[0] >= 0 else { return nil }
        bytes = bytes.count == Int(header[0]) ? bytes : [UInt8](repeating: 0, count: Int(header[0]))
        if !bytes.isEmpty {
            try bytes.withUnsafeMutableBytes { try broadcast($0.baseAddress!, bytes: $0.count, root: root) }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// Checks that every rank holds the same values: rank 0's are broadcast and compared
    /// exactly, the mismatch flags summed. When some rank differs, every rank throws
    /// `failure(first)` with the lowest such rank.
    public func verifyIdentical(_ values: [Int64], failure: (_ first: Int) -> Error) throws {
        var reference = values
        try reference.withUnsafeMutableBytes { try broadcast($0.baseAddress!, bytes: $0.count, root: 0) }
        var mismatched = [Double](repeating: 0, count: size)
        if reference != values { mismatched[rank] = 1 }
        try allReduceSum(&mismatched)
        if let first = mismatched.firstIndex(where: { $0 > 0 }) { throw failure(first) }
    }

    /// FNV-1a over the floats' bytes, folded to 32 bits so sums of it are exact in Double:
    /// what `verifyIdentical` compares for a buffer.
    public func checksum(_ values: UnsafeBufferPointer<Float>) -> UInt32 {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for value in values {
            hash = (hash ^ UInt64(value.bitPattern)) &* 0x100_0000_01b3
        }
        return UInt32(truncatingIfNeeded: hash ^ (hash >> 32))
    }

    /// Element-wise maximum over ranks, from sums of a one-hot layout.
    public func maximum(_ values: [Double]) throws -> [Double] {
        var all = [Double](repeating: 0, count: values.count * size)
        for (i, v) in values.enumerated() { all[rank * values.count + i] = v }
        try allReduceSum(&all)
        return values.indices.map { i in (0..<size).map { all[$0 * values.count + i] }.max()! }
    }
}
