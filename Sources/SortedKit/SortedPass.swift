// SortedPass: the nested forward and backward of one batch shape (B, T).
// The forward runs the layers once up to the deepest exit; then the shared final norm, head
// and cross-entropy of all exits run stacked, with their backward (FusedHeadLoss), and keep
// each exit's dh_e. The backward walks the layers down and adds dh_e when it reaches depth
// e, so the layer code never knows about exits. Every backward accumulates (+=) into the gradients.
// With `recompute`, only each layer's input is kept: the backward runs the layer's forward
// again into one layer's worth of buffers just before its backward.

public final class SortedPass {
    public let model: LlamaModel
    public let batchSize: Int        // B
    public let sequenceLength: Int   // T
    private var config: LlamaConfig { model.config }
    private let rows: Int            // N = B·T
    /// Whether the backward recomputes each layer's activations from its saved input.
    public let recompute: Bool
    /// The projections' and the head's GEMMs, in float32 or bf16 (attention's tiles follow the same precision).
    public let matmul: MatrixMultiply
    private let rope: RotaryEmbedding
    private let attention: CausalAttention
    private let head: FusedHeadLoss

    // Saved activations: the residual stream at every depth, and the rest for L layers, or
    // for one layer at a time when recomputing (shapes per layer).
    private let residual: FloatBuffer      // [(L+1), N, D]: input of layer l at block l
    // normed1, qkv, normed2, gateUp and activated: in bf16, kept as their rounding (ActivationBuffer).
    private let normed1: ActivationBuffer // [L, N, D]
    private let inverseRMS1: FloatBuffer   // [L, N]
    private let qkv: ActivationBuffer      // [L, N, (H+2Hkv)·Dh], q and k after RoPE
    private let logSumExp: FloatBuffer     // [L, B, H, T]: attention's softmax normalisers
    private let attended: FloatBuffer      // [L, N, H·Dh]
    private let mid: FloatBuffer           // [L, N, D]: residual after attention
    private let normed2: ActivationBuffer // [L, N, D]
    private let inverseRMS2: FloatBuffer   // [L, N]
    private let gateUp: ActivationBuffer   // [L, N, 2F]
    private let activated: ActivationBuffer // [L, N, F]

    // Scratch for evaluation's logits, each exit's gradient and the backward (in bf16 the forward
    // also writes its float32 activations through dNormed and dActivated before keeping them).
    private let normedFinal: FloatBuffer   // [N, D]
    private let inverseRMSFinal: FloatBuffer // [N]
    private var exitGradients: [Int: FloatBuffer] = [:]  // depth → dh_e [N, D]
    private let dResidual: FloatBuffer     // [N, D]
    private let dNormed: FloatBuffer       // [N, D]
    private let dQKV: FloatBuffer          // [N, (H+2Hkv)·Dh]
    private let dAttended: FloatBuffer     // [N, H·Dh]
    private let dGateUp: FloatBuffer       // [N, 2F]
    private let dActivated: FloatBuffer    // [N, F]
    private let attentionScratch: FloatBuffer
    private let gateUpWide: FloatBuffer    // [N, 2F] in bf16: one layer's gate|up in float32
    private let qkvWide: FloatBuffer       // [N, (H+2Hkv)·Dh] in bf16: one layer's q|k|v in float32

