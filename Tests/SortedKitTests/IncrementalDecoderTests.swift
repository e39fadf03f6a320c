// The inference path against the training forward it replaces: prefill + one-token decode
// steps with a KV cache give the logits of the full-window forward (SortedPass) at every
// position and depth, on the golden-fixture models (GQA tied, MHA untied) and on a longer
// sequence whose prompt takes the GEMM attention path in several prefill chunks.
import XCTest
@testable import SortedKit

final class IncrementalDecoderTests: XCTestCase {
    /// Logits [T, V] of every position of sequence b, decoded with the cache: the first
    /// `prompt` tokens prefilled in chunks of `chunk` rows, the rest one token per step
    /// for all sequences together.
    private func decodedLogits(_ model: LlamaModel, _ batch: TokenBatch, depth k: Int, prompt: Int,
                               chunk: Int) throws -> [[Float]] {
        let B = batch.batchSize, T = batch.sequenceLength, V = model.config.vocabSize
        let decoder = try IncrementalDecoder(model: try InferenceModel(model), slots: B, capacity: T, maxRows: max(chunk, B), cacheLayers: k)
        let hidden = decoder.makeHidden(rows: max(chunk, B))
        var logits = [[Float]](repeating: [Float](repeating: .nan, count: T * V), count: B)
        let rowLogits = FloatBuffer(count: max(chunk, B) * V)
        func token(_ b: Int, _ t: Int) -> Int32 { batch.tokens[b * T + t] }
        for b in 0..<B {
            for first in stride(from: 0, to: prompt, by: chunk) {
                let n = min(chunk, prompt - first)
                decoder.embed((first..<(first + n)).map { token(b, $0) }, into: hidden)
                decoder.forward(hidden, segments: [DecoderSegment(slot: b, rows: n)], layers: 0..<k)
                decoder.logits(hidden, rows: 0..<n, into: rowLogits.pointer)
                for i in 0..<n { logits[b].replaceSubrange(((first + i) * V)..<((first + i + 1) * V), with: rowLogits.array(offset: i * V, count: V)) }
            }
        }
        for t in prompt..<T {
            decoder.embed((0..<B).map { token($0, t) }, into: hidden)
            decoder.forward(hidden, segments: (0..<B).map { DecoderSegment(slot: $0, rows: 1) }, layers: 0..<k)
            decoder.logits(hidden, rows: 0..<B, into: rowLogits.pointer)
            for b in 0..<B { logits[b].replaceSubrange((t * V)..<((t + 1) * V), with: rowLogits.array(offset: b * V, count: V)) }
        }
        XCTAssertEqual(decoder.cache.committedLength(slot: 0), T)
        return logits
    }

    private func assertMatchesFullForward(_ model: LlamaModel, _ batch: TokenBatch, depths: [Int], prompt: Int,
                                          chunk: Int, _ what: String) throws {
        let pass = try SortedPass(model: model, batchSize: batch.batchSize, sequenceLength: batch.sequenceLength)
        let T = batch.sequenceLength, V = model.config.vocabSize
        for k in depths {
            let full = pass.logits(batch, depth: k)
            let decoded = try decodedLogits(model, batch, depth: k, prompt: prompt, chunk: chunk)
            let scale = Double(full.map { abs($0) }.max()!)
            for b in 0..<batch.batchSize {
                assertClose(decoded[b], Array(full[(b * T * V)..<((b + 1) * T * V)]), atol: 1e-5 * scale, rtol: 1e-5,
                            "\(what): depth \(k), sequence \(b)")
            }
        }
    }

    func testPrefillAndDecodeEqualTheFullForwardOnTheGoldenModels() throws {
        for name in GoldenPyTorchTests.fixtures {
            let fixture = try GoldenFixture(name)
            let model = try fixture.makeModel()
            let L = fixture.config.numHiddenLayers
            // Prompt of 5 in chunks of 2 and 1 (several chunks), then 7 decode steps.
            try assertMatchesFullForward(model, fixture.batch, depths: [1, 2, L], prompt: 5, chunk: 2, name)
            // Everything decoded token by token from an empty cache.
            try assertMatchesFullForward(model, fixture.batch, depths: [L], prompt: 0, chunk: 1, name)
        }
    }

