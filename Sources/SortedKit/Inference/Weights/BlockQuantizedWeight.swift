// BlockQuantizedWeight: a matrix stored in one of GGUF's block formats (32 values a block
// along each row, in the layout llama.cpp reads), multiplied by the C kernels of its codec:
// the activation rows are quantized to 8 bits per block once per call (llama.cpp's scheme),
// then integer dot products over blocks, split over the cores by weight rows.
import CQuant

/// What a block format brings: its bytes per row, its quantizer and its kernel.
struct BlockCodec: Sendable {
    let format: WeightFormat
    let rowBytes: @Sendable (Int) -> Int
    let quantize: @Sendable (UnsafePointer<Float>, UnsafeMutableRawPointer, Int) -> Void
    let dequantize: @Sendable (UnsafeRawPointer, UnsafeMutablePointer<Float>, Int) -> Void
    /// How activations are quantized for this format's dot products (Q8_0, or Q8_1 with sums).
    let activationRowBytes: @Sendable (Int) -> Int
    let quantizeActivations: @Sendable (UnsafePointer<Float>, UnsafeMutableRawPointer, Int) -> Void
    /// (W, Xq, Y, k, rows, n, ldy, accumulate)
    let matmul: @Sendable (UnsafeRawPointer, UnsafeRawPointer, UnsafeMutablePointer<Float>, Int, Int, Int, Int, Bool) -> Void

    static func of(_ format: WeightFormat) -> BlockCodec {
        switch format {
        case .q8_0: return .q8_0
        case .q4_0: return .q4_0
        case .q4_1: return .q4_1
        case .f32: preconditionFailure("float32 is not a block format")
        }
    }
}

public final class BlockQuantizedWeight: LinearWeight, @unchecked Sendable {
    public static let blockSize = 32
    public let rows: Int
    public let columns: Int
    let codec: BlockCodec
    let rowBytes: Int
    let data: UnsafeMutableRawPointer

    public var format: WeightFormat { codec.format }
    public var bytes: Int { rows * rowBytes }

    /// The rows of `parts` stacked in order, in this codec's format: rows already stored in it
    /// are copied, any other row is quantized from its float32 values.
    init(stacking parts: [MatrixSource], columns: Int, codec: BlockCodec) {
        rows = parts.reduce(0) { $0 + $1.rows }
        self.columns = columns
        self.codec = codec
        rowBytes = codec.rowBytes(columns)
        data = .allocate(byteCount: max(1, rows * rowBytes), alignment: 64)
        let (data, rowBytes) = (data, rowBytes)
        var first = 0
        for part in parts {
            let base = data + first * rowBytes
            if part.blockFormat == codec.format {
                for r in 0..<part.rows { (base + r * rowBytes).copyMemory(from: part.storedRow(r), byteCount: rowBytes) }
            } else {
                forEachRowRange(0..<part.rows, work: part.rows * columns) { range in
                    let row = UnsafeMutablePointer<Float>.allocate(capacity: columns)
                    defer { row.deallocate() }
                    for r in range {
                        part.floatRow(r, row)
                        codec.quantize(row, base + r * rowBytes, columns)
                    }
                }
            }
            first += part.rows
        }
    }

    deinit { data.deallocate() }

    public func dequantize(row r: Int, into out: UnsafeMutablePointer<Float>) {
        codec.dequantize(data + r * rowBytes, out, columns)
    }

    /// From this many activation rows on (a prefill chunk), tiles of weight rows are
    /// dequantized and multiplied by sgemm: its FLOP rate beats integer dot products there.
    /// Above the most rows a speculative verification carries (64 drafts + 1), so verifying
    /// takes the same integer path as decoding one row: a row's result never depends on how
    /// many rows come with it, and greedy speculation stays exact.
    static let gemmRows = 80

    public func multiply(_ x: UnsafePointer<Float>, count n: Int, rows range: Range<Int>, into y: UnsafeMutablePointer<Float>,
                         ldy: Int, accumulate: Bool) {
        guard n > 0, !range.isEmpty else { return }
        if n >= Self.gemmRows {
            multiplyByTiles(x, count: n, rows: range, into: y, ldy: ldy, accumulate: accumulate)
            return
        }
        let k = columns, xBytes = codec.activationRowBytes(k)
        let quantized = UnsafeMutableRawPointer.allocate(byteCount: n * xBytes, alignment: 64)
        defer { quantized.deallocate() }
        for i in 0..<n { codec.quantizeActivations(x + i * k, quantized + i * xBytes, k) }
        let (data, rowBytes, codec) = (data, rowBytes, codec)
        forEachRowRange(range, work: n * range.count * k) { part in
            codec.matmul(data + part.lowerBound * rowBytes, quantized, y + (part.lowerBound - range.lowerBound),
                         k, part.count, n, ldy, accumulate)
        }
    }
}

extension BlockQuantizedWeight {
    /// Tiles of 128 weight rows dequantized to float32, each multiplied by one sgemm.
    func multiplyByTiles(_ x: UnsafePointer<Float>, count n: Int, rows range: Range<Int>, into y: UnsafeMutablePointer<Float>,
                         ldy: Int, accumulate: Bool) {
        let k = columns, tile = 128
        let scratch = UnsafeMutablePointer<Float>.allocate(capacity: tile * k)
        defer { scratch.deallocate() }
        for first in stride(from: range.lowerBound, to: range.upperBound, by: tile) {
            let count = min(tile, range.upperBound - first)
            for r in 0..<count { dequantize(row: first + r, into: scratch + r * k) }
            BLAS.gemm(transposeA: false, transposeB: true, m: n, n: count, k: k, a: x, lda: k, b: scratch, ldb: k,
                      beta: accumulate ? 1 : 0, c: y + (first - range.lowerBound), ldc: ldy)
        }
    }
}

/// The instruction set the block kernels run with on this CPU, for reports.
public enum QuantKernels {
    public static var name: String { String(cString: cq_kernel_name()) }
}

extension WeightFormat {
    /// `values` (rows of `columns`, a multiple of 32) in this block format, llama.cpp's layout:
    /// what a GGUF file stores for a tensor of this type.
    public func encodeBlocks(_ values: UnsafeBufferPointer<Float>, columns: Int) -> [UInt8] {
        let codec = BlockCodec.of(self), rows = values.count / columns, rowBytes = codec.rowBytes(columns)
        precondition(columns % BlockQuantizedWeight.blockSize == 0 && rows * columns == values.count,
                     "encodeBlocks: \(values.count) values do not make rows of \(columns), a multiple of 32")
        var out = [UInt8](repeating: 0, count: rows * rowBytes)
        out.withUnsafeMutableBytes { raw in
            for r in 0..<rows { codec.quantize(values.baseAddress! + r * columns, raw.baseAddress! + r * rowBytes, columns) }
        }
        return out
    }
}
