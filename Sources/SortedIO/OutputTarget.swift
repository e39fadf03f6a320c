// OutputTarget: the check every writer of user-named files makes first, so that a typo in
// --out or --output never replaces what the writer did not create: an existing target is
// replaced only when asked (the caller's overwrite), and a checkpoint — a step folder, the folder that
// holds them, or anything inside one — never. Reports (eval --json/--svg, plot -o) replace
// only an earlier report of their kind, so reruns need no flag.
import Foundation
import SortedFormats

/// Why a target may not be written. `label` is what the caller calls the target (the
/// command line passes its flag, e.g. "--out").
public enum OutputTargetError: Error, Equatable, CustomStringConvertible {
    case insideCheckpoint(label: String, path: String, checkpoint: String)
    /// Something is there and replacing was not asked for.
    case exists(label: String, path: String)
    case wrongKind(label: String, path: String, isFolder: Bool)
    case holdsCheckpoints(label: String, path: String)
    /// Something that is not an earlier report of this kind is there.
    case notAReport(label: String, path: String, kind: OutputTarget.ReportKind)

    public var description: String {
        switch self {
        case .insideCheckpoint(let label, let path, let checkpoint):
            return "\(label) \(path) is inside the checkpoint \(checkpoint): write somewhere else (checkpoints are only written by train)"
        case .exists(let label, let path): return "\(label) \(path) already exists"
        case .wrongKind(let label, let path, let isFolder):
            return "\(label) \(path) is a \(isFolder ? "folder" : "file"), not the \(isFolder ? "file" : "folder") this writes; name another path"
        case .holdsCheckpoints(let label, let path): return "\(label) \(path) holds checkpoints: write somewhere else"
        case .notAReport(let label, let path, let kind):
            return "\(label) \(path) already exists and is not \(kind.rawValue); name another path (only an earlier report is replaced)"
        }
    }
}

public enum OutputTarget {
    /// Throws unless `url` may be written: absent, or present with `overwrite` and of the
    /// expected kind (a folder for `directory`, else a file) and not part of a checkpoint.
    public static func check(_ url: URL, directory: Bool, overwrite: Bool, flag: String) throws {
        let path = url.standardizedFileURL.path
        if let checkpoint = enclosingCheckpoint(of: url) {
            throw OutputTargetError.insideCheckpoint(label: flag, path: path, checkpoint: checkpoint)
        }
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { return }
        guard overwrite else {
            throw OutputTargetError.exists(label: flag, path: path)
        }
        guard isDirectory.boolValue == directory else {
            throw OutputTargetError.wrongKind(label: flag, path: path, isFolder: isDirectory.boolValue)
        }
        if directory, looksLikeCheckpointRoot(url) {
            throw OutputTargetError.holdsCheckpoints(label: flag, path: path)
        }
    }

    /// What a report writer (eval --json/--svg, plot -o) may replace without being told to:
    /// a file of its own kind, as a rerun leaves it.
    public enum ReportKind: String, Sendable {
        case json = "a JSON document", svg = "an SVG image"
    }

    /// Throws unless `url` is absent, or an existing file of `kind` outside any checkpoint.
    /// Anything else there (a config, a data file, a folder) is not the writer's to replace.
    public static func checkReport(_ url: URL, kind: ReportKind, flag: String) throws {
        let path = url.standardizedFileURL.path
        if let checkpoint = enclosingCheckpoint(of: url) {
            throw OutputTargetError.insideCheckpoint(label: flag, path: path, checkpoint: checkpoint)
        }
        guard FileManager.default.fileExists(atPath: path) else { return }
        // Only a regular file is read (a FIFO would block the read).
        let regular = (try? FileManager.default.attributesOfItem(atPath: path))?[.type] as? FileAttributeType == .typeRegular
        let contents = regular ? (try? Data(contentsOf: url)) ?? Data() : Data()
        let ours: Bool
        switch kind {
        case .svg: ours = String(decoding: contents.prefix(4096), as: UTF8.self).contains("<svg")
        case .json: ours = (try? JSONParser.parse(contents))?.object != nil
        }
        guard regular, ours else {
            throw OutputTargetError.notAReport(label: flag, path: path, kind: kind)
        }
    }

    /// The step folder or checkpoints folder that `url` is or lies in, if any.
    static func enclosingCheckpoint(of url: URL) -> String? {
        var folder = url.standardizedFileURL
        while folder.path != "/" {
            if ModelPath.classify(folder.path) == .checkpoint { return folder.path }
            folder.deleteLastPathComponent()
            if looksLikeCheckpointRoot(folder) && url.standardizedFileURL.path != folder.path { return folder.path }
        }
        return nil
    }

    /// A folder with a `latest` pointer or step-XXXXXXXX folders: a checkpoints root.
    static func looksLikeCheckpointRoot(_ folder: URL) -> Bool {
        let fm = FileManager.default
        if fm.fileExists(atPath: folder.appendingPathComponent("latest").path) { return true }
        let entries = (try? fm.contentsOfDirectory(atPath: folder.path)) ?? []
        return entries.contains { $0.hasPrefix("step-") && ModelPath.classify(folder.appendingPathComponent($0).path) == .checkpoint }
    }
}
