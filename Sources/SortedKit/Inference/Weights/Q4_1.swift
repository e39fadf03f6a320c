// Q4_1: GGUF's Q4_1 blocks (llama.cpp's layout), multiplied by dot products with activations
// quantized to Q8_1 (the cq_ kernels in the CQuant target).
import CQuant

extension BlockCodec {
    static let q4_1 = BlockCodec(
        format: .q4_1,
        rowBytes: { Int(cq_row_bytes_q4_1(Int64($0))) },
        quantize: { cq_quantize_row_q4_1($0, $1, Int64($2)) })
}
