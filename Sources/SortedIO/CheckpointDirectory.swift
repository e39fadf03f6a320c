// CheckpointDirectory: what a checkpoints root holds, read from the file system alone —
// step-XXXXXXXX/ folders, the `latest` pointer, which checkpoints are intact, which one a
// resume means, which ones a save may prune. No collectives: any process may ask (export,
// inspect, eval); the collective save and load are CheckpointManager's.
import Foundation
import SortedFormats

public struct CheckpointDirectory: Sendable {
    public let root: String
    /// How many intact checkpoints `prune` keeps.
    public let keep: Int

    public init(root: String, keep: Int = .max) {
        self.root = root
        self.keep = keep
    }

    public static func folderName(step: Int) -> String { String(format: "step-%08d", step) }

    /// `name` inside the root.
    public func path(_ name: String) -> String { (root as NSString).appendingPathComponent(name) }

    /// Every step folder in this root (intact or not; not a save's .tmp or .old, nor a damaged
    /// one kept aside as .damaged), oldest first.
    public func checkpointFolders() -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []
        return names.filter { $0.hasPrefix("step-") && !$0.contains(".") }.sorted()
    }

    /// Entries named like step folders that are not folders: saving over them would replace
    /// what train did not write.
    public func foreignEntries() -> [String] {
        checkpointFolders().filter { name in
            var isFolder: ObjCBool = false
            return !FileManager.default.fileExists(atPath: path(name), isDirectory: &isFolder) || !isFolder.boolValue
        }
    }

    /// The step folders whose index, run state and shards check out, oldest first.
    public func completeCheckpoints() -> [String] {
        checkpointFolders().filter { (try? CheckpointFiles.readState(directory: path($0))) != nil }
    }

    /// Deletes intact checkpoints beyond the newest `keep` (never `current`). A damaged one
    /// is left for the user to look at: it was skipped loudly at resume.
    public func prune(keeping current: String) {
        for old in completeCheckpoints().dropLast(keep) where old != current {
            try? FileManager.default.removeItem(atPath: path(old))
        }
    }

    /// Points `latest` at `name`; replaced by rename, so readers see the old or the new, whole.
    public func writeLatest(_ name: String) throws {
        let temporary = path("latest.tmp")
        try Data((name + "\n").utf8).write(to: URL(fileURLWithPath: temporary))
        try CheckpointFiles.syncToDisk(temporary)
        if rename(temporary, path("latest")) != 0 {
            throw FormatError(file: path("latest"), "cannot replace the latest-checkpoint pointer")
        }
    }

    /// What `--resume auto` found: the folder to load and every newer candidate it passed
    /// over, with the reason. No folder and nothing skipped: the root holds no checkpoint.
    public struct Resolution: Sendable {
        public var folder: String?
        public var skipped: [(folder: String, reason: String)] = []

        /// "step-00000004: reason; step-00000002: reason" for messages.
        public var skippedSummary: String {
            skipped.map { "\(($0.folder as NSString).lastPathComponent): \($0.reason)" }.joined(separator: "; ")
        }
    }

    /// The folder a resume means: "auto" is `newestIntact()`; anything else is a checkpoint
    /// folder, checked.
    public func resolve(_ resume: String) throws -> Resolution {
        guard resume == "auto" else {
            _ = try CheckpointFiles.readState(directory: resume)
            return Resolution(folder: resume)
        }
        return newestIntact()
    }

    /// The newest checkpoint that checks out: `latest` when it does, else the newest step
    /// folder that does (a root whose checkpoints are all damaged gives no folder and the
    /// reasons).
    public func newestIntact() -> Resolution {
        var candidates = checkpointFolders().reversed().map { path($0) }
        if let pointer = try? String(contentsOfFile: path("latest"), encoding: .utf8) {
            let named = path(pointer.trimmingCharacters(in: .whitespacesAndNewlines))
            if candidates.contains(named) {
                candidates.removeAll { $0 == named }
                candidates.insert(named, at: 0)
            }
        }
        var resolution = Resolution()
        for candidate in candidates {
            do {
                _ = try CheckpointFiles.readState(directory: candidate)
                resolution.folder = candidate
                return resolution
            } catch {
                resolution.skipped.append((candidate, "\(error)"))
            }
        }
        return resolution
    }
}

/// Why a path names no model to read.
public enum ModelLookupError: Error, Equatable, CustomStringConvertible {
    case notFound(path: String)
    case noCheckpoint(path: String)
    case noIntactCheckpoint(root: String, skipped: String)

    public var description: String {
        switch self {
        case .notFound(let path): return "\(path): does not exist"
        case .noCheckpoint(let path):
            return "\(path): no checkpoint here (no checkpoint.h5, no complete step-* folder); name a checkpoint folder such as runs/demo/checkpoints/step-00000100"
        case .noIntactCheckpoint(let root, let skipped): return "\(root): no intact checkpoint (\(skipped))"
        }
    }
}

extension CheckpointDirectory {
    /// The checkpoint folder `path` names: itself, or the newest intact one of a checkpoints
    /// root (a damaged newer one is passed over with a warning on stderr).
    public static func checkpointFolder(for path: String) throws -> String {
        if ModelPath.classify(path) == .checkpoint { return path }
        let resolution = CheckpointDirectory(root: path).newestIntact()
        if let found = resolution.folder {
            // A damaged newer checkpoint is passed over, loudly: the user asked for the newest.
            for (folder, reason) in resolution.skipped {
                FileHandle.standardError.write(Data("warning: skipped checkpoint \(folder): \(reason)\n".utf8))
            }
            return found
        }
        if !resolution.skipped.isEmpty { throw ModelLookupError.noIntactCheckpoint(root: path, skipped: resolution.skippedSummary) }
        throw ModelLookupError.noCheckpoint(path: path)
    }
}
