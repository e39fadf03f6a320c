// LlamaModel: the parameters and gradients of a LLaMA decoder in one layer-major buffer each.

public final class LlamaModel: @unchecked Sendable {
    public let config: LlamaConfig
    public let layout: ParameterLayout
    public let parameters: FloatBuffer
    /// Allocated on first use: inference never touches it, so a served model costs its
    /// weights alone.
    public private(set) lazy var gradients = FloatBuffer(count: layout.count)

    /// A model with all parameters zero; call `initializeRandomly` or load weights.
    public init(config: LlamaConfig) throws {
        try config.validate()
        self.config = config
        layout = ParameterLayout(config: config)
        parameters = FloatBuffer(count: layout.count)
    }

    /// HF's LLaMA initialisation: linear and embedding weights ~ N(0, std²), norms 1.
    /// Deterministic in `seed`.
    public func initializeRandomly(seed: UInt64, std: Double = 0.02) {
        var rng = SplitMix64(seed: seed)
        for tensor in layout.tensors {
            let p = parameters.pointer + tensor.offset
            switch tensor.role {
            case .norm:
                p.update(repeating: 1, count: tensor.count)
            case .embedding, .linear, .head:
                for i in 0..<tensor.count { p[i] = Float(rng.nextNormal() * std) }
            }
        }
    }

    public func zeroGradients() {
        let g = gradients.pointer
        Parallel.forEachRange(gradients.count) { range in (g + range.lowerBound).update(repeating: 0, count: range.count) }
    }

    /// A model of the first k layers plus the shared final norm and head: the exit-k
    /// sub-model as a standalone model.
    public func prefix(depth k: Int) throws -> LlamaModel {
        guard k >= 1 && k <= config.numHiddenLayers else {
            throw ConfigError(key: "depth", "\(k) is outside 1...\(config.numHiddenLayers)")
        }
        let sub = try LlamaModel(config: config.truncated(toDepth: k))
        for tensor in sub.layout.tensors {
            guard let source = layout.tensor(named: tensor.name) else { continue }
            (sub.parameters.pointer + tensor.offset).update(from: parameters.pointer + source.offset, count: tensor.count)
        }
        return sub
    }

}

extension LlamaModel {
    /// The first tensor holding NaN or infinite values, and how many: such weights make
    /// every output garbage (a diverged run, a damaged file). nil when all are finite.
    public func nonFiniteTensor() -> (name: String, count: Int)? {
        for t in layout.tensors {
            let n = UnsafeBufferPointer(start: parameters.pointer + t.offset, count: t.count).reduce(0) { $0 + ($1.isFinite ? 0 : 1) }
            if n > 0 { return (t.name, n) }
        }
        return nil
    }
}