    /// The bytes the buffers below take for one micro-batch (nil when the sizes overflow),
    /// so a run config can be refused before anything is allocated.
    public static func bytesNeeded(config c: LlamaConfig, batchSize: Int, sequenceLength: Int, exits: Int,
                                   headChunkRows: Int = defaultHeadChunkRows, recompute: Bool = false,
                                   precision: TrainingPrecision = .fp32) -> Int? {
        // In Double: the sizes may come from a hostile config, and a product must not trap.
        let B = Double(batchSize), T = Double(sequenceLength), N = B * T
        let L = Double(c.numHiddenLayers), D = Double(c.hiddenSize), F = Double(c.intermediateSize)
        let qkv = Double(c.qkvWidth), q = Double(c.queryWidth), H = Double(c.numAttentionHeads)
        // Per token: the residual stream at every depth; saved per layer (two normed inputs,
        // mid, qkv, attended, gate|up, activation, two RMS factors, a log-sum-exp per head),
        // for every layer or for one when recomputing; the single-layer backward scratch and
        // each exit's dh_e.
        // normed1, q|k|v, normed2, gate|up and activated take half the bytes in bf16, which
        // widens one layer's q|k|v and gate|up for attention's and SwiGLU's backward.
        let bf16 = precision == .bf16
        let perLayerToken = 3 * D + qkv + q + 3 * F + 2 + H - (bf16 ? (2 * D + qkv + 3 * F) / 2 : 0)
        let savedLayers = recompute ? 1 : L
        let scratchToken = 3 * D + 1 + qkv + q + 3 * F + (bf16 ? qkv + 2 * F : 0)
        let stack = max(L, min(Double(headChunkRows), L * N))   // as stackRows, in Double
        let floats = N * ((L + 1) * D + savedLayers * perLayerToken + scratchToken + Double(exits) * D)
            + FusedHeadLoss.floatsNeeded(vocab: c.vocabSize, dim: c.hiddenSize, stackRows: stack)
            + CausalAttention.scratchFloats(kvHeads: c.numKeyValueHeads, headDim: c.headDim, batch: B, sequenceLength: T,
                                            precision: precision)
        let bytes = 4 * floats
        return bytes < 9e18 ? Int(bytes) : nil
    }

    /// Stacked rows of all exits per head GEMM, by default: 512 rows × V floats of logits
    /// scratch (96 MiB at V 49152), as one exit's chunk took before stacking. With the
    /// system OpenBLAS (Haswell kernel, 2 threads) the SmolLM2-shape SFT head ran 2.23 s/step
    /// at 1024 rows against 2.27 s at 512: the GEMMs are already compute-bound at m 512, so
    /// more rows would only cost memory.
    public static let defaultHeadChunkRows = 512

    /// The head's stacked rows: at least one per exit (up to L), at most every exit's every token.
    private static func stackRows(_ headChunkRows: Int, layers L: Int, rows N: Int) -> Int {
        max(L, min(headChunkRows, L * N))
    }

    /// headChunkRows: rows of all exits stacked per head GEMM in the fused loss (memory ≈ rows·V floats).
    public init(model: LlamaModel, batchSize: Int, sequenceLength: Int, headChunkRows: Int = defaultHeadChunkRows,
                recompute: Bool = false, precision: TrainingPrecision = .fp32) throws {
        let c = model.config
        matmul = try MatrixMultiply(precision: precision)
        matmul.roundWeightsOncePerPass(of: model.parameters.pointer, count: model.parameters.count)
        guard batchSize > 0 else { throw ConfigError(key: "batch_size", "must be positive, got \(batchSize)") }
        guard sequenceLength > 0 && sequenceLength <= c.maxPositionEmbeddings else {
            throw ConfigError(key: "sequence_length",
                              "\(sequenceLength) must be in 1...max_position_embeddings (\(c.maxPositionEmbeddings))")
        }
        self.model = model
        self.batchSize = batchSize
        self.sequenceLength = sequenceLength
        self.recompute = recompute
        let N = batchSize * sequenceLength, D = c.hiddenSize, F = c.intermediateSize
        let L = recompute ? 1 : c.numHiddenLayers
        rows = N
        rope = RotaryEmbedding(headDim: c.headDim, maxLength: sequenceLength, theta: c.ropeTheta)
        attention = CausalAttention(heads: c.numAttentionHeads, kvHeads: c.numKeyValueHeads,
                                    headDim: c.headDim, sequenceLength: sequenceLength, precision: precision)
        head = FusedHeadLoss(vocab: c.vocabSize, dim: D,
                             stackRows: Self.stackRows(headChunkRows, layers: c.numHiddenLayers, rows: N), matmul: matmul)
        residual = FloatBuffer(count: (c.numHiddenLayers + 1) * N * D)
        normed1 = ActivationBuffer(count: L * N * D, precision: precision)
        inverseRMS1 = FloatBuffer(count: L * N)
        qkv = ActivationBuffer(count: L * N * c.qkvWidth, precision: precision)
        qkvWide = FloatBuffer(count: precision == .bf16 ? N * c.qkvWidth : 0)
        logSumExp = FloatBuffer(count: L * attention.savedCount(batch: batchSize))
        attended = FloatBuffer(count: L * N * c.queryWidth)
        mid = FloatBuffer(count: L * N * D)
        normed2 = ActivationBuffer(count: L * N * D, precision: precision)
        inverseRMS2 = FloatBuffer(count: L * N)
        gateUp = ActivationBuffer(count: L * N * 2 * F, precision: precision)
        gateUpWide = FloatBuffer(count: precision == .bf16 ? N * 2 * F : 0)
        activated = ActivationBuffer(count: L * N * F, precision: precision)
        normedFinal = FloatBuffer(count: N * D)
        inverseRMSFinal = FloatBuffer(count: N)
        dResidual = FloatBuffer(count: N * D)
        dNormed = FloatBuffer(count: N * D)
        dQKV = FloatBuffer(count: N * c.qkvWidth)
        dAttended = FloatBuffer(count: N * c.queryWidth)
        dGateUp = FloatBuffer(count: N * 2 * F)
        dActivated = FloatBuffer(count: N * F)
        attentionScratch = FloatBuffer(count: attention.scratchCount(batch: batchSize))
    }

