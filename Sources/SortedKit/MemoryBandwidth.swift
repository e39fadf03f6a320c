// MemoryBandwidth: the machine's reference figure for memory-bound work. Batch-1 decoding
// reads every weight once per token, so its speed limit is this bandwidth divided by the
// bytes read per token.
import Dispatch

public enum MemoryBandwidth {
    /// Best-of-`repeats` read bandwidth in GB/s (1e9 bytes): every worker sums its share of
    /// a buffer far larger than the caches, with the SIMD loads the kernels use.
    public static func measureRead(megabytes: Int = 512, repeats: Int = 5) -> Double {
        let count = megabytes << 18   // floats
        let buffer = FloatBuffer(count: count)
        for i in stride(from: 0, to: count, by: 1024) { buffer[i] = 1 }   // touch every page
        let workers = Parallel.workers
        var best = 0.0
        var sink: Float = 0
        for _ in 0..<(repeats + 1) {
            var partial = [Float](repeating: 0, count: workers)
            let start = ContinuousClock.now
            partial.withUnsafeMutableBufferPointer { out in
                DispatchQueue.concurrentPerform(iterations: workers) { w in
                    let lo = count * w / workers, hi = count * (w + 1) / workers
                    var acc = Float8(), i = lo
                    while i + 32 <= hi {
                        let p = buffer.pointer + i
                        acc += load8(p) + load8(p + 8) + load8(p + 16) + load8(p + 24)
                        i += 32
                    }
                    out[w] = acc.sum()
                }
            }
            let seconds = (ContinuousClock.now - start).seconds
            sink += partial.reduce(0, +)
            best = max(best, Double(count * 4) / seconds / 1e9)
        }
        precondition(sink.isFinite)
        return best
    }
}