    func testLongPromptTakesTheGEMMPathInChunks() throws {
        let config = LlamaConfig(hiddenSize: 32, intermediateSize: 48, numHiddenLayers: 3, numAttentionHeads: 4,
                                 numKeyValueHeads: 2, vocabSize: 50, rmsNormEps: 1e-5, maxPositionEmbeddings: 192)
        let model = try LlamaModel(config: config)
        model.initializeRandomly(seed: 11, std: 0.3)
        var rng = SplitMix64(seed: 5)
        let T = 160
        let tokens = (0..<(2 * T)).map { _ in Int32(rng.below(50)) }
        let batch = TokenBatch(batchSize: 2, sequenceLength: T, tokens: tokens,
                               targets: [Int32](repeating: TokenBatch.ignoreIndex, count: 2 * T))
        // 150 prompt rows in chunks of 70, 70, 10: the first two take GEMM attention (above
        // IncrementalDecoder.dotProductRows), the last the dot products.
        XCTAssertGreaterThan(70, IncrementalDecoder.dotProductRows)
        try assertMatchesFullForward(model, batch, depths: [2, 3], prompt: 150, chunk: 70, "random GQA model")
    }

    /// A speculative verification in float32: rows decoded together, in chunks of the model's
    /// `exactRows`, give the logits that decoding them one at a time gives, bit for bit.
    func testRowsInExactChunksEqualRowsOneAtATime() throws {
        let config = LlamaConfig(hiddenSize: 64, intermediateSize: 96, numHiddenLayers: 3, numAttentionHeads: 4,
                                 numKeyValueHeads: 2, vocabSize: 70, rmsNormEps: 1e-5, maxPositionEmbeddings: 64)
        let model = try LlamaModel(config: config)
        model.initializeRandomly(seed: 17, std: 0.3)
        let inference = try InferenceModel(model)
        XCTAssertEqual(inference.exactRows, 16)
        var rng = SplitMix64(seed: 3)
        let prompt = (0..<7).map { _ in Int32(rng.below(70)) }, rows = (0..<21).map { _ in Int32(rng.below(70)) }
        let V = config.vocabSize, exact = inference.exactRows
        func decode(chunked: Bool) throws -> [Float] {
            let decoder = try IncrementalDecoder(model: inference, slots: 1, capacity: 40, maxRows: 32)
            let hidden = decoder.makeHidden(rows: 32)
            decoder.embed(prompt, into: hidden)
            decoder.forward(hidden, segments: [DecoderSegment(slot: 0, rows: prompt.count)], layers: 0..<3)
            let out = FloatBuffer(count: rows.count * V)
            if chunked {
                decoder.embed(rows, into: hidden)
                for first in stride(from: 0, to: rows.count, by: exact) {
                    let range = first..<min(rows.count, first + exact)
                    decoder.forward(hidden, at: first, segments: [DecoderSegment(slot: 0, rows: range.count)], layers: 0..<3)
                    decoder.logits(hidden, rows: range, into: out.pointer + first * V)
                }
            } else {
                for (i, token) in rows.enumerated() {
                    decoder.embed([token], into: hidden)
                    decoder.forward(hidden, segments: [DecoderSegment(slot: 0, rows: 1)], layers: 0..<3)
                    decoder.logits(hidden, rows: 0..<1, into: out.pointer + i * V)
                }
            }
            return out.array()
        }
        XCTAssertTrue(try decode(chunked: true) == decode(chunked: false), "chunked rows differ from single rows")
    }

