// TrainingState: where a run stands, as one value that a checkpoint saves and a resume
// restores whole. The random streams (data order, sampled exits) and the learning-rate
// schedule are pure functions of these counters and the config's seeds, which is what makes
// a resume bit-exact on any number of ranks.
public struct TrainingState: Equatable, Sendable {
    /// Global steps done; the next step to run, and the schedule's position.
    public var step: Int
    /// Position in the global sample stream of the next step's first example.
    public var sampleCursor: Int
    /// AdamW updates applied (torch's `step`; a skipped non-finite step takes none).
    public var optimizerSteps: Int

    public init(step: Int = 0, sampleCursor: Int = 0, optimizerSteps: Int = 0) {
        self.step = step
        self.sampleCursor = sampleCursor
        self.optimizerSteps = optimizerSteps
    }

    /// A fresh run.
    public static let start = TrainingState()
}