    /// Forward over `exits`, and with `computeGradients` the backward, adding into
    /// model.gradients the gradient of Σ_e weight_e · NLL_e / lossNormalizer (plus, with
    /// `distillation`, α·τ²·Σ_{e ≠ deepest} KL_e / lossNormalizer, the deepest exit detached).
    /// lossNormalizer is the number of labelled tokens the loss is averaged over (across
    /// all ranks and micro-batches in data-parallel training). Returns each exit's local NLL
    /// (and Σ KL).
    @discardableResult
    public func run(_ batch: TokenBatch, exits: [WeightedExit], lossNormalizer: Double,
                    computeGradients: Bool = true, distillation: Distillation? = nil,
                    onGradientsReady: ((GradientBucket) -> Void)? = nil) -> [ExitLoss] {
        precondition(batch.batchSize == batchSize && batch.sequenceLength == sequenceLength,
                     "SortedPass: batch shape differs from the pass's (B, T)")
        precondition(!exits.isEmpty, "SortedPass: no exits")
        matmul.parametersChanged()   // an optimizer step or a load may have moved them since the last pass
        let c = config, L = c.numHiddenLayers, N = rows, D = c.hiddenSize
        let P = model.parameters.pointer, G = model.gradients.pointer, layout = model.layout
        let labelled = batch.targets.indices.compactMap { batch.targets[$0] >= 0 ? Int32($0) : nil }
        let depthOrder = exits.sorted { $0.depth < $1.depth }
        let maxDepth = depthOrder.last!.depth
        precondition(maxDepth <= L && depthOrder.first!.depth >= 1, "SortedPass: exit outside 1...L")

        batch.tokens.withUnsafeBufferPointer { tokens in
            Embedding.forward(tokens: tokens.baseAddress!, table: P + layout.embedding,
                              out: residual.pointer, rows: N, dim: D)
        }
        for l in 0..<maxDepth { layerForward(l) }
        // Every exit's tail in one stacked pass (the head weight streamed once per chunk for all
        // of them); distilling, each exit's KL also needs the deepest exit's logits of the chunk.
        let distilling = distillation.flatMap { d in d.weight > 0 && depthOrder.count > 1 ? d : nil }
        let tails = depthOrder.map { exit in
            ExitTail(hidden: residual.pointer + exit.depth * N * D, dHidden: exitGradient(depth: exit.depth).pointer,
                     gradientScale: Float(exit.weight / lossNormalizer))
        }
        let results = batch.targets.withUnsafeBufferPointer { targets in
            head.run(tails, targets: targets.baseAddress!, labelled: labelled, normWeight: P + layout.finalNorm,
                     headWeight: P + layout.head, eps: Float(c.rmsNormEps), rows: N,
                     distillation: distilling.map { (Float($0.temperature), Float($0.weight * $0.temperature / lossNormalizer)) },
                     backward: computeGradients, dNormWeight: G + layout.finalNorm, dHeadWeight: G + layout.head)
        }
        let losses = zip(depthOrder, results).map {
            ExitLoss(depth: $0.depth, negativeLogLikelihood: $1.nll, tokens: labelled.count, klDivergence: $1.kl)
        }
        guard computeGradients else { return losses }

        // Each bucket in the order it becomes final, reported as soon as it is.
        dResidual.zero()
        for bucket in layout.gradientBucketOrder {
            switch bucket {
            case .tail:
                break   // final before the layers' backward: every exit's head backward ran in the tail
            case .layer(let l) where l >= maxDepth:
                break   // above the deepest exit: no gradient reaches it
            case .layer(let l):
                if depthOrder.contains(where: { $0.depth == l + 1 }) {
                    addInPlace(dResidual.pointer, exitGradient(depth: l + 1).pointer, N * D)
                }
                if recompute { layerForward(l) }
                layerBackward(l)
            case .embedding:
                batch.tokens.withUnsafeBufferPointer { tokens in
                    Embedding.backward(tokens: tokens.baseAddress!, dOut: dResidual.pointer,
                                       dTable: G + layout.embedding, rows: N, dim: D)
                }
            }
            onGradientsReady?(bucket)
        }
        return losses
    }

