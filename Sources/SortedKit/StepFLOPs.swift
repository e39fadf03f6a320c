// Floating-point operations of a training step: the useful work, as model-FLOP
// utilisation counts it. Attention counts the T(T+1)/2 query–key pairs causality leaves
// (the tiled kernel skips the tiles above the diagonal); work done twice, the attention
// backward's recomputed scores or `train.recompute`'s second forward, is not counted.

public enum StepFLOPs {
    /// Forward FLOPs of one decoder layer on B sequences of T tokens.
    public static func layerForward(_ c: LlamaConfig, batch B: Int, sequence T: Int) -> Double {
        let N = Double(B * T), D = Double(c.hiddenSize), F = Double(c.intermediateSize)
        let projections = 2 * N * D * Double(c.qkvWidth) + 2 * N * Double(c.queryWidth) * D + 6 * N * D * F
        let pairs = Double(T) * Double(T + 1) / 2
        let attention = 4 * Double(B * c.numAttentionHeads) * pairs * Double(c.headDim)
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
