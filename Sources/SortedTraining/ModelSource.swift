// ModelSource: a model to evaluate or generate with, and what is needed to talk to it —
// from a checkpoint (its run config names tokenizer, template, exits and data), an exported
// HF directory or HDF5 file, or a llama GGUF file (which carries its tokenizer). The prompt
// template is the user's choice, else the run's, else `model` (the model's own chat template)
// when the tokenizer comes with one, else none.
import Foundation
import SortedData
import SortedFormats
import SortedInference
import SortedIO
import SortedKit

public enum ModelSource {
    /// path: a checkpoint folder or checkpoints root, an HF directory, an HDF5 model file or a .gguf file.
    /// readProbes: false skips the exit probes kept with the model (calibrate replaces them).
    public static func load(_ path: String, tokenizer tokenizerSpec: String?, template templateName: String?,
                            readProbes: Bool = true) throws -> LoadedModel {
        let kind = ModelPath.classify(path)
        if kind == .missing { throw TrainingError.notFound(path: path) }
        func load(_ model: LlamaModel, tokenizer spec: String, fallback: String?, exits: [Int], window: Int,
                  validation: [String], description: String, probes: URL, embedded: () throws -> ExitProbes? = { nil }) throws -> LoadedModel {
            let own = TokenizerLoader.chatTemplate(spec)
            var template = own == nil ? PromptTemplate.none : .model
            if let name = templateName ?? fallback {
                guard let t = PromptTemplate(rawValue: name) else { throw TrainingError.unknownTemplate(name) }
                template = t
            }
            var chatTemplate: ChatTemplate?
            if template == .model {
                guard let own else { throw TrainingError.noChatTemplate(path: spec) }
                do { chatTemplate = try ChatTemplate(own) } catch let error as ChatTemplateError {
                    throw TrainingError.chatTemplateUnusable(path: spec, error)
                }
            }
            // Damaged probes do not stop a command that does not use them: it gets the reason.
            var found: ExitProbes?, problem: String?
            if readProbes {
                do { found = try ExitProbes.load(probes, for: model.config) ?? embedded() } catch { problem = "\(error)" }
            }
            return LoadedModel(model: model, tokenizer: try TokenizerLoader.load(spec), template: template, chatTemplate: chatTemplate,
                               exits: exits, window: window, validation: validation, description: description,
                               probesLocation: probes, probes: found, probesProblem: problem)
        }
        let url = URL(fileURLWithPath: path)
        let isHF = kind == .hfFolder
        if kind == .gguf {
            let model = try ModelFiles.readGGUF(url)
            return try load(model, tokenizer: tokenizerSpec ?? path, fallback: nil,
                            exits: [model.config.numHiddenLayers], window: min(model.config.maxPositionEmbeddings, 2048),
                            validation: [], description: "GGUF model \(path)", probes: ExitProbes.location(forModel: url, isFolder: false),
                            embedded: {
                                try GGUFFile(contentsOf: url).metadata[ExitProbes.ggufKey]?.string.map {
                                    try ExitProbes.decode($0, source: "\(path): \(ExitProbes.ggufKey)", for: model.config)
                                }
                            })
        }
        if isHF || kind == .file {
            let model = isHF ? try ModelFiles.readHF(url) : try ModelFiles.readHDF5(url)
            let hasTokenizer = isHF && FileManager.default.fileExists(atPath: url.appendingPathComponent("tokenizer.json").path)
            guard let spec = tokenizerSpec ?? (hasTokenizer ? path : nil) else {
                throw TrainingError.tokenizerRequired(path: path)
            }
            return try load(model, tokenizer: spec, fallback: nil, exits: [model.config.numHiddenLayers],
                            window: min(model.config.maxPositionEmbeddings, 2048),
                            validation: [], description: "\(isHF ? "HF model" : "HDF5 model") \(path)",
                            probes: ExitProbes.location(forModel: url, isFolder: isHF))
        }
        let folder = try ModelExporter.resolveCheckpoint(path)
        let (model, state) = try CheckpointFiles.readModel(directory: folder)
        let run = try RunConfig.decode(stored: state.config, source: folder, model: model.config)
        return try load(model, tokenizer: tokenizerSpec ?? run.data.tokenizer, fallback: run.data.template.rawValue,
                        exits: state.exits, window: run.train.sequenceLength, validation: run.data.validation,
                        description: "checkpoint \(folder) (step \(state.step))",
                        probes: ExitProbes.location(forModel: URL(fileURLWithPath: folder), isFolder: true))
    }
}
