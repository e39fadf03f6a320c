// sortedtrain: the command line. Each subcommand is a thin layer over the library targets.
import ArgumentParser

@main
struct SortedTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sortedtrain",
        abstract: "Sorted Fine-Tuning (SoFT) of LLaMA-family models: one run, a usable model at every exit depth.",
        subcommands: [
            TrainCommand.self,
            EvalCommand.self,
            GenerateCommand.self,
            SynthCommand.self,
            PrepareCommand.self,
            TokenizeCommand.self,
            ExportCommand.self,
            InspectCommand.self,
            PlotCommand.self,
            BenchCommand.self,
        ]
    )
}

/// `sortedtrain bench [step|tokenizer]`: the benchmarks; `step` when none is named.
struct BenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bench",
        abstract: "Benchmarks: training steps (default), generation, tokenizer and checkpoint throughput.",
        subcommands: [StepBenchCommand.self, GenerateBenchCommand.self, TokenizerBenchCommand.self, CheckpointBenchCommand.self],
        defaultSubcommand: StepBenchCommand.self
    )
}
