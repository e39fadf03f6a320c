// `sortedtrain synth`: writes the built-in demo dataset (seeded instruction tasks with short,
// exactly gradable answers) as Alpaca JSONL with a train/validation split.
import ArgumentParser
import Foundation
import SortedData
import SortedIO

struct SynthCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "synth",
        abstract: "Write the demo dataset: seeded instruction tasks graded by exact match.",
        discussion: """
        Tasks: \(SynthTasks.taskNames.joined(separator: ", ")); each comes easy (small \
        numbers, short words) or hard (long numbers, long words, longer lists), mixed by \
        --hard-fraction, so that deeper exits have something to gain. Writes OUTPUT/train.jsonl \
        and OUTPUT/validation.jsonl in Alpaca format with extra "task" and "difficulty" \
        fields; no validation question appears in train. The same seed gives the same files. \
        Files already there are replaced only with --overwrite.
        """)

    @Option(name: [.short, .long], help: "Directory to write train.jsonl and validation.jsonl into.")
    var output: String

    @Option(parsing: .unconditional, help: "Training examples.")
    var train: Int = 20000

    @Option(parsing: .unconditional, help: "Validation examples.")
    var validation: Int = 1000

    @Option(parsing: .unconditional, help: "Random seed.")
    var seed: UInt64 = 0

    @Option(parsing: .unconditional, help: "Fraction of hard examples (0...1).")
    var hardFraction: Double = 0.5

    @Flag(help: "Replace train.jsonl and validation.jsonl already in the directory.")
    var overwrite = false

    /// Examples are made in memory (about 100 bytes each): ten million is 1 GB.
    static let maximumExamples = 10_000_000

    func validate() throws {
        guard train >= 0, validation >= 0, train > 0 || validation > 0 else { throw ValidationError("--train and --validation must be non-negative, and not both zero") }
        guard train <= Self.maximumExamples, validation <= Self.maximumExamples else {
            throw ValidationError("--train and --validation are at most \(Self.maximumExamples) each")
        }
        guard (0...1).contains(hardFraction) else { throw ValidationError("--hard-fraction must be between 0 and 1") }
        for name in ["train.jsonl", "validation.jsonl"] {
            try OutputTarget.check(URL(fileURLWithPath: output).appendingPathComponent(name), directory: false,
                                   overwrite: overwrite, flag: "--output")
        }
    }

    func run() throws {
        let (trainSet, validationSet) = SynthTasks.generate(trainCount: train, validationCount: validation, seed: seed, hardFraction: hardFraction)
        let dir = URL(fileURLWithPath: output)
        do { try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true) } catch {
            throw DataError(file: output, "cannot be created: \(error.localizedDescription)")
        }
        for (name, set) in [("train.jsonl", trainSet), ("validation.jsonl", validationSet)] {
            let url = dir.appendingPathComponent(name)
            let text = set.map(\.jsonLine).joined(separator: "\n") + (set.isEmpty ? "" : "\n")
            do { try Data(text.utf8).write(to: url) } catch {
                throw DataError(file: url.path, "cannot be written: \(error.localizedDescription)")
            }
        }
        let hard = trainSet.filter { $0.difficulty == .hard }.count
        print("wrote \(trainSet.count) train (\(hard) hard) and \(validationSet.count) validation examples to \(output)/")
        var perTask: [String: Int] = [:]
        for e in trainSet { perTask[e.task, default: 0] += 1 }
        print("tasks: " + SynthTasks.taskNames.map { "\($0) \(perTask[$0] ?? 0)" }.joined(separator: ", "))
    }
}
