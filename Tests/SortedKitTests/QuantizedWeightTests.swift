// Quantized weights against the plain path they replace: every block format's kernel (the
// portable one and every SIMD path the CPU runs) against "dequantize to float32, then multiply", on random
// matrices and on real SmolLM2 blocks; and a decoder running on quantized weights against
// one running on the dequantized model.
import XCTest
import CQuant
import SortedFormats
@testable import SortedKit

final class QuantizedWeightTests: XCTestCase {
    func randomMatrix(_ count: Int, seed: UInt64) -> [Float] {
        var rng = SplitMix64(seed: seed)
        return (0..<count).map { _ in Float(rng.nextNormal()) }
    }

    /// y = x·Wᵀ with W dequantized, in Double, and the bound on what quantizing x per block
    /// may change: Σ over blocks of Σ|w| · (max|x| of the block) / 254 (half an 8-bit step).
    func reference(_ weight: BlockQuantizedWeight, _ x: [Float], n: Int) -> (y: [Double], bound: [Double]) {
        let k = weight.columns, rows = weight.rows
        var y = [Double](repeating: 0, count: n * rows), bound = y
        var row = [Float](repeating: 0, count: k)
        for r in 0..<rows {
            weight.dequantize(row: r, into: &row)
            for i in 0..<n {
                var sum = 0.0, slack = 0.0
                for b in stride(from: 0, to: k, by: 32) {
                    var absW = 0.0, maxX: Float = 0
                    for j in b..<(b + 32) {
                        sum += Double(row[j]) * Double(x[i * k + j])
                        absW += abs(Double(row[j]))
                        maxX = max(maxX, abs(x[i * k + j]))
                    }
                    slack += absW * Double(maxX) / 254
                }
                y[i * rows + r] = sum
                bound[i * rows + r] = slack
            }
        }
        return (y, bound)
    }

    func check(_ weight: BlockQuantizedWeight, n: Int, seed: UInt64, file: StaticString = #filePath, line: UInt = #line) {
        let x = randomMatrix(n * weight.columns, seed: seed)
        let (expected, bound) = reference(weight, x, n: n)
        // Every kernel path this CPU runs (the portable one runs everywhere).
        for kernel in ["portable", "avx2", "avx512", "avx512-vnni"] where cq_select_kernel(kernel) == 1 {
            defer { cq_select_kernel(nil) }
            XCTAssertEqual(QuantKernels.name, kernel)
            var y = [Float](repeating: 0, count: n * weight.rows)
            weight.multiply(x, count: n, into: &y, ldy: weight.rows, accumulate: false)
            for i in y.indices {
                let tolerance = bound[i] * 1.01 + 1e-4 * abs(expected[i]) + 1e-5
                XCTAssertLessThanOrEqual(abs(Double(y[i]) - expected[i]), tolerance,
                                         "\(weight.format) \(kernel) element \(i)", file: file, line: line)
            }
            // accumulate adds to what is there; a row range writes those rows only, the same bits.
            var acc = [Float](repeating: 1, count: n * weight.rows)
            weight.multiply(x, count: n, into: &acc, ldy: weight.rows, accumulate: true)
            for i in acc.indices { XCTAssertEqual(acc[i], 1 + y[i], file: file, line: line) }
            let part = 1..<(weight.rows - 1)
            var sub = [Float](repeating: 0, count: n * part.count)
            weight.multiply(x, count: n, rows: part, into: &sub, ldy: part.count, accumulate: false)
            for i in 0..<n { for r in part { XCTAssertEqual(sub[i * part.count + r - 1], y[i * weight.rows + r], file: file, line: line) } }
        }
    }

    func testEveryFormatAgainstItsDequantizedMatrix() throws {
        for format in [WeightFormat.q8_0, .q4_0, .q4_1] {
            for (rows, columns) in [(7, 32), (33, 576), (5, 1536)] {
                let w = randomMatrix(rows * columns, seed: UInt64(rows * columns))
                let weight = try InferenceModel.weight([.floats(w, rows: rows, columns: columns)], format: format, name: "w") as! BlockQuantizedWeight
                XCTAssertEqual(weight.bytes, rows * columns / 32 * [.q8_0: 34, .q4_0: 18, .q4_1: 20][format]!)
                for n in [1, 3, 17] { check(weight, n: n, seed: UInt64(n)) }
                // Dequantized values are within half a step of the originals (the fp16 scale adds
                // a little); Q4_0 clamps the far end of the other sign, which costs up to one step.
                var row = [Float](repeating: 0, count: columns)
                weight.dequantize(row: 0, into: &row)
                for b in stride(from: 0, to: columns, by: 32) {
                    let block = w[b..<(b + 32)], amax = block.map(abs).max()!
                    let (step, steps): (Float, Float)
                    switch format {
                    case .q8_0: (step, steps) = (amax / 127, 0.6)
                    case .q4_0: (step, steps) = (amax / 8, 1.05)
                    default: (step, steps) = ((block.max()! - block.min()!) / 15, 0.6)
                    }
                    for j in b..<(b + 32) { XCTAssertEqual(row[j], w[j], accuracy: step * steps + 1e-6, "\(format)") }
                }
            }
        }
    }

