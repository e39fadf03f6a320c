// ModelPath: what a path that a user names as a model (or its tokenizer) holds, told from
// the file system and a file's first bytes — the one classifier for train --init-from,
// eval, generate, inspect, export and the tokenizer loader.
import Foundation

public enum ModelPath: Equatable, Sendable {
    case missing
    /// A llama.cpp GGUF file (by its extension or its magic).
    case gguf
    /// An HF model folder: config.json beside the safetensors.
    case hfFolder
    /// One checkpoint: a step folder holding the checkpoint index.
    case checkpoint
    /// Any other folder: a checkpoints root (its newest intact checkpoint is meant), or a
    /// folder holding a tokenizer.
    case folder
    /// Any other file: an HDF5 model, a tokenizer.json.
    case file

    /// The index file every checkpoint folder holds.
    public static let checkpointIndexName = "checkpoint.h5"

    public static func classify(_ path: String) -> ModelPath {
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder) else { return .missing }
        let url = URL(fileURLWithPath: path)
        guard isFolder.boolValue else { return GGUFFile.isGGUF(url) ? .gguf : .file }
        func holds(_ name: String) -> Bool { FileManager.default.fileExists(atPath: url.appendingPathComponent(name).path) }
        if holds(checkpointIndexName) { return .checkpoint }
        return holds("config.json") ? .hfFolder : .folder
    }

    public var isFolder: Bool { self == .hfFolder || self == .checkpoint || self == .folder }
}
