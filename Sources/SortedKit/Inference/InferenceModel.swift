// InferenceModel: a model as the inference path holds it, and nothing more. The matrices
// (q|k|v, o, gate|up, down per layer, and the head) are LinearWeights in their stored
// format; the embedding table is a LinearWeight too, read a row at a time (the head itself
// when the embeddings are tied); the norms are float32. A float32 model is wrapped without a
// copy; a quantized one holds only its blocks, so serving a GGUF file needs about the file's
// bytes, not four bytes per parameter.
import Dispatch

/// Rows of one source tensor (or one part of a fused matrix) to build a weight from: its
/// stored blocks when it is in a block format, and its rows as float32 in any case.
public struct MatrixSource {
    public let rows: Int
    public let columns: Int
    /// The block format its rows are stored in, if one (then `storedRow` is read).
    public let blockFormat: WeightFormat?
    /// Row r's stored bytes (block formats only).
    public let storedRow: (Int) -> UnsafeRawPointer
    /// Row r as float32 into a buffer of `columns` values.
    public let floatRow: (Int, UnsafeMutablePointer<Float>) -> Void

    public init(rows: Int, columns: Int, blockFormat: WeightFormat?, storedRow: @escaping (Int) -> UnsafeRawPointer,
                floatRow: @escaping (Int, UnsafeMutablePointer<Float>) -> Void) {
        self.rows = rows
        self.columns = columns
        self.blockFormat = blockFormat
        self.storedRow = storedRow
        self.floatRow = floatRow
    }

    /// A float32 matrix [rows, columns] at `values`.
    public static func floats(_ values: UnsafePointer<Float>, rows: Int, columns: Int) -> MatrixSource {
        MatrixSource(rows: rows, columns: columns, blockFormat: nil, storedRow: { _ in preconditionFailure("float32 rows have no blocks") },
                     floatRow: { r, out in out.update(from: values + r * columns, count: columns) })
    }
}

public final class InferenceModel: @unchecked Sendable {
    public struct Layer: @unchecked Sendable {
        public let qkv: any LinearWeight      // [H·Dh + 2·Hkv·Dh, D]
        public let output: any LinearWeight   // [D, H·Dh]
        public let gateUp: any LinearWeight   // [2F, D]
        public let down: any LinearWeight     // [D, F]
        public let inputNorm: UnsafePointer<Float>   // [D]
        public let postNorm: UnsafePointer<Float>    // [D]
        var matrices: [any LinearWeight] { [qkv, output, gateUp, down] }
    }

    public let config: LlamaConfig
    public let layers: [Layer]
    /// [V, D], read a row per token; the head itself when the embeddings are tied.
    public let embedding: any LinearWeight
    public let head: any LinearWeight       // [V, D]
    public let finalNorm: UnsafePointer<Float>
    /// The buffers the pointers above point into.
    private let owners: [AnyObject]

    /// The layers' matrix format: the format most of their bytes are in.
    public var format: WeightFormat {
        var bytes: [WeightFormat: Int] = [:]
        for layer in layers { for m in layer.matrices { bytes[m.format, default: 0] += m.bytes } }
        return bytes.max { $0.value < $1.value }?.key ?? head.format
    }

    /// Up to how many rows one decoder call computes each row exactly as alone (every matrix's
    /// `exactRows`): a speculative verification goes in chunks of at most this many.
    public var exactRows: Int {
        layers.flatMap(\.matrices).map(\.exactRows).reduce(head.exactRows, min)
    }

    /// Every distinct storage format of the matrices and the head, e.g. "q4_1" or "q4_1, head q8_0".
    public var formatDescription: String {
        let body = format.rawValue
        return head.format == format ? body : "\(body), head \(head.format.rawValue)"
    }

