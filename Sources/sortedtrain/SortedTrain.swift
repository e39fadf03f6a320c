// sortedtrain: the command line. Each subcommand is a thin layer over the library targets.
import ArgumentParser

@main
struct SortedTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "sortedtrain",
        abstract: "Sorted Fine-Tuning (SoFT) of LLaMA-family models: one run, a usable model at every exit depth.",
        subcommands: [
            BenchCommand.self,
            ExportCommand.self,
            InspectCommand.self,
        ]
    )
}
