// AdamW (decoupled weight decay, bias correction) over the flat parameter buffer or, under
// ZeRO-1, over one rank's owned range of it, and global gradient-norm clipping. Matches
// torch.optim.AdamW's single-tensor update.
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
        // Decoupled decay multiplies every weight by 1 − lr·wd per step: at 1 or more it
        // zeroes or flips the weights, which no schedule recovers from.
        if learningRate * weightDecay >= 1 {
            throw ConfigError(key: "optim.weight_decay", "\(weightDecay) × lr \(learningRate) ≥ 1 would wipe the weights in one step; typical values are 0 to 0.1")
        }
    }
}

public final class AdamW {
    public let settings: AdamWSettings
    /// The part of the parameter buffer this optimizer updates (all of it unless sharded).
    public let owned: Range<Int>
    /// First and second moments of the owned range: element i is parameter owned.lowerBound + i.
    public let firstMoment: FloatBuffer
    public let secondMoment: FloatBuffer
    /// The owned range cut into runs of tensors that do or do not take weight decay.
    let segments: [(range: Range<Int>, decayed: Bool)]

    /// `owned` (whole tensors; nil: the whole buffer) is what this rank updates under ZeRO-1.
    public init(layout: ParameterLayout, settings: AdamWSettings, owned: Range<Int>? = nil) throws {
        try settings.validate()
        self.settings = settings
        let owned = owned ?? 0..<layout.count
        precondition(owned.lowerBound >= 0 && owned.upperBound <= layout.count, "the owned range lies in the buffer")
        self.owned = owned
        firstMoment = FloatBuffer(count: owned.count)
        secondMoment = FloatBuffer(count: owned.count)
        var runs: [(range: Range<Int>, decayed: Bool)] = []
        for tensor in layout.tensors where owned.contains(tensor.offset) {
            let decayed: Bool
            switch tensor.role {
            case .linear, .head: decayed = true
            case .norm: decayed = settings.decayNorms
            case .embedding: decayed = settings.decayEmbeddings
            }
            if let last = runs.last, last.decayed == decayed, last.range.upperBound == tensor.offset {
                runs[runs.count - 1].range = last.range.lowerBound..<tensor.range.upperBound
            } else {
                runs.append((tensor.range, decayed))
            }
        }
        segments = runs
    }

    /// Bytes of the two moments this optimizer holds.
    public var momentBytes: Int { 2 * owned.count * MemoryLayout<Float>.size }

    /// Update number `number` (1-based, torch's `step`: it sets the bias correction) of the
    /// owned range of `parameters` (the whole buffer) from `gradients` · `gradientScale` at
    /// learning rate `lr` (the scale is where clipping lands, without a separate pass over
    /// the gradients). `gradients` holds the owned range's gradients, laid out as the moments.
    public func step(_ number: Int, parameters: FloatBuffer, gradients: FloatBuffer, learningRate lr: Double, gradientScale: Float = 1) {
        precondition(number >= 1, "AdamW updates are numbered from 1")
        precondition(gradients.count == owned.count && parameters.count >= owned.upperBound, "AdamW's buffers match its owned range")
        let s = settings
        let t = Double(number)
        let stepSize = Float(lr / (1 - pow(s.beta1, t)))
        let correction2Sqrt = Float((1 - pow(s.beta2, t)).squareRoot())
        let b1 = Float(s.beta1), b2 = Float(s.beta2), eps = Float(s.eps)
        let decay = Float(1 - lr * s.weightDecay)
        let p = parameters.pointer, g = gradients.pointer
        let m = firstMoment.pointer, v = secondMoment.pointer
        for (range, decayed) in segments {
            let local = range.lowerBound - owned.lowerBound
            Parallel.forEachRange(range.count) { piece in
                update(piece.lowerBound, piece.upperBound,
                       p: p + range.lowerBound, g: g + local, m: m + local, v: v + local, decay: decayed && s.weightDecay != 0 ? decay : 1,
                       oneMinusB1: 1 - b1, b2: b2, oneMinusB2: 1 - b2, stepSize: stepSize,
                       correction2Sqrt: correction2Sqrt, eps: eps, scale: gradientScale)
            }
        }
    }

    /// torch's order: p ← p·(1 − lr·wd); m ← m + (g − m)(1 − β1); v ← β2·v + (1 − β2)·g²;
    /// p ← p − stepSize·m / (√v / √(1 − β2ᵗ) + ε).
    @inline(__always)
    private func update(_ start: Int, _ end: Int, p: UnsafeMutablePointer<Float>, g: UnsafeMutablePointer<Float>,
                        m: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>, decay: Float,
                        oneMinusB1: Float, b2: Float, oneMinusB2: Float, stepSize: Float,
                        correction2Sqrt: Float, eps: Float, scale: Float) {
        var i = start
        let d8 = Float8(repeating: decay), a8 = Float8(repeating: oneMinusB1), b8 = Float8(repeating: b2)
        let c8 = Float8(repeating: oneMinusB2), s8 = Float8(repeating: stepSize)
        let r8 = Float8(repeating: correction2Sqrt), e8 = Float8(repeating: eps), g8 = Float8(repeating: scale)
        while i + 8 <= end {
            let gi = load8(g + i) * g8
            let mi = load8(m + i) + (gi - load8(m + i)) * a8
            let vi = load8(v + i) * b8 + c8 * gi * gi
            store8(mi, m + i)
            store8(vi, v + i)
            store8(load8(p + i) * d8 - s8 * mi / (vi.squareRoot() / r8 + e8), p + i)
            i += 8
        }
        while i < end {
            let gi = g[i] * scale
            m[i] += (gi - m[i]) * oneMinusB1
            v[i] = v[i] * b2 + oneMinusB2 * gi * gi
            p[i] = p[i] * decay - stepSize * m[i] / (v[i].squareRoot() / correction2Sqrt + eps)
            i += 1
        }
    }
}

/// The global L2 norm of all gradients (double-precision sums over fixed blocks).
public func gradientNorm(_ gradients: FloatBuffer) -> Double {
    squaredNorm(gradients).squareRoot()
}

/// Σ g² over the buffer in Double: a rank's share of the global norm under ZeRO-1.
public func squaredNorm(_ gradients: FloatBuffer) -> Double {
    let g = gradients.pointer
    return Parallel.sumBlocks(gradients.count) { range in
        var sum = 0.0
        var i = range.lowerBound
        while i + 8 <= range.upperBound {
            let v = load8(g + i)
            sum += Double((v * v).sum())
            i += 8
        }
        while i < range.upperBound {
            sum += Double(g[i] * g[i])
            i += 1
        }
        return sum
    }
}

/// torch's clip_grad_norm_ factor for a gradient of this norm: maxNorm / (norm + 1e-6)
/// when that is below 1, else 1.
public func clippingFactor(norm: Double, maxNorm: Double) -> Float {
    let factor = maxNorm / (norm + 1e-6)
    return factor < 1 ? Float(factor) : 1
}