    /// A token that exited early gives the skipped layers the keys and values that layer
    /// would compute from its exited state: propagate equals forward's own cache writes.
    func testStatePropagationWritesWhatTheLayerWouldHaveCached() throws {
        let fixture = try GoldenFixture("golden-gqa-tied.safetensors")
        let model = try fixture.makeModel()
        let c = model.config
        let decoder = try IncrementalDecoder(model: try InferenceModel(model), slots: 2, capacity: 8, maxRows: 4)
        let hidden = decoder.makeHidden(rows: 3)
        decoder.embed([3, 17, 42], into: hidden)
        decoder.forward(hidden, segments: [DecoderSegment(slot: 0, rows: 3)], layers: 0..<1)
        // Slot 0 continues with layer 1 on the layer-1 states; slot 1 gets them by propagation.
        let copy = decoder.makeHidden(rows: 3)
        copy.copy(from: hidden)
        decoder.forward(hidden, segments: [DecoderSegment(slot: 0, rows: 3)], layers: 1..<2)
        let exited = copy.array()
        decoder.propagate(copy, segments: [DecoderSegment(slot: 1, rows: 3)], layers: 0..<2)
        XCTAssertEqual(copy.array(), exited, "propagation must not change the exited state")
        XCTAssertEqual(decoder.cache.length(slot: 1, layer: 1), 3)
        let count = 3 * c.headDim
        for g in 0..<c.numKeyValueHeads {
            let cache = decoder.cache
            assertClose(Array(UnsafeBufferPointer(start: cache.keyBase(slot: 1, layer: 1, head: g), count: count)),
                        Array(UnsafeBufferPointer(start: cache.keyBase(slot: 0, layer: 1, head: g), count: count)),
                        atol: 1e-6, rtol: 1e-6, "keys of kv head \(g)")
            assertClose(Array(UnsafeBufferPointer(start: cache.valueBase(slot: 1, layer: 1, head: g), count: count)),
                        Array(UnsafeBufferPointer(start: cache.valueBase(slot: 0, layer: 1, head: g), count: count)),
                        atol: 1e-6, rtol: 1e-6, "values of kv head \(g)")
        }
    }

    func testTruncateForgetsARejectedDraft() throws {
        let cache = KVCache(slots: 1, layers: 3, kvHeads: 1, headDim: 2, capacity: 10)
        cache.advance(slot: 0, layer: 0, by: 7)
        cache.advance(slot: 0, layer: 1, by: 7)
        cache.advance(slot: 0, layer: 2, by: 4)
        XCTAssertEqual(cache.committedLength(slot: 0), 4)
        cache.truncate(slot: 0, to: 5)
        XCTAssertEqual((0..<3).map { cache.length(slot: 0, layer: $0) }, [5, 5, 4])
    }

    func testLogitStatistics() {
        let row: [Float] = [1, 3, 2, 3.5]
        row.withUnsafeBufferPointer { p in
            XCTAssertEqual(LogitStatistics.argmax(p.baseAddress!, count: 4), 3)
            let probs = row.map { exp(Double($0)) }, z = probs.reduce(0, +)
            XCTAssertEqual(LogitStatistics.confidence(p.baseAddress!, count: 4, measure: .probability), probs[3] / z, accuracy: 1e-6)
            XCTAssertEqual(LogitStatistics.confidence(p.baseAddress!, count: 4, measure: .margin), (probs[3] - probs[1]) / z, accuracy: 1e-6)
            XCTAssertEqual(LogitStatistics.logSumExp(p.baseAddress!, count: 4), log(z), accuracy: 1e-6)
        }
        // KL against a direct float64 sum, on rows long enough for the SIMD blocks.
        let p = (0..<37).map { Float(sin(Double($0))) * 3 }, q = (0..<37).map { Float(cos(Double($0))) * 2 }
        func logSoftmax(_ x: [Float]) -> [Double] {
            let m = Double(x.max()!), z = x.map { exp(Double($0) - m) }.reduce(0, +)
            return x.map { Double($0) - m - log(z) }
        }
        let lp = logSoftmax(p), lq = logSoftmax(q)
        let expected = zip(lp, lq).map { exp($0) * ($0 - $1) }.reduce(0, +)
        XCTAssertEqual(LogitStatistics.klDivergence(p, q, count: 37), expected, accuracy: 1e-5)
        XCTAssertEqual(LogitStatistics.klDivergence(p, p, count: 37), 0, accuracy: 1e-6)
    }
}
