// GenerationBenchmark: what a depth buys at inference, measured in one run — prefill and
// decode tokens/s at every exit (batch 1 and a larger batch), early exit and
// self-speculative decoding next to full-depth greedy decoding on the same prompts, and
// the full-depth batch-1 decode rate against its limit: the bytes of weights and KV cache
// read per token over the read bandwidth measured in this process.
import Foundation
import SortedKit

public struct GenerationBenchmarkSettings: Sendable {
    public var exits: [Int]
    public var promptTokens: Int = 128
    public var newTokens: Int = 64
    public var batchSize: Int = 8
    public var earlyExitThresholds: [Double] = [0.9]
    public var confidence: ConfidenceMeasure = .probability
    /// Token window (default: the model's positions).
    public var window: Int?
    /// Agreement targets for early exit by the model's calibrated probes (when it has them).
    public var probeAgreements: [Double] = []
    /// Self-speculative strategies to measure, by name.
    public var speculations: [(name: String, strategy: DecodingStrategy)] = []
    public var repeats: Int = 2
    /// Prompts the strategies (full depth, early exit, self-speculative) answer one at a time,
    /// the first ones, each once (default: batchSize, or all when fewer). Short answers give few tokens a prompt, and an agreement over a
    /// few dozen tokens moves in steps of several percent.
    public var answers: Int?

    public init(exits: [Int]) {
        self.exits = exits
    }
}

public struct DepthSpeed: Codable, Sendable {
    public var depth: Int
    public var prefillTokensPerSecond: Double
    public var decodeTokensPerSecondBatch1: Double
    public var decodeTokensPerSecondBatched: Double
    /// Batch-1 decode speed relative to the full model's.
    public var speedupOverFullDepth: Double
    /// Weight and KV-cache bytes one batch-1 decode token reads at this depth.
    public var bytesPerToken: Double
    /// Batch-1 decode rate ÷ (read bandwidth ÷ bytesPerToken).
    public var fractionOfBandwidthLimit: Double

    enum CodingKeys: String, CodingKey {
        case depth
        case prefillTokensPerSecond = "prefill_tokens_per_s"
        case decodeTokensPerSecondBatch1 = "decode_tokens_per_s_batch1"
        case decodeTokensPerSecondBatched = "decode_tokens_per_s_batched"
        case speedupOverFullDepth = "speedup_over_full_depth"
        case bytesPerToken = "bytes_per_token"
        case fractionOfBandwidthLimit = "fraction_of_bandwidth_limit"
    }
}

public struct StrategySpeed: Codable, Sendable {
    public var strategy: String
    public var tokensPerSecond: Double
    public var speedupOverFullDepth: Double
    public var meanLayersPerToken: Double
    /// Fraction of tokens equal, position by position, to full-depth greedy decoding.
    public var agreementWithFullDepth: Double
    public var identicalToFullDepth: Bool
    public var exitHistogram: [String: Int]
    public var acceptanceRate: Double?
    /// Weight bytes read per generated token (layers, heads, state propagation), and that
    /// over full-depth decoding's: the bound a memory-bound decode speed-up cannot pass.
    public var weightBytesPerToken: Double
    public var bytesOverFullDepth: Double

    enum CodingKeys: String, CodingKey {
        case strategy
        case weightBytesPerToken = "weight_bytes_per_token"
        case bytesOverFullDepth = "bytes_over_full_depth"
        case tokensPerSecond = "tokens_per_s"
        case speedupOverFullDepth = "speedup_over_full_depth"
        case meanLayersPerToken = "mean_layers_per_token"
        case agreementWithFullDepth = "agreement_with_full_depth"
        case identicalToFullDepth = "identical_to_full_depth"
        case exitHistogram = "exit_histogram"
        case acceptanceRate = "acceptance_rate"
    }
}

/// llama.cpp's llama-bench on the same GGUF file, threads and lengths, measured in the same
/// run, and sortedtrain's full-depth rates over it.
public struct LlamaCppRates: Codable, Sendable {
    public var build: String
    public var prefillTokensPerSecond: Double
    public var decodeTokensPerSecond: Double
    public var prefillRatio: Double
    public var decodeRatio: Double

