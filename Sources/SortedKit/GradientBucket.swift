// GradientBucket: the parts of the gradient a step finishes one after another (for overlapped sync).

/// The parts of the gradient buffer that become final together, in the order a step
/// finishes them: the tail (final norm and untied head) after the forward, each layer as
/// the backward passes it (top down), the embedding last.
public enum GradientBucket: Hashable, Sendable {
    case tail
    case layer(Int)
    case embedding
}

extension ParameterLayout {
    public func range(of bucket: GradientBucket) -> Range<Int> {
        switch bucket {
        case .tail: return tailRange
        case .layer(let l): return layerRange(l)
        case .embedding: return embeddingRange
        }
    }
}
