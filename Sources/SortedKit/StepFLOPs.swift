// Floating-point operations of a training step, counted from the shapes the kernels run
// (attention scores are computed for the full T×T square, so that is what is counted).

public enum StepFLOPs {
    /// Forward FLOPs of one decoder layer on B sequences of T tokens.
    public static func layerForward(_ c: LlamaConfig, batch B: Int, sequence T: Int) -> Double {
        let N = Double(B * T), D = Double(c.hiddenSize), F = Double(c.intermediateSize)
        let projections = 2 * N * D * Double(c.qkvWidth) + 2 * N * Double(c.queryWidth) * D + 6 * N * D * F
        let attention = 4 * Double(B * c.numAttentionHeads) * Double(T * T) * Double(c.headDim)
        return projections + attention
    }

    /// Forward + backward (2× forward) of the layers up to the deepest exit, plus the
    /// fused head and cross-entropy (6·n·V·D) at every exit on n labelled tokens.
    public static func trainingStep(_ c: LlamaConfig, batch B: Int, sequence T: Int,
                                    exits: [Int], labelledTokens n: Int) -> Double {
        let depth = exits.max() ?? 0
        let layers = 3 * Double(depth) * layerForward(c, batch: B, sequence: T)
        let heads = Double(exits.count) * 6 * Double(n) * Double(c.vocabSize) * Double(c.hiddenSize)
        return layers + heads
    }
}