    /// Logits [B·T, V] of the exit-k sub-model (forward only), for evaluation and tests.
    public func logits(_ batch: TokenBatch, depth k: Int) -> [Float] {
        logits(batch, depth: k, rows: Array(0..<rows))
    }

    /// Logits [rows.count, V] of the exit-k sub-model at the given positions (row b·T + t):
    /// the layers run up to depth k only, the head only on those rows. For generation.
    public func logits(_ batch: TokenBatch, depth k: Int, rows selected: [Int]) -> [Float] {
        precondition(k >= 1 && k <= config.numHiddenLayers, "SortedPass: depth outside 1...L")
        matmul.parametersChanged()
        let c = config, N = rows, D = c.hiddenSize, V = c.vocabSize
        let P = model.parameters.pointer, layout = model.layout
        batch.tokens.withUnsafeBufferPointer { tokens in
            Embedding.forward(tokens: tokens.baseAddress!, table: P + layout.embedding,
                              out: residual.pointer, rows: N, dim: D)
        }
        for l in 0..<k { layerForward(l) }
        let hidden = residual.pointer + k * N * D, normed = normedFinal.pointer
        for (i, row) in selected.enumerated() {
            (normed + i * D).update(from: hidden + row * D, count: D)
        }
        ExitHead.normalize(hidden: normed, rows: selected.count, normWeight: P + layout.finalNorm,
                           eps: Float(c.rmsNormEps), normed: normed, inverseRMS: inverseRMSFinal.pointer, dim: D)
        var out = [Float](repeating: 0, count: selected.count * V)
        out.withUnsafeMutableBufferPointer { o in
            ExitHead.logits(normed: normed, rows: selected.count, headWeight: P + layout.head, vocab: V, dim: D, matmul: matmul,
                            logits: o.baseAddress!)
        }
        return out
    }

    private func exitGradient(depth: Int) -> FloatBuffer {
        if let buffer = exitGradients[depth] { return buffer }
        let buffer = FloatBuffer(count: rows * config.hiddenSize)
        exitGradients[depth] = buffer
        return buffer
    }

    // MARK: - One decoder layer

    /// Layer l's slices of the saved activations.
    private struct LayerActivations {
        let input: UnsafeMutablePointer<Float>       // residual[l]: [N, D]
        let output: UnsafeMutablePointer<Float>      // residual[l+1]: [N, D]
        let normed1: Int                             // offset in normed1: [N, D]
        let inverseRMS1: UnsafeMutablePointer<Float> // [N]
        let qkv: Int                                 // offset in qkv: [N, (H+2Hkv)·Dh]
        let logSumExp: UnsafeMutablePointer<Float>   // [B, H, T]
        let attended: UnsafeMutablePointer<Float>    // [N, H·Dh]
        let mid: UnsafeMutablePointer<Float>         // [N, D]
        let normed2: Int                             // offset in normed2: [N, D]
        let inverseRMS2: UnsafeMutablePointer<Float> // [N]
        let gateUp: Int                              // offset in gateUp: [N, 2F]
        let activated: Int                           // offset in activated: [N, F]
    }

    /// Layer l's slices: its own block of every buffer, or the one block when recomputing.
    private func activations(_ l: Int) -> LayerActivations {
        let c = config, N = rows, D = c.hiddenSize, F = c.intermediateSize
        let block = recompute ? 0 : l
        return LayerActivations(
            input: residual.pointer + l * N * D, output: residual.pointer + (l + 1) * N * D,
            normed1: block * N * D, inverseRMS1: inverseRMS1.pointer + block * N,
            qkv: block * N * c.qkvWidth,
            logSumExp: logSumExp.pointer + block * attention.savedCount(batch: batchSize),
            attended: attended.pointer + block * N * c.queryWidth, mid: mid.pointer + block * N * D,
            normed2: block * N * D, inverseRMS2: inverseRMS2.pointer + block * N,
            gateUp: block * N * 2 * F, activated: block * N * F)
    }

