// sortedtrain: the command line. Each subcommand is a thin layer over the library targets.
import ArgumentParser
import Foundation

@main
struct SortedTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sortedtrain",
        abstract: "Sorted Fine-Tuning (SoFT) of LLaMA-family models: one run, a usable model at every exit depth.",
        subcommands: [
            TrainCommand.self,
            EvalCommand.self,
            GenerateCommand.self,
            ServeCommand.self,
            CalibrateCommand.self,
            SynthCommand.self,
            PrepareCommand.self,
            TokenizeCommand.self,
            ExportCommand.self,
            InspectCommand.self,
            PlotCommand.self,
            BenchCommand.self,
        ]
    )

    /// Every failure, a bad argument included, is one line on stderr and exit code 1
    /// (ArgumentParser's default would add the usage text and exit 64); --help prints as usual.
    static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            if exitCode(for: error) == .success || error is ExitCode { exit(withError: error) }
            let text = ErrorMessages.isLibraryError(error) ? ErrorMessages.line(for: error) : self.message(for: error)
            let message = text.split(separator: "\n").first.map(String.init) ?? "\(error)"
            FileHandle.standardError.write(Data("Error: \(message)\n".utf8))
            Foundation.exit(1)
        }
    }
}

/// `sortedtrain bench [step|tokenizer]`: the benchmarks; `step` when none is named.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmarks: training steps (default), generation, tokenizer and checkpoint throughput.",
        subcommands: [StepBenchCommand.self, GEMMBenchCommand.self, GenerateBenchCommand.self, ServeBenchCommand.self, TokenizerBenchCommand.self, CheckpointBenchCommand.self],
        defaultSubcommand: StepBenchCommand.self
    )
}
