// GGUFInferenceModelTests: a GGUF file read for inference (ModelFiles.readGGUFForInference)
// keeps its Q8_0/Q4_0/Q4_1 blocks as stored, undoes llama.cpp's q/k row order row by row, and
// decodes what the dequantised path (readGGUF, every tensor float32) decodes: the logits differ
// only by the 8-bit rounding of the activations. Converting at load (format: q8_0) equals
// quantizing the dequantised model.
import Foundation
import SortedFormats
import SortedTestSupport
import XCTest
@testable import SortedIO
@testable import SortedKit

final class GGUFInferenceModelTests: XCTestCase {
    /// Tied GQA, and untied MHA with F = 80 (ffn_down rows not a multiple of 32: F16 in the file).
    private let configs = [
        LlamaConfig(hiddenSize: 64, intermediateSize: 96, numHiddenLayers: 2, numAttentionHeads: 4, numKeyValueHeads: 2,
                    headDim: 16, vocabSize: 48, rmsNormEps: 1e-5, tieWordEmbeddings: true, maxPositionEmbeddings: 32),
        LlamaConfig(hiddenSize: 64, intermediateSize: 80, numHiddenLayers: 3, numAttentionHeads: 2, numKeyValueHeads: 2,
                    headDim: 16, vocabSize: 50, rmsNormEps: 1e-6, ropeTheta: 50000, tieWordEmbeddings: false, maxPositionEmbeddings: 64),
    ]

    private func written(_ config: LlamaConfig, _ dtype: GGUFDType, seed: UInt64) throws -> URL {
        let m = try LlamaModel(config: config)
        m.initializeRandomly(seed: seed, std: 0.2)
        let url = try makeTemporaryDirectory("gguf-inference").appendingPathComponent("\(dtype.rawValue).gguf")
        try ModelFiles.ggufWriter(m, name: "test", dtype: dtype).writer.write(to: url)
        return url
    }

    private func logits(_ model: InferenceModel, _ tokens: [Int32]) throws -> [Float] {
        let decoder = try IncrementalDecoder(model: model, slots: 1, capacity: tokens.count, maxRows: tokens.count)
        let hidden = decoder.makeHidden(rows: tokens.count)
        decoder.embed(tokens, into: hidden)
        decoder.forward(hidden, segments: [DecoderSegment(slot: 0, rows: tokens.count)], layers: 0..<model.config.numHiddenLayers)
        var out = [Float](repeating: 0, count: tokens.count * model.config.vocabSize)
        decoder.logits(hidden, rows: 0..<tokens.count, into: &out)
        return out
    }

    func testStoredBlocksDecodeAsTheDequantizedModel() throws {
        for (i, c) in configs.enumerated() {
            let tokens: [Int32] = (0..<12).map { Int32(($0 * 7 + 3) % c.vocabSize) }
            for dtype in GGUFDType.allCases {
                let url = try written(c, dtype, seed: UInt64(i + 3))
                let stored = try ModelFiles.readGGUFForInference(url, format: nil)
                let reference = try InferenceModel(try ModelFiles.readGGUF(url))
                // Block tensors keep their type and bytes; float tensors become float32.
                let file = try GGUFFile(contentsOf: url)
                let down = try file.tensor("blk.0.ffn_down.weight")
                let want = WeightFormat(ggufType: down.type) ?? .f32
                XCTAssertEqual(stored.layers[0].down.format, want, "\(dtype) config \(i)")
                if want != .f32 { XCTAssertEqual(stored.layers[0].down.bytes, down.byteCount) }
                XCTAssertEqual(stored.embedding === stored.head, c.tieWordEmbeddings)
                let got = try logits(stored, tokens), expected = try logits(reference, tokens)
                let range = expected.max()! - expected.min()!
                let worst = zip(got, expected).map { abs($0 - $1) }.max()!
                // Float files decode exactly as the dequantised model; block files within the
                // 8-bit activations' rounding (the decoder test in SortedKitTests bounds it alike).
                XCTAssertLessThanOrEqual(worst, (dtype == .f32 || dtype == .f16 ? 1e-5 : 0.03) * range, "\(dtype) config \(i)")
            }
        }
    }

    func testConversionAtLoadEqualsQuantizingTheDequantizedModel() throws {
        let c = configs[0], tokens: [Int32] = [3, 9, 27, 33, 1, 40]
        let url = try written(c, .q4_1, seed: 5)
        let converted = try ModelFiles.readGGUFForInference(url, format: .q8_0)
        let reference = try InferenceModel(try ModelFiles.readGGUF(url), format: .q8_0)
        XCTAssertEqual(converted.format, .q8_0)
        XCTAssertEqual(converted.bytes, reference.bytes)
        XCTAssertEqual(try logits(converted, tokens), try logits(reference, tokens))
        let float = try ModelFiles.readGGUFForInference(url, format: .f32)
        XCTAssertEqual(try logits(float, tokens), try logits(try InferenceModel(try ModelFiles.readGGUF(url)), tokens))
    }

    /// A quantized model holds its blocks, not four bytes per parameter.
    func testResidentBytesAreTheBlocks() throws {
        let url = try written(configs[0], .q8_0, seed: 2)
        let model = try ModelFiles.readGGUFForInference(url, format: nil)
        let file = try GGUFFile(contentsOf: url)
        let tensorBytes = file.tensors.reduce(0) { $0 + $1.byteCount }
        XCTAssertEqual(model.residentBytes, tensorBytes)
    }
}