    /// residual[l] → residual[l+1], saving what the backward needs.
    private func layerForward(_ l: Int) {
        let c = config, N = rows, D = c.hiddenSize, F = c.intermediateSize
        let W = c.qkvWidth, A = c.queryWidth
        let w = model.layout.layers[l], P = model.parameters.pointer
        let a = activations(l)
        let x = a.input, att = a.attended, h1 = a.mid
        let out = a.output
        let qkvL = qkv.values(at: a.qkv, scratch: qkvWide.pointer)
        // The GEMM-only activations are written in float32 here (in bf16 into the backward's
        // scratch, free during a forward) and kept by commit.
        let xn1 = normed1.values(at: a.normed1, scratch: dNormed.pointer)
        let xn2 = normed2.values(at: a.normed2, scratch: dNormed.pointer)
        let act = activated.values(at: a.activated, scratch: dActivated.pointer)
        let gu = gateUp.values(at: a.gateUp, scratch: gateUpWide.pointer)
        let eps = Float(c.rmsNormEps)

        StepProfiler.measure("norms") {
            RMSNorm.forward(x: x, weight: P + w.inputNorm, y: xn1, inverseRMS: a.inverseRMS1,
                            rows: N, dim: D, eps: eps)
            normed1.commit(at: a.normed1, count: N * D, from: xn1)
        }
        StepProfiler.measure("projections") {
            matmul.gemm(transposeA: false, transposeB: true, m: N, n: W, k: D,
                      a: normed1.operand(at: a.normed1), lda: D, b: .float(P + w.qkv), ldb: D, beta: 0, c: qkvL, ldc: W)
        }
        StepProfiler.measure("rope") {
            for b in 0..<batchSize {
                // q and k heads are adjacent in a row: rotate H + Hkv heads at once.
                rope.apply(qkvL + b * sequenceLength * W, rows: sequenceLength,
                           heads: c.numAttentionHeads + c.numKeyValueHeads, stride: W, inverse: false)
            }
        }
        StepProfiler.measure("attention") {
            // No write-back: attention's bf16 tiles round q|k|v as they pack them, to the same
            // values the backward reads back.
            qkv.commit(at: a.qkv, count: N * W, from: qkvL)
            attention.forward(qkv: qkvL, logSumExp: a.logSumExp, out: att,
                              scratch: attentionScratch.pointer, batch: batchSize)
        }
        StepProfiler.measure("projections") {
            h1.update(from: x, count: N * D)
            matmul.gemm(transposeA: false, transposeB: true, m: N, n: D, k: A,
                      a: att, lda: A, b: P + w.output, ldb: A, beta: 1, c: h1, ldc: D)
        }
        StepProfiler.measure("norms") {
            RMSNorm.forward(x: h1, weight: P + w.postNorm, y: xn2, inverseRMS: a.inverseRMS2,
                            rows: N, dim: D, eps: eps)
            normed2.commit(at: a.normed2, count: N * D, from: xn2)
        }
        StepProfiler.measure("projections") {
            matmul.gemm(transposeA: false, transposeB: true, m: N, n: 2 * F, k: D,
                      a: normed2.operand(at: a.normed2), lda: D, b: .float(P + w.gateUp), ldb: D, beta: 0, c: gu, ldc: 2 * F)
        }
        StepProfiler.measure("swiglu") {
            gateUp.commit(at: a.gateUp, count: N * 2 * F, from: gu, writeBack: true)   // SwiGLU reads what the backward will
            SwiGLU.forward(gateUp: gu, act: act, rows: N, width: F)
            activated.commit(at: a.activated, count: N * F, from: act)
        }
        StepProfiler.measure("projections") {
            out.update(from: h1, count: N * D)
            matmul.gemm(transposeA: false, transposeB: true, m: N, n: D, k: F,
                      a: activated.operand(at: a.activated), lda: F, b: .float(P + w.down), ldb: F, beta: 1, c: out, ldc: D)
        }
    }