    /// norms: [L][input, post] then the final norm, (2L + 1)·D values.
    public init(config: LlamaConfig, norms: FloatBuffer, matrices: [(qkv: any LinearWeight, output: any LinearWeight,
                gateUp: any LinearWeight, down: any LinearWeight)], embedding: any LinearWeight, head: any LinearWeight,
                owners: [AnyObject] = []) {
        let c = config, D = c.hiddenSize, L = c.numHiddenLayers
        precondition(norms.count == (2 * L + 1) * D && matrices.count == L, "InferenceModel: \(matrices.count) layers, \(norms.count) norm values")
        for (l, m) in matrices.enumerated() {
            let shapes = [(m.qkv, c.qkvWidth, D), (m.output, D, c.queryWidth), (m.gateUp, 2 * c.intermediateSize, D),
                          (m.down, D, c.intermediateSize)]
            for (w, rows, columns) in shapes {
                precondition(w.rows == rows && w.columns == columns, "InferenceModel: layer \(l) has a [\(w.rows), \(w.columns)] matrix where [\(rows), \(columns)] belongs")
            }
        }
        precondition(head.rows == c.vocabSize && head.columns == D && embedding.rows == c.vocabSize && embedding.columns == D,
                     "InferenceModel: the head or embedding is not [\(c.vocabSize), \(D)]")
        self.config = config
        layers = matrices.enumerated().map { l, m in
            Layer(qkv: m.qkv, output: m.output, gateUp: m.gateUp, down: m.down,
                  inputNorm: UnsafePointer(norms.pointer + 2 * l * D), postNorm: UnsafePointer(norms.pointer + (2 * l + 1) * D))
        }
        finalNorm = UnsafePointer(norms.pointer + 2 * L * D)
        self.embedding = embedding
        self.head = head
        self.owners = owners + [norms]
    }

    /// A training model's weights: float32 wraps its parameters (no copy, the model is kept);
    /// a block format quantizes each matrix (its rows must be a multiple of 32 long) and keeps
    /// only the blocks, so the float32 model can be released.
    public convenience init(_ model: LlamaModel, format: WeightFormat = .f32) throws {
        let c = model.config, P = model.parameters.pointer, layout = model.layout, D = c.hiddenSize, F = c.intermediateSize
        let norms = FloatBuffer(count: (2 * c.numHiddenLayers + 1) * D)
        for (l, w) in layout.layers.enumerated() {
            (norms.pointer + 2 * l * D).update(from: P + w.inputNorm, count: D)
            (norms.pointer + (2 * l + 1) * D).update(from: P + w.postNorm, count: D)
        }
        (norms.pointer + 2 * c.numHiddenLayers * D).update(from: P + layout.finalNorm, count: D)
        func weight(_ offset: Int, _ rows: Int, _ columns: Int, _ name: String) throws -> any LinearWeight {
            if format == .f32 { return F32Weight(P + offset, rows: rows, columns: columns, owner: model.parameters) }
            return try Self.weight([.floats(P + offset, rows: rows, columns: columns)], format: format, name: name)
        }
        let matrices = try layout.layers.enumerated().map { l, w in
            (qkv: try weight(w.qkv, c.qkvWidth, D, "layer \(l) q|k|v"),
             output: try weight(w.output, D, c.queryWidth, "layer \(l) o_proj"),
             gateUp: try weight(w.gateUp, 2 * F, D, "layer \(l) gate|up"),
             down: try weight(w.down, D, F, "layer \(l) down_proj"))
        }
        let head = try weight(layout.head, c.vocabSize, D, "lm_head")
        let embedding = layout.head == layout.embedding ? head : try weight(layout.embedding, c.vocabSize, D, "embed_tokens")
        self.init(config: c, norms: norms, matrices: matrices, embedding: embedding, head: head,
                  owners: format == .f32 ? [model.parameters] : [])
    }

