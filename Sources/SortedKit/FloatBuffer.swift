// FloatBuffer: one owned, 64-byte aligned, zero-initialised (by default) run of Float32.
// Parameters, gradients, AdamW moments and activations all live in these, so hot loops
// work on raw pointers and never touch Swift arrays.

public final class FloatBuffer: @unchecked Sendable {
    public let count: Int
    public let pointer: UnsafeMutablePointer<Float>

    /// zeroed false leaves the values unset: for a buffer read only where it was written (a KV
    /// cache), whose pages then take memory only once used.
    public init(count: Int, zeroed: Bool = true) {
        precondition(count >= 0, "FloatBuffer count must be non-negative")
        self.count = count
        let raw = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1) * 4, alignment: 64)
        pointer = raw.bindMemory(to: Float.self, capacity: max(count, 1))
        if zeroed { pointer.initialize(repeating: 0, count: max(count, 1)) }
    }

    deinit { pointer.deallocate() }

    public func zero() { pointer.update(repeating: 0, count: count) }

    public subscript(index: Int) -> Float {
        get { pointer[index] }
        set { pointer[index] = newValue }
    }

    /// A copy of `count` values starting at `offset`, for tests and export.
    public func array(offset: Int = 0, count n: Int? = nil) -> [Float] {
        let length = n ?? (count - offset)
        return Array(UnsafeBufferPointer(start: pointer + offset, count: length))
    }

    public func copy(from other: FloatBuffer) {
        precondition(other.count == count, "FloatBuffer size mismatch")
        pointer.update(from: other.pointer, count: count)
    }

    public func copy(from values: [Float], offset: Int = 0) {
        precondition(offset + values.count <= count, "FloatBuffer write out of range")
        values.withUnsafeBufferPointer { (pointer + offset).update(from: $0.baseAddress!, count: values.count) }
    }
}
