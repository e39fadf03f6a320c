// Q8_0: GGUF's Q8_0 blocks (llama.cpp's layout), multiplied by dot products with activations
// quantized to Q8_0 (the cq_ kernels in the CQuant target).
import CQuant

extension BlockCodec {
    static let q8_0 = BlockCodec(
        format: .q8_0,
        rowBytes: { Int(cq_row_bytes_q8_0(Int64($0))) },
        quantize: { cq_quantize_row_q8_0($0, $1, Int64($2)) })
}
