// ModelExporter: takes one depth k out of a checkpoint as a standalone model — the first k
// layers plus the shared final norm and head — as an HF directory or an HDF5 file.
import Foundation
import SortedDistributed
import SortedIO
import SortedKit

public enum ExportFormat: String, CaseIterable, Sendable {
    case hf, hdf5
}

public enum ModelExporter {
    /// A checkpoint folder, or a checkpoints root whose newest complete checkpoint is meant.
    public static func resolveCheckpoint(_ path: String) throws -> String {
        let index = (path as NSString).appendingPathComponent(CheckpointNames.index)
        if FileManager.default.fileExists(atPath: index) { return path }
        let manager = CheckpointManager(root: path, keep: .max, communicator: SingleProcessCommunicator())
        if let found = try manager.resolve("auto") { return found }
        throw TrainingError("\(path): no checkpoint here (no checkpoint.h5, no complete step-* folder); pass a checkpoint folder such as runs/demo/checkpoints/step-00000100")
    }

    /// Writes depth `depth` of the checkpoint at `checkpoint` to `output` (a folder for hf,
    /// a .h5 file for hdf5). The depth must be one of the run's exits unless `force`.
    @discardableResult
    public static func export(checkpoint: String, depth: Int, format: ExportFormat, output: URL,
                              force: Bool) throws -> (model: LlamaModel, state: CheckpointState) {
        let folder = try resolveCheckpoint(checkpoint)
        let (full, state) = try CheckpointFiles.readModel(directory: folder)
        guard depth >= 1 && depth <= full.config.numHiddenLayers else {
            throw TrainingError("--depth \(depth) is outside 1...\(full.config.numHiddenLayers) (the checkpoint's model has \(full.config.numHiddenLayers) layers)")
        }
        if !state.exits.contains(depth) && !force {
            throw TrainingError("--depth \(depth) was not trained as an exit (exits: \(state.exits)); pick one of them, or pass --force")
        }
        let sub = try full.prefix(depth: depth)
        switch format {
        case .hf:
            try ModelFiles.writeHF(sub, to: output)
        case .hdf5:
            try ModelFiles.writeHDF5(sub, to: output)
        }
        return (sub, state)
    }
}
