// ModelExporter: takes one depth k out of a checkpoint as a standalone model — the first k
// layers plus the shared final norm and head — as an HF directory, an HDF5 file or a GGUF file.
import Foundation
import SortedData
import SortedFormats
import SortedIO
import SortedInference
import SortedKit

public enum ExportFormat: String, CaseIterable, Sendable {
    case hf, hdf5, gguf
}

public enum ModelExporter {
    /// Writes depth `depth` of the checkpoint at `checkpoint` to `output` (a folder for hf,
    /// a .h5 file for hdf5, a .gguf file for gguf with its tensors in `dtype`). The depth must be one of the run's exits unless `force`. An HF
    /// export also gets the run's tokenizer files, its BOS/EOS ids, the exits it keeps (in
    /// config.json's "sortedtrain" key, which transformers ignores), generation_config.json
    /// and a README.md model card (with `evaluation`'s per-exit table when given); `notes`
    /// says what could not be included.
    @discardableResult
    public static func export(checkpoint: String, depth: Int, format: ExportFormat, output: URL, force: Bool,
                              evaluation: EvaluationReport? = nil, dtype: GGUFDType = .f32) throws -> (model: LlamaModel, state: CheckpointState, notes: [String]) {
        let folder = try CheckpointDirectory.checkpointFolder(for: checkpoint)
        let (full, state) = try CheckpointFiles.readModel(directory: folder)
        guard depth >= 1 && depth <= full.config.numHiddenLayers else {
            throw TrainingError.depthOutsideModel(depth: depth, layers: full.config.numHiddenLayers)
        }
        if !state.exits.contains(depth) && !force {
            throw TrainingError.depthNotAnExit(depth: depth, exits: state.exits)
        }
        let sub = try full.prefix(depth: depth)
        var notes: [String] = []
        // Exit probes predict agreement with the last layer: they go with the full depth only.
        let probesFile = ExitProbes.location(forModel: URL(fileURLWithPath: folder), isFolder: true)
        var probes: ExitProbes?
        if depth == full.config.numHiddenLayers {
            probes = try ExitProbes.load(probesFile, for: full.config)
        } else if FileManager.default.fileExists(atPath: probesFile.path) {
            notes.append("the checkpoint's exit probes predict agreement with layer \(full.config.numHiddenLayers), which a depth-\(depth) model lacks: they are left out (run sortedtrain calibrate on the export)")
        }
        switch format {
        case .hf:
            let run = try RunConfig.decode(stored: state.config, source: folder, model: full.config)
            let spec = run.data.tokenizer
            let card = ModelCard(depth: depth, trainedLayers: full.config.numHiddenLayers, exits: state.exits, steps: state.step,
                                 tokens: state.sampleCursor * run.train.sequenceLength, dataFiles: run.data.train,
                                 template: run.data.template, base: state.initialWeights.flatMap(ModelCard.baseModel(at:)),
                                 evaluation: evaluation)
            var extra: [String: Any] = ["sortedtrain": ["exits": card.exportedExits, "trained_layers": full.config.numHiddenLayers,
                                                        "step": state.step]]
            let tokenizer = try? TokenizerLoader.load(spec)
            if let tokenizer {
                extra["bos_token_id"] = tokenizer.bosID.map { Int($0) } ?? NSNull()
                extra["eos_token_id"] = tokenizer.eosID.map { Int($0) } ?? NSNull()
            } else {
                notes.append("the run's tokenizer \(spec) could not be read; config.json has no bos/eos ids and there is no generation_config.json")
            }
            try ModelFiles.writeHF(sub, to: output, extraConfig: extra)
            try probes?.write(to: ExitProbes.location(forModel: output, isFolder: true))
            notes += try copyTokenizerFiles(spec, to: output)
            try write(Data(card.markdown(modelName: output.lastPathComponent).utf8), to: output.appendingPathComponent("README.md"))
            if let tokenizer {
                let chatTemplate = TokenizerLoader.chatTemplate(spec).flatMap { try? ChatTemplate($0) }
                let generation = try JSONSerialization.data(
                    withJSONObject: ModelCard.generationConfig(tokenizer: tokenizer, template: run.data.template, chatTemplate: chatTemplate),
                    options: [.prettyPrinted, .sortedKeys])
                try write(generation, to: output.appendingPathComponent("generation_config.json"))
            }
        case .hdf5:
            try ModelFiles.writeHDF5(sub, to: output)
            try probes?.write(to: ExitProbes.location(forModel: output, isFolder: false))
        case .gguf:
            let spec = try RunConfig.decode(stored: state.config, source: folder, model: full.config).data.tokenizer
            notes += try writeGGUF(sub, name: "sortedtrain depth \(depth) of step \(state.step)", tokenizer: spec, dtype: dtype,
                                   exits: state.exits.filter { $0 <= depth }, probes: probes, to: output)
        }
        return (sub, state, notes)
    }

    private static func write(_ data: Data, to url: URL) throws {
        do { try data.write(to: url, options: .atomic) } catch {
            throw FileFailure(path: url.path, "cannot be written", reason: error.localizedDescription)
        }
    }

    /// An `eval --json` report, for the model card.
    public static func readEvaluation(_ path: String) throws -> EvaluationReport {
        guard ModelPath.classify(path) == .file, let data = FileManager.default.contents(atPath: path) else {
            throw FileFailure(path: path, "cannot be read", remedy: "give the JSON file `sortedtrain eval --json` wrote")
        }
        do { return try JSONValueDecoder.decode(EvaluationReport.self, from: data) } catch {
            throw DataError(file: path, "is not a report of `sortedtrain eval --json` (\(error))")
        }
    }

    /// The HF tokenizer files the run used, next to the model: tokenizer.json and, when they
    /// sit beside it, tokenizer_config.json, special_tokens_map.json and chat_template.jinja.
    static func copyTokenizerFiles(_ spec: String, to output: URL) throws -> [String] {
        if spec == "byte" {
            return ["the built-in byte tokenizer has no tokenizer.json: ids are UTF-8 bytes, BOS 256, EOS 257, PAD 258"]
        }
        let kind = ModelPath.classify(spec)
        if kind == .missing { return ["the run's tokenizer \(spec) is no longer there; copy its tokenizer.json by hand"] }
        let source = URL(fileURLWithPath: spec)
        let folder = kind.isFolder ? source : source.deletingLastPathComponent()
        let json = kind.isFolder ? source.appendingPathComponent("tokenizer.json") : source
        guard json.pathExtension == "json", FileManager.default.fileExists(atPath: json.path) else {
            return ["the run's tokenizer \(spec) is not a tokenizer.json (a GGUF keeps its vocabulary inside); no tokenizer files were written"]
        }
        var copies = [(json, "tokenizer.json")]
        for name in ["tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"] {
            let file = folder.appendingPathComponent(name)
            if FileManager.default.fileExists(atPath: file.path) { copies.append((file, name)) }
        }
        for (from, name) in copies {
            let to = output.appendingPathComponent(name)
            try? FileManager.default.removeItem(at: to)
            do { try FileManager.default.copyItem(at: from, to: to) } catch {
                throw FileFailure(path: to.path, "cannot copy the tokenizer file", reason: error.localizedDescription)
            }
        }
        return []
    }
}
