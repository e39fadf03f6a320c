// LinearWeight: the seam between the inference path and how a weight matrix is stored. The
// decoder asks a weight [rows, columns] (HF's [out, in]) to multiply activation rows; each
// storage format (F32 here, the GGUF block formats in their own files) brings its kernels.
import Dispatch

public enum WeightFormat: String, CaseIterable, Sendable {
    case f32
    case q8_0
    case q4_0
    case q4_1
}

public protocol LinearWeight: AnyObject, Sendable {
    var format: WeightFormat { get }
    var rows: Int { get }
    var columns: Int { get }
    /// Bytes of the stored matrix: what one pass over it reads.
    var bytes: Int { get }
    /// y[i·ldy + r] (= or +=) Σ_c x[i·columns + c] · W[rows.lowerBound + r, c], for the n
    /// activation rows i and the weight rows r of `rows`.
    func multiply(_ x: UnsafePointer<Float>, count n: Int, rows: Range<Int>, into y: UnsafeMutablePointer<Float>,
                  ldy: Int, accumulate: Bool)
}

extension LinearWeight {
    public func multiply(_ x: UnsafePointer<Float>, count n: Int, into y: UnsafeMutablePointer<Float>, ldy: Int, accumulate: Bool) {
        multiply(x, count: n, rows: 0..<rows, into: y, ldy: ldy, accumulate: accumulate)
    }
}

/// A float32 matrix inside a buffer someone else owns (the model's parameters): OpenBLAS sgemm.
public final class F32Weight: LinearWeight, @unchecked Sendable {
    public var format: WeightFormat { .f32 }
    public let rows: Int
    public let columns: Int
    let data: UnsafePointer<Float>
    let owner: AnyObject

    /// data: [rows, columns] row-major, kept alive by `owner`.
    public init(_ data: UnsafePointer<Float>, rows: Int, columns: Int, owner: AnyObject) {
        self.data = data
        self.rows = rows
        self.columns = columns
        self.owner = owner
    }

    public var bytes: Int { rows * columns * 4 }

    public func multiply(_ x: UnsafePointer<Float>, count n: Int, rows range: Range<Int>, into y: UnsafeMutablePointer<Float>,
                         ldy: Int, accumulate: Bool) {
        BLAS.gemm(transposeA: false, transposeB: true, m: n, n: range.count, k: columns, a: x, lda: columns,
                  b: data + range.lowerBound * columns, ldb: columns, beta: accumulate ? 1 : 0, c: y, ldc: ldy)
    }
}

/// Every matrix a decoder multiplies, in one format: per layer the fused q|k|v, o, gate|up
/// and down projections, and the head. Norms and the embedding table stay the model's float32.
public final class InferenceWeights: @unchecked Sendable {
    public struct Layer: Sendable {
        public let qkv: any LinearWeight      // [H·Dh + 2·Hkv·Dh, D]
        public let output: any LinearWeight   // [D, H·Dh]
        public let gateUp: any LinearWeight   // [2F, D]
        public let down: any LinearWeight     // [D, F]
        var matrices: [any LinearWeight] { [qkv, output, gateUp, down] }
    }

    public let format: WeightFormat
    public let layers: [Layer]
    public let head: any LinearWeight       // [V, D]
    let model: LlamaModel

    /// The model's matrices in `format`: float32 wraps the parameters (no copy); a block
    /// format quantizes each matrix (its columns must be a multiple of 32).
    public init(model: LlamaModel, format: WeightFormat = .f32) throws {
        let c = model.config, P = model.parameters.pointer, D = c.hiddenSize, F = c.intermediateSize
        func weight(_ offset: Int, _ rows: Int, _ columns: Int, _ name: String) throws -> any LinearWeight {
            switch format {
            case .f32: return F32Weight(P + offset, rows: rows, columns: columns, owner: model.parameters)
            case .q8_0, .q4_0, .q4_1:
                guard columns % BlockQuantizedWeight.blockSize == 0 else {
                    throw ConfigError(key: "dtype", "\(format.rawValue) needs rows that are a multiple of \(BlockQuantizedWeight.blockSize) values; \(name) has \(columns)")
                }
                return BlockQuantizedWeight(quantizing: P + offset, rows: rows, columns: columns, codec: BlockCodec.of(format))
            }
        }
        layers = try model.layout.layers.enumerated().map { l, w in
            Layer(qkv: try weight(w.qkv, c.qkvWidth, D, "layer \(l) q|k|v"),
                  output: try weight(w.output, D, c.queryWidth, "layer \(l) o_proj"),
                  gateUp: try weight(w.gateUp, 2 * F, D, "layer \(l) gate|up"),
                  down: try weight(w.down, D, F, "layer \(l) down_proj"))
        }
        head = try weight(model.layout.head, c.vocabSize, D, "lm_head")
        self.format = format
        self.model = model
    }

    /// Weight bytes one decode step reads in layer `l`: its matrices and its two norms.
    public func layerBytes(_ l: Int) -> Int {
        layers[l].matrices.reduce(0) { $0 + $1.bytes } + 2 * model.config.hiddenSize * 4
    }

    /// Bytes of the layers' q|k|v rows that state propagation reads (k and v only) and its norm.
    public func propagationBytes(_ l: Int) -> Int {
        let c = model.config, qkv = layers[l].qkv
        return qkv.bytes * (2 * c.keyValueWidth) / qkv.rows + c.hiddenSize * 4
    }

    /// Every matrix's bytes (the layers and the head; the embedding table is the model's).
    public var bytes: Int { layers.reduce(head.bytes) { $0 + $1.matrices.reduce(0) { $0 + $1.bytes } } }
}

/// Splits `rows` weight rows over the cores when the work is worth a second thread.
func forEachRowRange(_ rows: Range<Int>, work: Int, _ body: (Range<Int>) -> Void) {
    let pieces = work < 1 << 17 ? 1 : min(Parallel.workers, rows.count)
    if pieces <= 1 {
        body(rows)
        return
    }
    let count = rows.count
    DispatchQueue.concurrentPerform(iterations: pieces) { p in
        body((rows.lowerBound + count * p / pieces)..<(rows.lowerBound + count * (p + 1) / pieces))
    }
}
