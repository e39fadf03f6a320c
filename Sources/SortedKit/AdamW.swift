// AdamW (decoupled weight decay, bias correction) over the flat parameter buffer, and
// global gradient-norm clipping. Matches torch.optim.AdamW's single-tensor update.
import Foundation

public struct AdamWSettings: Codable, Equatable, Sendable {
    public var learningRate: Double
    public var beta1: Double
    public var beta2: Double
    public var eps: Double
    public var weightDecay: Double
    /// RMSNorm weights and embeddings are excluded from weight decay unless these are set.
    public var decayNorms: Bool
    public var decayEmbeddings: Bool

    public init(learningRate: Double = 2e-5, beta1: Double = 0.9, beta2: Double = 0.999, eps: Double = 1e-8,
                weightDecay: Double = 0.0, decayNorms: Bool = false, decayEmbeddings: Bool = false) {
        self.learningRate = learningRate
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.weightDecay = weightDecay
        self.decayNorms = decayNorms
        self.decayEmbeddings = decayEmbeddings
    }

    public func validate() throws {
        if !(learningRate >= 0 && learningRate.isFinite) { throw ConfigError(key: "optim.lr", "must be a non-negative number, got \(learningRate)") }
        if !(beta1 >= 0 && beta1 < 1) { throw ConfigError(key: "optim.beta1", "must be in [0, 1), got \(beta1)") }
        if !(beta2 >= 0 && beta2 < 1) { throw ConfigError(key: "optim.beta2", "must be in [0, 1), got \(beta2)") }
        if !(eps > 0 && eps.isFinite) { throw ConfigError(key: "optim.eps", "must be positive, got \(eps)") }
        if !(weightDecay >= 0 && weightDecay.isFinite) { throw ConfigError(key: "optim.weight_decay", "must be non-negative, got \(weightDecay)") }
    }
}

public final class AdamW {
    public let settings: AdamWSettings
    /// First and second moments, in the parameter buffer's layout.
    public let firstMoment: FloatBuffer
    public let secondMoment: FloatBuffer
    /// Number of updates taken (torch's `step`).
    public var stepCount: Int = 0
    /// Buffer ranges that take weight decay.
    public let decayedRanges: [Range<Int>]

    public init(layout: ParameterLayout, settings: AdamWSettings) throws {
        try settings.validate()
        self.settings = settings
        firstMoment = FloatBuffer(count: layout.count)
        secondMoment = FloatBuffer(count: layout.count)
        decayedRanges = layout.tensors.filter { tensor in
            switch tensor.role {
            case .linear, .head: return true
            case .norm: return settings.decayNorms
            case .embedding: return settings.decayEmbeddings
            }
        }.map(\.range)
    }

    /// One update of `parameters` from `gradients` at learning rate `lr`.
    public func step(parameters: FloatBuffer, gradients: FloatBuffer, learningRate lr: Double) {
        stepCount += 1
        let s = settings
        let t = Double(stepCount)
        let stepSize = Float(lr / (1 - pow(s.beta1, t)))
        let correction2Sqrt = Float((1 - pow(s.beta2, t)).squareRoot())
        let b1 = Float(s.beta1), b2 = Float(s.beta2), eps = Float(s.eps)
        let decay = Float(1 - lr * s.weightDecay)
        let p = parameters.pointer, g = gradients.pointer
        let m = firstMoment.pointer, v = secondMoment.pointer
        if s.weightDecay != 0 {
            for range in decayedRanges {
                for i in range { p[i] *= decay }
            }
        }
        for i in 0..<parameters.count {
            let gi = g[i]
            m[i] += (gi - m[i]) * (1 - b1)
            v[i] = v[i] * b2 + (1 - b2) * gi * gi
            p[i] -= stepSize * m[i] / (v[i].squareRoot() / correction2Sqrt + eps)
        }
    }
}

/// The global L2 norm of all gradients (double-precision sum).
public func gradientNorm(_ gradients: FloatBuffer) -> Double {
    var sum = 0.0
    let g = gradients.pointer
    var i = 0
    while i + 8 <= gradients.count {
        let v = load8(g + i)
        sum += Double((v * v).sum())
        i += 8
    }
    while i < gradients.count {
        sum += Double(g[i] * g[i])
        i += 1
    }
    return sum.squareRoot()
}

/// Scales the gradients so their norm is at most maxNorm (torch's clip_grad_norm_:
/// factor maxNorm / (norm + 1e-6), applied only when below 1). Returns the norm before.
@discardableResult
public func clipGradientNorm(_ gradients: FloatBuffer, maxNorm: Double) -> Double {
    let norm = gradientNorm(gradients)
    let factor = maxNorm / (norm + 1e-6)
    if factor < 1 { scaleInPlace(gradients.pointer, gradients.count, by: Float(factor)) }
    return norm
}