    /// dResidual holds d residual[l+1] on entry and d residual[l] on return; layer l's
    /// parameter gradients accumulate.
    private func layerBackward(_ l: Int) {
        let c = config, N = rows, D = c.hiddenSize, F = c.intermediateSize
        let W = c.qkvWidth, A = c.queryWidth
        let w = model.layout.layers[l], P = model.parameters.pointer, G = model.gradients.pointer
        let a = activations(l)
        let x = a.input, att = a.attended, h1 = a.mid
        let dr = dResidual.pointer

        // MLP: out = h1 + act·W_downᵀ
        StepProfiler.measure("projections") {
            matmul.gemm(transposeA: false, transposeB: false, m: N, n: F, k: D,
                      a: dr, lda: D, b: P + w.down, ldb: F, beta: 0, c: dActivated.pointer, ldc: F)
            matmul.gemm(transposeA: true, transposeB: false, m: D, n: F, k: N,
                      a: .float(dr), lda: D, b: activated.operand(at: a.activated), ldb: F, beta: 1, c: G + w.down, ldc: F)
        }
        StepProfiler.measure("swiglu") {
            let gu = gateUp.read(at: a.gateUp, count: N * 2 * F, scratch: gateUpWide.pointer)
            SwiGLU.backward(dAct: dActivated.pointer, gateUp: gu, dGateUp: dGateUp.pointer, rows: N, width: F)
        }
        StepProfiler.measure("projections") {
            matmul.gemm(transposeA: true, transposeB: false, m: 2 * F, n: D, k: N,
                      a: .float(dGateUp.pointer), lda: 2 * F, b: normed2.operand(at: a.normed2), ldb: D, beta: 1, c: G + w.gateUp, ldc: D)
            matmul.gemm(transposeA: false, transposeB: false, m: N, n: D, k: 2 * F,
                      a: dGateUp.pointer, lda: 2 * F, b: P + w.gateUp, ldb: D, beta: 0, c: dNormed.pointer, ldc: D)
        }
        StepProfiler.measure("norms") {
            RMSNorm.backward(dy: dNormed.pointer, x: h1, weight: P + w.postNorm, inverseRMS: a.inverseRMS2,
                             dx: dr, dWeight: G + w.postNorm, rows: N, dim: D, accumulate: true)
        }

        // Attention: h1 = x + attended·W_oᵀ
        StepProfiler.measure("projections") {
            matmul.gemm(transposeA: false, transposeB: false, m: N, n: A, k: D,
                      a: dr, lda: D, b: P + w.output, ldb: A, beta: 0, c: dAttended.pointer, ldc: A)
            matmul.gemm(transposeA: true, transposeB: false, m: D, n: A, k: N,
                      a: dr, lda: D, b: att, ldb: A, beta: 1, c: G + w.output, ldc: A)
        }
        StepProfiler.measure("attention") {
            let qkvL = qkv.read(at: a.qkv, count: N * W, scratch: qkvWide.pointer)
            attention.backward(dOut: dAttended.pointer, qkv: qkvL, out: att, logSumExp: a.logSumExp,
                               dQKV: dQKV.pointer, scratch: attentionScratch.pointer, batch: batchSize)
        }
        StepProfiler.measure("rope") {
            for b in 0..<batchSize {
                rope.apply(dQKV.pointer + b * sequenceLength * W, rows: sequenceLength,
                           heads: c.numAttentionHeads + c.numKeyValueHeads, stride: W, inverse: true)
            }
        }
        StepProfiler.measure("projections") {
            matmul.gemm(transposeA: true, transposeB: false, m: W, n: D, k: N,
                      a: .float(dQKV.pointer), lda: W, b: normed1.operand(at: a.normed1), ldb: D, beta: 1, c: G + w.qkv, ldc: D)
            matmul.gemm(transposeA: false, transposeB: false, m: N, n: D, k: W,
                      a: dQKV.pointer, lda: W, b: P + w.qkv, ldb: D, beta: 0, c: dNormed.pointer, ldc: D)
        }
        StepProfiler.measure("norms") {
            RMSNorm.backward(dy: dNormed.pointer, x: x, weight: P + w.inputNorm, inverseRMS: a.inverseRMS1,
                             dx: dr, dWeight: G + w.inputNorm, rows: N, dim: D, accumulate: true)
        }
    }
}