    /// One weight from the rows of `parts`, stacked in order (a fused matrix), stored in
    /// `format`, or when nil in the parts' own block format if they share one, else float32.
    /// Blocks already in the target format are copied; other rows are converted one at a time,
    /// so no float32 copy of a quantized matrix is ever made.
    public static func weight(_ parts: [MatrixSource], format: WeightFormat?, name: String) throws -> any LinearWeight {
        precondition(!parts.isEmpty && parts.allSatisfy { $0.columns == parts[0].columns }, "InferenceModel.weight: parts of unequal width")
        let columns = parts[0].columns, rows = parts.reduce(0) { $0 + $1.rows }
        let shared = parts.allSatisfy { $0.blockFormat == parts[0].blockFormat } ? parts[0].blockFormat : nil
        let target = format ?? shared ?? .f32
        if target == .f32 {
            let buffer = FloatBuffer(count: rows * columns, zeroed: false)
            var row = 0
            for part in parts {
                let base = buffer.pointer + row * columns
                forEachRowRange(0..<part.rows, work: part.rows * columns) { range in
                    for r in range { part.floatRow(r, base + r * columns) }
                }
                row += part.rows
            }
            return F32Weight(buffer.pointer, rows: rows, columns: columns, owner: buffer)
        }
        guard columns % BlockQuantizedWeight.blockSize == 0 else {
            throw ConfigError(key: "dtype", "\(target.rawValue) needs rows that are a multiple of \(BlockQuantizedWeight.blockSize) values; \(name) has \(columns)")
        }
        return BlockQuantizedWeight(stacking: parts, columns: columns, codec: BlockCodec.of(target))
    }

    /// Weight bytes one decode step reads in layer `l`: its matrices and its two norms.
    public func layerBytes(_ l: Int) -> Int {
        layers[l].matrices.reduce(0) { $0 + $1.bytes } + 2 * config.hiddenSize * 4
    }

    /// Bytes of the layers' q|k|v rows that state propagation reads (k and v only) and its norm.
    public func propagationBytes(_ l: Int) -> Int {
        let qkv = layers[l].qkv
        return qkv.bytes * (2 * config.keyValueWidth) / qkv.rows + config.hiddenSize * 4
    }

    /// Every matrix's bytes: the layers and the head (the embedding table only when it is
    /// not the head: a row per token is read of it).
    public var bytes: Int { layers.reduce(head.bytes) { $0 + $1.matrices.reduce(0) { $0 + $1.bytes } } }

    /// The bytes the model holds: its matrices, a separate embedding table and the norms.
    public var residentBytes: Int {
        bytes + (embedding === head ? 0 : embedding.bytes) + (2 * layers.count + 1) * config.hiddenSize * 4
    }

    /// The first matrix or norm that holds NaN or infinite values (by its place and count), or
    /// nil: whatever such a model generates is garbage. Reads every row once.
    public func nonFiniteTensor() -> (name: String, count: Int)? {
        let D = config.hiddenSize
        func count(_ p: UnsafePointer<Float>, _ n: Int) -> Int { UnsafeBufferPointer(start: p, count: n).reduce(0) { $0 + ($1.isFinite ? 0 : 1) } }
        func count(_ w: any LinearWeight) -> Int {
            let row = UnsafeMutablePointer<Float>.allocate(capacity: w.columns)
            defer { row.deallocate() }
            return (0..<w.rows).reduce(0) { total, r in w.dequantize(row: r, into: row); return total + count(row, w.columns) }
        }
        var named: [(String, () -> Int)] = [("embed_tokens", { count(self.embedding) })]
        for (l, layer) in layers.enumerated() {
            named += [("layer \(l) input_layernorm", { count(layer.inputNorm, D) }), ("layer \(l) q|k|v", { count(layer.qkv) }),
                      ("layer \(l) o_proj", { count(layer.output) }), ("layer \(l) post_attention_layernorm", { count(layer.postNorm, D) }),
                      ("layer \(l) gate|up", { count(layer.gateUp) }), ("layer \(l) down_proj", { count(layer.down) })]
        }
        named.append(("norm", { count(self.finalNorm, D) }))
        if embedding !== head { named.append(("lm_head", { count(self.head) })) }
        for (name, bad) in named { let n = bad(); if n > 0 { return (name, n) } }
        return nil
    }
}