    /// SmolLM2's own Q4_1 (and any Q8_0) tensors from its GGUF, multiplied as stored.
    func testRealSmolLM2Blocks() throws {
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("vendor-data/SmolLM2-135M-Instruct.Q4_1.gguf")
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw XCTSkip("\(url.path) is absent (launch/fetch-test-assets fetches it)")
        }
        let file = try GGUFFile(contentsOf: url)
        let data = try Data(contentsOf: url, options: .alwaysMapped)
        var tested = 0
        for tensor in file.tensors where tensor.shape.count == 2 && tensor.name.hasPrefix("blk.0.") {
            let format: WeightFormat
            switch tensor.type {
            case .q8_0: format = .q8_0
            case .q4_0: format = .q4_0
            case .q4_1: format = .q4_1
            default: continue
            }
            let (rows, columns) = (min(tensor.shape[0], 64), tensor.shape[1])
            let weight = try data.withUnsafeBytes { raw in
                let start = raw.baseAddress! + tensor.fileOffset, rowBytes = tensor.byteCount / tensor.shape[0]
                let source = MatrixSource(rows: rows, columns: columns, blockFormat: format, storedRow: { start + $0 * rowBytes },
                                          floatRow: { _, _ in XCTFail("stored blocks are copied, not converted") })
                return try InferenceModel.weight([source], format: nil, name: tensor.name) as! BlockQuantizedWeight
            }
            XCTAssertEqual(weight.format, format)
            check(weight, n: 2, seed: 5)
            tested += 1
        }
        XCTAssertGreaterThan(tested, 0, "no quantized tensor in layer 0")
    }

    /// The decoder on Q8_0 weights against the decoder on the same weights dequantized to
    /// float32: the logits differ only by the activations' 8-bit rounding.
    func testDecoderOnQuantizedWeightsFollowsTheDequantizedModel() throws {
        let config = LlamaConfig(hiddenSize: 64, intermediateSize: 128, numHiddenLayers: 3, numAttentionHeads: 4, numKeyValueHeads: 2,
                                 vocabSize: 96, rmsNormEps: 1e-5, tieWordEmbeddings: false, maxPositionEmbeddings: 64)
        let model = try LlamaModel(config: config)
        model.initializeRandomly(seed: 3, std: 0.1)
        for format in [WeightFormat.q8_0, .q4_0, .q4_1] {
            let weights = try InferenceModel(model, format: format)
            // The dequantized model: every matrix replaced by what its blocks hold.
            let plain = try LlamaModel(config: config)
            plain.parameters.copy(from: model.parameters)
            for (l, w) in model.layout.layers.enumerated() {
                let matrices = weights.layers[l]
                for (offset, matrix) in [(w.qkv, matrices.qkv), (w.output, matrices.output), (w.gateUp, matrices.gateUp), (w.down, matrices.down)] {
                    let q = matrix as! BlockQuantizedWeight
                    for r in 0..<q.rows { q.dequantize(row: r, into: plain.parameters.pointer + offset + r * q.columns) }
                }
            }
            let head = weights.head as! BlockQuantizedWeight
            for r in 0..<head.rows { head.dequantize(row: r, into: plain.parameters.pointer + plain.layout.head + r * head.columns) }
            XCTAssertFalse(weights.embedding === weights.head, "the untied embedding is its own table")
            for r in 0..<head.rows {
                weights.embedding.dequantize(row: r, into: plain.parameters.pointer + plain.layout.embedding + r * head.columns)
            }

            let tokens: [Int32] = [5, 17, 42, 8, 91, 3, 60]
            func logits(_ m: InferenceModel) throws -> [Float] {
                let decoder = try IncrementalDecoder(model: m, slots: 1, capacity: 16, maxRows: 16)
                let hidden = decoder.makeHidden(rows: 16)
                decoder.embed(tokens, into: hidden)
                decoder.forward(hidden, segments: [DecoderSegment(slot: 0, rows: tokens.count)], layers: 0..<3)
                var out = [Float](repeating: 0, count: tokens.count * config.vocabSize)
                decoder.logits(hidden, rows: 0..<tokens.count, into: &out)
                return out
            }
            let quantized = try logits(weights), reference = try logits(try InferenceModel(plain))
            let scale = reference.map(abs).max()!
            let worst = zip(quantized, reference).map { abs($0 - $1) }.max()!
            // 8-bit activations: a relative error of a few hundredths of the logits' range.
            XCTAssertLessThan(worst, 0.03 * scale, "\(format)")
            XCTAssertEqual(weights.bytes, weights.layers.reduce(head.bytes) { $0 + $1.qkv.bytes + $1.output.bytes + $1.gateUp.bytes + $1.down.bytes })
        }
    }
}
