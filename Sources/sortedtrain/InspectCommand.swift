// `sortedtrain inspect`: what a checkpoint or an exported model holds.
import ArgumentParser
import Foundation
import SortedTraining

struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "Show a checkpoint's or a model's step, config, exits, world size and tensors.")

    @Argument(help: "A checkpoint folder, a checkpoints folder, an HF directory or an HDF5 model file.")
    var path: String

    @Flag(help: "Print one JSON object.")
    var json = false

    func validate() throws {
        guard !path.isEmpty else { throw CommandLineError("name a checkpoint, an HF directory or a model file to inspect") }
    }

    func run() throws {
        let inspection = try ModelInspector.inspect(path)
        if json {
            try printJSON(inspection)
        } else {
            print(ModelInspector.text(inspection))
        }
    }
}
