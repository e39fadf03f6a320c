// Parallel: elementwise work split into pieces run on the cores. Reductions use fixed
// blocks summed in order, so their result never depends on the thread count or scheduling.
import Dispatch
import Foundation

enum Parallel {
    /// Threads for elementwise kernels: OPENBLAS_NUM_THREADS when set (ranks sharing a
    /// machine set it to cores/ranks), else the active cores.
    static let workers: Int = {
        if let value = ProcessInfo.processInfo.environment["OPENBLAS_NUM_THREADS"], let n = Int(value), n > 0 {
            return n
        }
        return ProcessInfo.processInfo.activeProcessorCount
    }()

    /// Runs body(range) over consecutive ranges covering 0..<count, each at least `grain`
    /// long, on up to `workers` threads.
    static func forEachRange(_ count: Int, grain: Int = 16_384, _ body: (Range<Int>) -> Void) {
        let pieces = min(workers, max(1, count / grain))
        if pieces == 1 {
            body(0..<count)
            return
        }
        DispatchQueue.concurrentPerform(iterations: pieces) { p in
            body((count * p / pieces)..<(count * (p + 1) / pieces))
        }
    }

    /// Σ of body(block) over fixed blocks of `block` elements, added in block order.
    static func sumBlocks(_ count: Int, block: Int = 1 << 16, _ body: (Range<Int>) -> Double) -> Double {
        let blocks = (count + block - 1) / block
        guard blocks > 1 else { return count > 0 ? body(0..<count) : 0 }
        var partial = [Double](repeating: 0, count: blocks)
        partial.withUnsafeMutableBufferPointer { out in
            forEachRange(blocks, grain: 1) { range in
                for b in range { out[b] = body((b * block)..<min(count, (b + 1) * block)) }
            }
        }
        return partial.reduce(0, +)
    }
}
