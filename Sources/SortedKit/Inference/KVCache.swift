// KVCache: the keys and values of every layer for a set of sequence slots, so a new token
// attends to what came before without recomputing it. Layout [slot][layer][Hkv][capacity][Dh]
// for K and for V: one head's positions are contiguous rows, what decode attention reads.
// Every layer of a slot has its own length: a self-speculative draft runs ahead in the
// shallow layers while the deep ones still hold only the verified tokens.

public final class KVCache {
    public let slots: Int
    public let layers: Int
    public let kvHeads: Int       // Hkv
    public let headDim: Int       // Dh
    /// Positions each (slot, layer) can hold.
    public let capacity: Int
    let keys: FloatBuffer
    let values: FloatBuffer
    private var lengths: [Int]    // [slot · layers + layer]

    public init(slots: Int, layers: Int, kvHeads: Int, headDim: Int, capacity: Int) {
        precondition(slots > 0 && layers > 0 && capacity > 0, "KVCache: empty shape")
        self.slots = slots
        self.layers = layers
        self.kvHeads = kvHeads
        self.headDim = headDim
        self.capacity = capacity
        let count = slots * layers * kvHeads * capacity * headDim
        // Positions are read only up to what was stored: no zeroing, so a slot's memory is
        // taken as it fills.
        keys = FloatBuffer(count: count, zeroed: false)
        values = FloatBuffer(count: count, zeroed: false)
        lengths = [Int](repeating: 0, count: slots * layers)
    }

    public func length(slot: Int, layer: Int) -> Int { lengths[slot * layers + layer] }

    /// Positions held by every layer in `layers` of the slot (the shortest of them).
    public func committedLength(slot: Int, layers range: Range<Int>? = nil) -> Int {
        (range ?? 0..<layers).map { length(slot: slot, layer: $0) }.min() ?? 0
    }

    /// Forgets positions from `count` on in every layer of the slot (a rejected draft).
    public func truncate(slot: Int, to count: Int) {
        for l in 0..<layers { lengths[slot * layers + l] = min(lengths[slot * layers + l], count) }
    }

    public func reset(slot: Int) { truncate(slot: slot, to: 0) }

    func advance(slot: Int, layer: Int, by n: Int) {
        lengths[slot * layers + layer] += n
    }

    /// Key row of position 0 of head g in (slot, layer); rows are Dh apart.
    @inline(__always)
    func keyBase(slot: Int, layer: Int, head g: Int) -> UnsafeMutablePointer<Float> {
        keys.pointer + (((slot * layers + layer) * kvHeads + g) * capacity) * headDim
    }

    @inline(__always)
    func valueBase(slot: Int, layer: Int, head g: Int) -> UnsafeMutablePointer<Float> {
        values.pointer + (((slot * layers + layer) * kvHeads + g) * capacity) * headDim
    }
}
