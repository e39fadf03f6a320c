// ParameterLayout: where every tensor lives in the one layer-major parameter buffer.
// Order: [embed][layer 0]…[layer L-1][final norm][head, unless tied]. A layer block is at
// once a gradient bucket for the all-reduce, a checkpoint group and a unit of export.

public enum TensorRole: String, Sendable {
    case embedding, norm, linear, head
}

/// One named tensor: HF name, shape [out, in] as `nn.Linear` stores it, place in the buffer.
public struct TensorSpec: Sendable, Equatable {
    public let name: String
    public let shape: [Int]
    public let offset: Int
    public let role: TensorRole
    /// The decoder layer it belongs to, nil for the embedding, final norm and head.
    public let layer: Int?
    public var count: Int { shape.reduce(1, *) }
    public var range: Range<Int> { offset..<(offset + count) }
}

/// Offsets of one decoder layer's tensors, absolute in the buffer. q|k|v rows are
/// contiguous so one GEMM computes all three; so are gate|up.
public struct LayerOffsets: Sendable {
    public let inputNorm: Int       // [D]
    public let qkv: Int             // [H·Dh + 2·Hkv·Dh, D]: q_proj, k_proj, v_proj rows
    public let output: Int          // [D, H·Dh]: o_proj
    public let postNorm: Int        // [D]
    public let gateUp: Int          // [2F, D]: gate_proj rows then up_proj rows
    public let down: Int            // [D, F]
}

public struct ParameterLayout: Sendable {
    public let config: LlamaConfig
    public let embedding: Int
    public let layers: [LayerOffsets]
    public let layerStride: Int
    public let finalNorm: Int
    /// Equal to `embedding` when the embeddings are tied.
    public let head: Int
    public let count: Int
    public let tensors: [TensorSpec]

    public init(config c: LlamaConfig) {
        config = c
        let D = c.hiddenSize, F = c.intermediateSize
        var specs: [TensorSpec] = []
        var cursor = 0
        func add(_ name: String, _ shape: [Int], _ role: TensorRole, _ layer: Int?) -> Int {
            let spec = TensorSpec(name: name, shape: shape, offset: cursor, role: role, layer: layer)
            specs.append(spec)
            cursor += spec.count
            return spec.offset
        }
        embedding = add("model.embed_tokens.weight", [c.vocabSize, D], .embedding, nil)
        var blocks: [LayerOffsets] = []
        let layerStart = cursor
        for l in 0..<c.numHiddenLayers {
            let p = "model.layers.\(l)."
            let inputNorm = add(p + "input_layernorm.weight", [D], .norm, l)
            let q = add(p + "self_attn.q_proj.weight", [c.queryWidth, D], .linear, l)
            _ = add(p + "self_attn.k_proj.weight", [c.keyValueWidth, D], .linear, l)
            _ = add(p + "self_attn.v_proj.weight", [c.keyValueWidth, D], .linear, l)
            let o = add(p + "self_attn.o_proj.weight", [D, c.queryWidth], .linear, l)
            let postNorm = add(p + "post_attention_layernorm.weight", [D], .norm, l)
            let gate = add(p + "mlp.gate_proj.weight", [F, D], .linear, l)
            _ = add(p + "mlp.up_proj.weight", [F, D], .linear, l)
            let down = add(p + "mlp.down_proj.weight", [D, F], .linear, l)
            blocks.append(LayerOffsets(inputNorm: inputNorm, qkv: q, output: o,
                                       postNorm: postNorm, gateUp: gate, down: down))
        }
        layers = blocks
        layerStride = c.numHiddenLayers > 0 ? (cursor - layerStart) / c.numHiddenLayers : 0
        finalNorm = add("model.norm.weight", [D], .norm, nil)
        head = c.tieWordEmbeddings ? embedding : add("lm_head.weight", [c.vocabSize, D], .head, nil)
        count = cursor
        tensors = specs
    }

    /// The buffer range of layer l's block: its gradient bucket.
    public func layerRange(_ l: Int) -> Range<Int> {
        let start = layers[l].inputNorm
        return start..<(start + layerStride)
    }

    /// Final norm and (untied) head: the tail shared by every exit.
    public var tailRange: Range<Int> { finalNorm..<count }

    public var embeddingRange: Range<Int> { embedding..<(embedding + config.vocabSize * config.hiddenSize) }

    /// Every gradient bucket, in the order a training step finishes them and they are
    /// reduced: the tail, the layers from the last down to the first, the embedding.
    public var gradientBucketOrder: [GradientBucket] {
        [.tail] + layers.indices.reversed().map { .layer($0) } + [.embedding]
    }

    public func tensor(named name: String) -> TensorSpec? { tensors.first { $0.name == name } }
}
