// ParameterPartition: which rank owns which part of the flat parameter buffer under ZeRO-1
// (it keeps those parameters' AdamW moments and updates them). Whole tensors, one
// contiguous range per rank in rank order, balanced by element count: every gradient bucket
// then meets the ranks' ranges in rank order, so one reduce-scatter per bucket delivers each
// rank its owned part, and a checkpoint's per-tensor moment datasets keep their format.

public struct ParameterPartition: Sendable, Equatable {
    /// Rank r owns `ranges[r]`; the ranges cover the buffer in order (some may be empty).
    public let ranges: [Range<Int>]

    /// Each tensor goes to the rank whose equal share its midpoint falls in.
    public init(layout: ParameterLayout, ranks: Int) {
        precondition(ranks >= 1, "a partition needs at least one rank")
        let total = Double(max(layout.count, 1))
        var ends = [Int](repeating: 0, count: ranks)
        for tensor in layout.tensors {
            let midpoint = Double(tensor.offset) + Double(tensor.count) / 2
            let owner = min(ranks - 1, Int(midpoint / total * Double(ranks)))
            ends[owner] = tensor.range.upperBound
        }
        // A rank given no tensor owns the empty range where its predecessor's ends.
        var lower = 0
        var ranges: [Range<Int>] = []
        for r in 0..<ranks {
            let upper = max(ends[r], lower)
            ranges.append(lower..<upper)
            lower = upper
        }
        ranges[ranks - 1] = ranges[ranks - 1].lowerBound..<layout.count
        self.ranges = ranges
    }

    public var ranks: Int { ranges.count }

    /// The rank whose range holds `tensor`.
    public func owner(of tensor: TensorSpec) -> Int {
        ranges.firstIndex { $0.contains(tensor.offset) }!
    }

    /// How many elements of `range` each rank owns, in rank order (they sum to its count).
    public func counts(of range: Range<Int>) -> [Int] {
        ranges.map { owned in max(0, min(owned.upperBound, range.upperBound) - max(owned.lowerBound, range.lowerBound)) }
    }
}
