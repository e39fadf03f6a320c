// BlockQuantizedWeight: a matrix in one of GGUF's block formats (32 values a block along each
// row, llama.cpp's blocks), held in CQuant's packed layout (the same blocks regrouped 16 rows at
// a time) and multiplied by cq_linear: one C call quantizes the activation rows to 8 bits per
// block (llama.cpp's scheme), then integer dot products over blocks, split over CQuant's pool.
import CQuant

/// What a block format brings: its bytes per row and its quantizer (llama.cpp's rounding); the
/// kernels are cq_linear's, chosen by `format.cqFormat`.
struct BlockCodec: Sendable {
    let format: WeightFormat
    let rowBytes: @Sendable (Int) -> Int
    let quantize: @Sendable (UnsafePointer<Float>, UnsafeMutableRawPointer, Int) -> Void

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
    let cqFormat: Int32
    /// The rows packed for cq_linear (cq_packed_bytes: panels of 16 rows, the last one padded).
    let data: UnsafeMutableRawPointer

    public var format: WeightFormat { codec.format }
    /// What a pass over the rows reads (the packing's padding rows aside).
    public var bytes: Int { rows * rowBytes }

    /// The rows of `parts` stacked in order, in this codec's format: rows already stored in it
    /// are packed as they are, any other row is quantized from its float32 values.
    init(stacking parts: [MatrixSource], columns: Int, codec: BlockCodec) {
        rows = parts.reduce(0) { $0 + $1.rows }
        self.columns = columns
        self.codec = codec
        rowBytes = codec.rowBytes(columns)
        let format = codec.format.cqFormat, k = Int64(columns)
        cqFormat = format
        let packed = max(1, cq_packed_bytes(format, k, Int64(rows)))
        data = .allocate(byteCount: packed, alignment: 64)
        data.initializeMemory(as: UInt8.self, repeating: 0, count: packed)
        let (data, rowBytes) = (data, rowBytes)
        var first = 0
        for part in parts {
            let base = first
            if part.blockFormat == codec.format {
                for r in 0..<part.rows { cq_pack_row(format, data, k, Int64(base + r), part.storedRow(r)) }
            } else {
                // Rows of one panel may be packed by different threads: each writes only its own bytes.
                forEachRowRange(0..<part.rows, work: part.rows * columns) { range in
                    let row = UnsafeMutablePointer<Float>.allocate(capacity: columns)
                    let blocks = UnsafeMutableRawPointer.allocate(byteCount: rowBytes, alignment: 16)
                    defer { row.deallocate(); blocks.deallocate() }
                    for r in range {
                        part.floatRow(r, row)
                        codec.quantize(row, blocks, columns)
                        cq_pack_row(format, data, k, Int64(base + r), blocks)
                    }
                }
            }
            first += part.rows
        }
    }

    deinit { data.deallocate() }

    public func dequantize(row r: Int, into out: UnsafeMutablePointer<Float>) {
        cq_dequantize_packed_row(cqFormat, data, Int64(columns), Int64(r), out)
    }

    /// One cq_linear call for any n: every (weight row, activation row) result is the same
    /// whatever n is and however the rows are split (cq_linear's contract), so a speculative
    /// verification over many rows reproduces decoding them one at a time exactly.
    public func multiply(_ x: UnsafePointer<Float>, count n: Int, rows range: Range<Int>, into y: UnsafeMutablePointer<Float>,
                         ldy: Int, accumulate: Bool) {
        guard n > 0, !range.isEmpty else { return }
        precondition(range.lowerBound >= 0 && range.upperBound <= rows, "rows \(range) outside 0..<\(rows)")
        _ = CQuantPool.configured
        cq_linear(cqFormat, data, Int64(columns), Int64(range.lowerBound), Int64(range.upperBound), x, Int64(columns),
                  Int64(n), y, Int64(ldy), accumulate ? 1 : 0)
    }
}

extension WeightFormat {
    /// CQuant's name for a block format.
    var cqFormat: Int32 {
        switch self {
        case .q8_0: return Int32(CQ_Q8_0)
        case .q4_0: return Int32(CQ_Q4_0)
        case .q4_1: return Int32(CQ_Q4_1)
        case .f32: preconditionFailure("float32 is not a block format")
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
