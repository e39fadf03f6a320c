// A llama GGUF file as the inference path holds it: matrices stored in a block format the
// decoder multiplies (Q8_0, Q4_0, Q4_1) keep their blocks, read straight from the mapped file;
// F32/F16/BF16 matrices become float32. Nothing is dequantised to float32 as a whole, so a
// served GGUF costs about its file size. llama.cpp's q/k row order is undone row by row.
import Foundation
import SortedFormats
import SortedKit

extension ModelFiles {
    /// format: nil keeps each matrix as stored; a format converts every matrix to it, one
    /// row at a time. Problems are FormatErrors naming the file, as for `readGGUF`.
    public static func readGGUFForInference(_ url: URL, format: WeightFormat?) throws -> InferenceModel {
        let file = try GGUFFile(contentsOf: url)
        let config = try GGUFLlama.config(of: file)
        do { try config.validate() } catch let error as ConfigError {
            let what = error.key.map { "metadata \(GGUFLlama.metadataKey(forHF: $0)) is" } ?? "the model sizes in its metadata are"
            throw FormatError(file: file.path, "\(what) not usable: \(error.message)")
        }
        let layout = ParameterLayout(config: config)
        let tensors = try GGUFLlama.tensors(of: file, for: layout)
        let info = Dictionary(uniqueKeysWithValues: tensors.map { ($0.spec.name, $0.info) })
        let c = config, D = c.hiddenSize

        return try file.withBytes { base in
            func source(_ hfName: String, permutedHeads heads: Int? = nil) -> MatrixSource {
                let t = info[hfName]!, rows = t.shape[0], columns = t.shape[1], rowBytes = t.byteCount / rows
                let headDim = heads.map { rows / $0 } ?? 1, half = headDim / 2
                // HF row h·Dh + j·Dh/2 + d is GGUF row h·Dh + 2d + j (see GGUFLlama.permuteRows).
                func fileRow(_ r: Int) -> Int {
                    guard heads != nil else { return r }
                    let h = r / headDim, within = r % headDim
                    return h * headDim + 2 * (within % half) + within / half
                }
                let start = base + t.fileOffset, type = t.type
                return MatrixSource(rows: rows, columns: columns, blockFormat: WeightFormat(ggufType: type),
                                    storedRow: { start + fileRow($0) * rowBytes },
                                    floatRow: { GGUFFile.dequantize(type: type, from: start + fileRow($0) * rowBytes, count: columns, into: $1) })
            }
            // Each matrix is copied (or converted) out of the mapping, whose pages are then given
            // back: the file is never resident twice over.
            func weight(_ names: [String], _ shown: String, permuted: [Int?]? = nil) throws -> any LinearWeight {
                let parts = names.enumerated().map { i, name in source(name, permutedHeads: permuted?[i] ?? nil) }
                defer { for name in names { file.releasePages(of: info[name]!) } }
                do { return try InferenceModel.weight(parts, format: format, name: shown) } catch let error as ConfigError {
                    throw FormatError(file: file.path, error.message)
                }
            }
            let norms = FloatBuffer(count: (2 * c.numHiddenLayers + 1) * D)
            func norm(_ hfName: String, into slot: Int) throws {
                let values = try file.floats(GGUFLlama.ggufName(forHF: hfName))
                (norms.pointer + slot * D).update(from: values, count: D)
            }
            var matrices: [(qkv: any LinearWeight, output: any LinearWeight, gateUp: any LinearWeight, down: any LinearWeight)] = []
            for l in 0..<c.numHiddenLayers {
                let p = "model.layers.\(l)."
                try norm(p + "input_layernorm.weight", into: 2 * l)
                try norm(p + "post_attention_layernorm.weight", into: 2 * l + 1)
                matrices.append((
                    qkv: try weight([p + "self_attn.q_proj.weight", p + "self_attn.k_proj.weight", p + "self_attn.v_proj.weight"],
                                    "blk.\(l) attn_q|k|v", permuted: [c.numAttentionHeads, c.numKeyValueHeads, nil]),
                    output: try weight([p + "self_attn.o_proj.weight"], "blk.\(l).attn_output"),
                    gateUp: try weight([p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight"], "blk.\(l) ffn_gate|up"),
                    down: try weight([p + "mlp.down_proj.weight"], "blk.\(l).ffn_down")))
            }
            try norm("model.norm.weight", into: 2 * c.numHiddenLayers)
            let embedding = try weight(["model.embed_tokens.weight"], "token_embd")
            let head = c.tieWordEmbeddings ? embedding : try weight(["lm_head.weight"], "output")
            return InferenceModel(config: c, norms: norms, matrices: matrices, embedding: embedding, head: head)
        }
    }
}

extension WeightFormat {
    /// The block format a GGUF tensor type is, if it is one the decoder multiplies.
    init?(ggufType type: GGUFFile.TensorType) {
        switch type {
        case .q8_0: self = .q8_0
        case .q4_0: self = .q4_0
        case .q4_1: self = .q4_1
        default: return nil
        }
    }
}