    public init(build: String, prefillTokensPerSecond: Double, decodeTokensPerSecond: Double, prefillRatio: Double, decodeRatio: Double) {
        self.build = build
        self.prefillTokensPerSecond = prefillTokensPerSecond
        self.decodeTokensPerSecond = decodeTokensPerSecond
        self.prefillRatio = prefillRatio
        self.decodeRatio = decodeRatio
    }

    enum CodingKeys: String, CodingKey {
        case build
        case prefillTokensPerSecond = "prefill_tokens_per_s"
        case decodeTokensPerSecond = "decode_tokens_per_s"
        case prefillRatio = "prefill_ratio"
        case decodeRatio = "decode_ratio"
    }
}

public struct GenerationBenchmarkResult: Codable, Sendable {
    public var model: String
    /// How the matrices were stored while decoding (f32, q8_0, …), and the quantized kernels' ISA.
    public var weightFormat: String
    public var quantKernel: String
    public var openblasCore: String
    public var threads: Int
    public var readBandwidthGBPerSecond: Double
    public var promptTokens: Int
    public var newTokens: Int
    public var batchSize: Int
    /// Prompts the strategies answered, and the full-depth answers' tokens (what their
    /// agreement is counted over).
    public var answeredPrompts: Int
    public var answeredTokens: Int
    public var depths: [DepthSpeed]
    public var strategies: [StrategySpeed]
    /// Memory while serving one sequence at full depth: the process's peak resident set through
    /// loading, a prefill and a batch-1 decode (the bandwidth probe's buffer excluded; nil where
    /// the peak cannot be reset), the weights as held, and that sequence's KV cache.
    public var peakRSSBatch1MiB: Double?
    public var weightBytes: Int
    public var kvCacheBytesBatch1: Int
    /// The model file's size, for a single-file model (GGUF, HDF5).
    public var modelFileBytes: Int?
    public var llamaCpp: LlamaCppRates?
    /// Why llama.cpp was not measured, when it was asked for.
    public var llamaCppSkipped: String?

    enum CodingKeys: String, CodingKey {
        case model, threads, depths, strategies
        case peakRSSBatch1MiB = "peak_rss_batch1_mb"
        case weightBytes = "weight_bytes"
        case kvCacheBytesBatch1 = "kv_cache_bytes_batch1"
        case modelFileBytes = "model_file_bytes"
        case llamaCpp = "llama_cpp"
        case llamaCppSkipped = "llama_cpp_skipped"
        case weightFormat = "weight_format"
        case quantKernel = "quant_kernel"
        case openblasCore = "openblas_core"
        case readBandwidthGBPerSecond = "read_bandwidth_gb_per_s"
        case promptTokens = "prompt_tokens"
        case newTokens = "new_tokens"
        case batchSize = "batch_size"
        case answeredPrompts = "answered_prompts"
        case answeredTokens = "answered_tokens"
    }
}

