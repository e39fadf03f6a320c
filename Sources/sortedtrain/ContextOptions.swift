// ContextOptions: the token window of the commands that generate (generate, bench generate),
// and what happens to a prompt that does not fit it: refused with its length and what fits,
// or cut to its last tokens with a warning — never cut without a word.
import ArgumentParser
import SortedInference

enum TruncationSide: String, ExpressibleByArgument, CaseIterable {
    /// Refuse a prompt that does not fit.
    case none
    /// Keep a long prompt's last tokens.
    case left
}

struct ContextOptions: ParsableArguments {
    @Option(parsing: .unconditional, help: "Token window: prompt and answer together (default and most: the model's max_position_embeddings).")
    var context: Int?

    @Option(help: "A prompt longer than the window: none (refuse it) or left (keep its last tokens, with a warning).")
    var truncate: TruncationSide = .none

    func validate() throws {
        if let context, context < 2 { throw CommandLineError("--context must be at least 2 tokens (a prompt token and a new one), got \(context)") }
    }

    /// The window for `loaded`: --context, at most the model's positions.
    func window(_ loaded: LoadedModel) throws -> Int {
        let positions = loaded.model.config.maxPositionEmbeddings
        if let context, context > positions {
            throw CommandLineError("--context \(context): the model has \(positions) positions (max_position_embeddings)")
        }
        return context ?? positions
    }

    /// The prompts as they fit `window` with room for one new token: refused, or cut on the left.
    func fit(_ prompts: [[Int32]], window: Int, positions: Int, names: (Int) -> String) throws -> [[Int32]] {
        let room = window - 1
        let larger = window < positions ? "give a larger --context (up to the model's \(positions) positions), " : ""
        return try prompts.enumerated().map { i, ids in
            guard ids.count > room else { return ids }
            switch truncate {
            case .none:
                throw CommandLineError("\(names(i)) is \(ids.count) tokens; the window of \(window) holds \(room) with one new token: shorten it, \(larger)or pass --truncate left to keep its last \(room) tokens")
            case .left:
                printProgress("Warning: \(names(i)) is \(ids.count) tokens; keeping its last \(room) (--truncate left)")
                return Array(ids.suffix(room))
            }
        }
    }
}
