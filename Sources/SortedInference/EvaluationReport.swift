// EvaluationReport: what `sortedtrain eval --json` writes — every exit's figures for a model,
// and optionally for a second one beside it — and what an export's model card reads back.
import Foundation

public struct EvaluationReport: Codable, Sendable {
    public var model: String
    public var exits: [ExitReport]
    public var compared: Compared?
    /// Dynamic-depth strategies graded on the same questions (eval --early-exit-agreement).
    public var strategies: [StrategyReport]?

    public struct Compared: Codable, Sendable {
        public var model: String
        public var exits: [ExitReport]
        public init(model: String, exits: [ExitReport]) {
            self.model = model
            self.exits = exits
        }
    }

    public init(model: String, exits: [ExitReport], compared: Compared? = nil) {
        self.model = model
        self.exits = exits
        self.compared = compared
    }
}