public enum GenerationBenchmark {
    /// prompts: token ids of the prompts to answer (the batch uses the first batchSize,
    /// repeated when fewer); a prefill prompt of promptTokens ids is cut from their concatenation.
    public static func run(_ loaded: LoadedModel, prompts: [[Int32]], settings s: GenerationBenchmarkSettings,
                           progress: (String) -> Void = { _ in }) throws -> GenerationBenchmarkResult {
        let model = loaded.model, c = model.config, L = c.numHiddenLayers
        precondition(!prompts.isEmpty, "GenerationBenchmark: no prompts")
        let window = min(s.window ?? c.maxPositionEmbeddings, c.maxPositionEmbeddings)
        guard (1..<window).contains(s.promptTokens), (1..<window).contains(s.newTokens) else {
            throw ConfigError(key: "prompt_tokens", "prompt tokens (\(s.promptTokens)) and new tokens (\(s.newTokens)) must each be in 1..<\(window), the model's context")
        }
        guard s.batchSize >= 1 else { throw ConfigError(key: "batch_size", "must be positive, got \(s.batchSize)") }
        if let n = s.answers, !(1...prompts.count).contains(n) {
            throw ConfigError(key: "answers", "\(n) prompts to answer, but there are \(prompts.count): give at most \(prompts.count), or more prompts")
        }
        let capacity = min(window, max(s.promptTokens, prompts.map(\.count).max()!) + s.newTokens + 1)
        try TextGenerator.checkMemory(model: model, slots: s.batchSize, layers: L, capacity: capacity)
        // The peak through loading, then the peak from here with the bandwidth probe's buffer left out.
        let loadPeak = ProcessMemory.peakMiB()
        let bandwidth = MemoryBandwidth.measureRead()
        let peakReset = ProcessMemory.resetPeak()
        var peakBatch1: Double?
        progress(String(format: "read bandwidth %.1f GB/s (%d threads, OpenBLAS %@)", bandwidth, BLAS.threads, BLAS.coreName))
        if BLAS.coreName.lowercased() == "prescott" {
            progress("note: OpenBLAS chose its generic Prescott (SSE3) kernel: this OpenBLAS does not know the CPU; OPENBLAS_CORETYPE=Haswell (or SkylakeX on AVX-512) runs its fast kernels")
        }

        var long: [Int32] = []
        while long.count < s.promptTokens { long += prompts.flatMap { $0 } }
        let prefillPrompt = Array(long.prefix(s.promptTokens))
        let batch = (0..<s.batchSize).map { prompts[$0 % prompts.count] }
        let single = [prompts[0]]

        /// Best-of-repeats stats of one strategy on the given prompts.
        func measure(_ strategy: DecodingStrategy, _ inputs: [[Int32]], batchSize: Int, newTokens: Int,
                     stop: Set<Int32> = []) throws -> (GenerationStats, [[Int32]]) {
            let generator = try TextGenerator(model: model, strategy: strategy, stop: stop, batchSize: batchSize, capacity: capacity)
            var best: GenerationStats?
            var outputs: [[Int32]] = []
            for _ in 0..<s.repeats {
                generator.resetStats()
                outputs = generator.generate(inputs, maxNewTokens: newTokens)
                let stats = generator.stats
                if best == nil || stats.decodeTokensPerSecond > best!.decodeTokensPerSecond { best = stats }
            }
            return (best!, outputs)
        }

        let layerBytes = Double(model.layerBytes(0))
        let headBytes = Double(model.head.bytes)
        let meanLength = Double(prompts[0].count) + Double(s.newTokens) / 2
        var depths: [DepthSpeed] = []
        var fullBatch1 = 0.0
        for depth in (s.exits.contains(L) ? s.exits : s.exits + [L]).reversed() {
            let (prefill, _) = try measure(.fixed(depth: depth), [prefillPrompt], batchSize: 1, newTokens: 1)
            let (one, _) = try measure(.fixed(depth: depth), single, batchSize: 1, newTokens: s.newTokens)
            let (many, _) = try measure(.fixed(depth: depth), batch, batchSize: s.batchSize, newTokens: s.newTokens)
            if depth == L {
                fullBatch1 = one.decodeTokensPerSecond
                if peakReset { peakBatch1 = max(loadPeak, ProcessMemory.peakMiB()) }
            }
            let kvBytes = Double(depth * 2 * c.keyValueWidth * 4) * meanLength
            let bytes = Double(depth) * layerBytes + headBytes + kvBytes
            let speed = DepthSpeed(depth: depth, prefillTokensPerSecond: prefill.prefillTokensPerSecond,
                                   decodeTokensPerSecondBatch1: one.decodeTokensPerSecond,
                                   decodeTokensPerSecondBatched: many.decodeTokensPerSecond,
                                   speedupOverFullDepth: one.decodeTokensPerSecond / max(fullBatch1, 1e-9),
                                   bytesPerToken: bytes,
                                   fractionOfBandwidthLimit: one.decodeTokensPerSecond / (bandwidth * 1e9 / bytes))
            depths.insert(speed, at: 0)
            progress(String(format: "depth %d: prefill %.0f tokens/s, decode %.1f tokens/s (batch 1), %.1f (batch %d), %.2f of the bandwidth limit",
                            depth, speed.prefillTokensPerSecond, speed.decodeTokensPerSecondBatch1, speed.decodeTokensPerSecondBatched,
                            s.batchSize, speed.fractionOfBandwidthLimit))
        }

        // Dynamic depth on the same prompts, one at a time, against full-depth greedy; answers
        // end at the model's end token, as generate's do (what follows an answer is text the
        // model was never tuned on, and would measure the draft on noise).
        let answered = Array(prompts.prefix(s.answers ?? s.batchSize))
        let stop = loaded.stopTokens
        let (full, reference) = try measure(.fixed(depth: L), answered, batchSize: 1, newTokens: s.newTokens, stop: stop)
        var strategies = [StrategySpeed(strategy: "full depth \(L)", tokensPerSecond: full.decodeTokensPerSecond, speedupOverFullDepth: 1,
                                        meanLayersPerToken: full.meanLayersPerToken, agreementWithFullDepth: 1,
                                        identicalToFullDepth: true, exitHistogram: full.exitHistogram, acceptanceRate: nil,
                                        weightBytesPerToken: full.weightBytesPerToken, bytesOverFullDepth: 1)]
        var dynamic: [(String, DecodingStrategy)] = []
        if s.exits.contains(where: { $0 < L }) {
            let exits = s.exits.contains(L) ? s.exits : s.exits + [L]
            dynamic.append(("early exit \(s.earlyExitThresholds.map { String($0) }.joined(separator: ","))",
                            .earlyExit(exits: exits, decision: .confidence(thresholds: s.earlyExitThresholds, measure: s.confidence))))
        }
        for agreement in s.probeAgreements {
            guard let probes = loaded.probes else { break }
            guard let level = probes.level(forAgreement: agreement) else {
                progress(String(format: "early exit by probes: no calibrated level reaches agreement %.3f", agreement))
                continue
            }
            dynamic.append((String(format: "early exit by probes, agreement %.2f (token risk %.3f)", agreement, level.tokenRisk),
                            .earlyExit(exits: probes.exits + [L], decision: .probe(probes, thresholds: level.thresholds))))
        }
        dynamic += s.speculations
        for (name, strategy) in dynamic {
            let (stats, outputs) = try measure(strategy, answered, batchSize: 1, newTokens: s.newTokens, stop: stop)
            let (same, total) = tokenAgreement(outputs, reference)
            let speed = StrategySpeed(strategy: name, tokensPerSecond: stats.decodeTokensPerSecond,
                                      speedupOverFullDepth: stats.decodeTokensPerSecond / max(full.decodeTokensPerSecond, 1e-9),
                                      meanLayersPerToken: stats.meanLayersPerToken,
                                      agreementWithFullDepth: Double(same) / Double(max(total, 1)),
                                      identicalToFullDepth: outputs == reference, exitHistogram: stats.exitHistogram,
                                      acceptanceRate: stats.acceptanceRate, weightBytesPerToken: stats.weightBytesPerToken,
                                      bytesOverFullDepth: stats.weightBytesPerToken / max(full.weightBytesPerToken, 1))
            strategies.append(speed)
            progress(String(format: "%@: %.1f tokens/s (%.2f× full depth), %.2f layers per token, %.2f× full depth's weight bytes per token, agreement %.3f",
                            name, speed.tokensPerSecond, speed.speedupOverFullDepth, speed.meanLayersPerToken, speed.bytesOverFullDepth,
                            speed.agreementWithFullDepth))
        }
        return GenerationBenchmarkResult(model: loaded.description, weightFormat: model.formatDescription,
                                         quantKernel: QuantKernels.name, openblasCore: BLAS.coreName, threads: BLAS.threads,
                                         readBandwidthGBPerSecond: bandwidth, promptTokens: prefillPrompt.count,
                                         newTokens: s.newTokens, batchSize: s.batchSize, answeredPrompts: answered.count,
                                         answeredTokens: reference.reduce(0) { $0 + $1.count }, depths: depths, strategies: strategies,
                                         peakRSSBatch1MiB: peakBatch1, weightBytes: model.residentBytes,
                                         kvCacheBytesBatch1: L * 2 * c.keyValueWidth * 4 * (max(prompts[0].count, prefillPrompt.count) + s.newTokens),
                                         modelFileBytes: loaded.fileBytes)
    }
}
