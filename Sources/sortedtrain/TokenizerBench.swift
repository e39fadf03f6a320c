// `sortedtrain bench tokenizer`: encode throughput (MB/s) of sortedtrain's tokenizer on a
// text, side by side with HF `tokenizers` (Python, one thread) on the same documents, and a
// check that both produce the same ids. The measurement is SortedData's TokenizerBenchmark.
import ArgumentParser
import Foundation
import SortedData

struct TokenizerBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenizer",
        abstract: "Measure tokenizer encode speed against HF tokenizers on the same text.",
        discussion: """
        The text is split into documents at blank lines; both sides encode every document \
        without added special tokens, one warm-up pass then --repeat timed passes, and the \
        best pass is reported. The Python side runs `Tokenizer.encode_batch_fast` with \
        RAYON_NUM_THREADS=1 (one thread) and is skipped when python3 cannot import \
        tokenizers. For a .gguf tokenizer the Python side builds the same vocabulary with the \
        `gguf` package (byte-level models only).
        """)

    @OptionGroup var tokenizer: TokenizerOptions<TokenizerSpecHelp>

    @Option(parsing: .upToNextOption, help: "Text files to encode (default: Tests/Fixtures/tokenizers/corpus.txt).")
    var text: [String] = []

    @Option(parsing: .unconditional, help: "Repeat the text until it is at least this many MB (0: as is).")
    var megabytes: Double = 0

    @Option(name: .customLong("repeat"), parsing: .unconditional, help: "Timed passes per side (the best is reported).")
    var passes: Int = 3

    @Flag(inversion: .prefixedNo, help: "Also time HF tokenizers through python3.")
    var python = true

    @Option(help: "The Python interpreter for the reference side.")
    var pythonExecutable: String = "python3"

    func validate() throws {
        guard passes >= 1 else { throw ValidationError("--repeat must be at least 1") }
        guard megabytes >= 0 else { throw ValidationError("--megabytes must be non-negative") }
    }

    func run() throws {
        let files = text.isEmpty ? [TokenizerBenchmark.defaultText] : text
        let corpus = try TokenizerBenchmark.corpus(files: files, megabytes: megabytes)
        let documents = corpus.documents, megabytesOfText = corpus.megabytes

        let t = try tokenizer.load()
        print("text: \(files.joined(separator: ", ")) → \(String(format: "%.2f", megabytesOfText)) MB in \(documents.count) documents")
        print("tokenizer: \(t.summary)")

        let swift = TokenizerBenchmark.time(t, documents: documents, passes: passes)
        let best = swift.seconds
        let swiftRate = megabytesOfText / best
        print(String(format: "sortedtrain:            %7.2f MB/s  (%.3f s, %d tokens; first pass, cold caches: %.2f MB/s)",
                     swiftRate, best, swift.tokens, megabytesOfText / swift.coldSeconds))

        guard python else { return }
        let version: String, reference: TokenizerBenchmark.Timing
        switch try TokenizerBenchmark.reference(python: pythonExecutable, tokenizer: tokenizer.tokenizer,
                                                documents: documents, passes: passes) {
        case .notRun(let reason):
            print("tokenizers (Python): not run (\(reason))")
            return
        case .ran(let v, let timing):
            (version, reference) = (v, timing)
        }
        let same = reference.tokens == swift.tokens && reference.checksum == swift.checksum
        print(String(format: "tokenizers %@ (1 thread): %7.2f MB/s  (%.3f s, %d tokens; first pass, cold caches: %.2f MB/s)",
                     version, megabytesOfText / reference.seconds, reference.seconds, reference.tokens,
                     megabytesOfText / reference.coldSeconds))
        print("ids identical: \(same ? "yes" : "NO")")
        print(String(format: "speed: sortedtrain is %.2f× tokenizers", reference.seconds / best))
    }
}
