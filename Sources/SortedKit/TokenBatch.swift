// TokenBatch: B sequences of T token ids and their next-token targets.

public struct TokenBatch: Sendable {
    /// Targets below zero (conventionally -100) carry no loss: prompt and padding tokens.
    public static let ignoreIndex: Int32 = -100

    public let batchSize: Int        // B
    public let sequenceLength: Int   // T
    public let tokens: [Int32]       // [B·T]
    /// targets[t] is the token that position t must predict: [B·T].
    public let targets: [Int32]

    public init(batchSize: Int, sequenceLength: Int, tokens: [Int32], targets: [Int32]) {
        precondition(tokens.count == batchSize * sequenceLength && targets.count == tokens.count,
                     "TokenBatch: tokens and targets must both hold B·T values")
        self.batchSize = batchSize
        self.sequenceLength = sequenceLength
        self.tokens = tokens
        self.targets = targets
    }

    /// From HF-style labels (unshifted, -100 where ignored): target[t] = labels[t+1] within
    /// each sequence; the last position of a sequence has no target.
    public init(batchSize: Int, sequenceLength: Int, tokens: [Int32], labels: [Int32]) {
        var targets = [Int32](repeating: Self.ignoreIndex, count: labels.count)
        for b in 0..<batchSize {
            for t in 0..<(sequenceLength - 1) {
                let l = labels[b * sequenceLength + t + 1]
                targets[b * sequenceLength + t] = l < 0 ? Self.ignoreIndex : l
            }
        }
        self.init(batchSize: batchSize, sequenceLength: sequenceLength, tokens: tokens, targets: targets)
    }

    /// Number of positions with a target.
    public var labelledCount: Int { targets.reduce(0) { $0 + ($1 >= 0 ? 1 : 0) } }

    /// Throws when an id is outside the vocabulary.
    public func validate(vocabSize V: Int) throws {
        if let i = tokens.firstIndex(where: { $0 < 0 || Int($0) >= V }) {
            throw TokenBatchError.idOutsideVocabulary(field: .tokens, index: i, id: tokens[i], vocabularySize: V)
        }
        if let i = targets.firstIndex(where: { Int($0) >= V }) {
            throw TokenBatchError.idOutsideVocabulary(field: .targets, index: i, id: targets[i], vocabularySize: V)
        }
    }
}

/// A batch that the model cannot take (data prepared for another vocabulary).
public enum TokenBatchError: Error, Equatable, CustomStringConvertible {
    public enum Field: String, Sendable { case tokens, targets }
    case idOutsideVocabulary(field: Field, index: Int, id: Int32, vocabularySize: Int)

    public var description: String {
        switch self {
        case .idOutsideVocabulary(let field, let index, let id, let V):
            return "\(field.rawValue)[\(index)]: id \(id) is outside the vocabulary 0..<\(V)"
        }
    }
}
