// ModelSource: a model to evaluate or generate with, and what is needed to talk to it —
// from a checkpoint (its run config names tokenizer, template, exits and data), an exported
// HF directory or HDF5 file, or a llama GGUF file (which carries its tokenizer). The prompt
// template is the user's choice, else the run's, else the one the model's own chat
// template names (ChatML), else none.
import Foundation
import SortedData
import SortedFormats
import SortedInference
import SortedIO
import SortedKit

public enum ModelSource {
    /// path: a checkpoint folder or checkpoints root, an HF directory, an HDF5 model file or a .gguf file.
    public static func load(_ path: String, tokenizer tokenizerSpec: String?, template templateName: String?) throws -> LoadedModel {
        let kind = ModelPath.classify(path)
        if kind == .missing { throw TrainingError.notFound(path: path) }
        func template(_ fallback: String?, chatTemplate: String? = nil) throws -> PromptTemplate {
            if let name = templateName ?? fallback {
                guard let t = PromptTemplate(rawValue: name) else {
                    throw TrainingError.unknownTemplate(name)
                }
                return t
            }
            guard let chat = chatTemplate else { return .none }
            guard let t = PromptTemplate(chatTemplate: chat) else {
                throw TrainingError.chatTemplateNotRenderable(path: path)
            }
            return t
        }
        let url = URL(fileURLWithPath: path)
        let isHF = kind == .hfFolder
        if kind == .gguf {
            let file = try GGUFFile(contentsOf: url)
            let model = try ModelFiles.readGGUF(url)
            let chat = file.metadata["tokenizer.chat_template"]?.string
            return LoadedModel(model: model, tokenizer: try TokenizerLoader.load(tokenizerSpec ?? path),
                               template: try template(nil, chatTemplate: chat),
                               exits: [model.config.numHiddenLayers], window: min(model.config.maxPositionEmbeddings, 2048),
                               validation: [], description: "GGUF model \(path)")
        }
        if isHF || kind == .file {
            let model = isHF ? try ModelFiles.readHF(url) : try ModelFiles.readHDF5(url)
            let hasTokenizer = isHF && FileManager.default.fileExists(atPath: url.appendingPathComponent("tokenizer.json").path)
            guard let spec = tokenizerSpec ?? (hasTokenizer ? path : nil) else {
                throw TrainingError.tokenizerRequired(path: path)
            }
            return LoadedModel(model: model, tokenizer: try TokenizerLoader.load(spec),
                               template: try template(nil, chatTemplate: isHF ? ChatTemplateFile.text(inFolder: url) : nil),
                               exits: [model.config.numHiddenLayers],
                               window: min(model.config.maxPositionEmbeddings, 2048),
                               validation: [], description: "\(isHF ? "HF model" : "HDF5 model") \(path)")
        }
        let folder = try ModelExporter.resolveCheckpoint(path)
        let (model, state) = try CheckpointFiles.readModel(directory: folder)
        let run = try RunConfig.decode(stored: state.config, source: folder, model: model.config)
        return LoadedModel(model: model, tokenizer: try TokenizerLoader.load(tokenizerSpec ?? run.data.tokenizer),
                           template: try template(run.data.template.rawValue), exits: state.exits,
                           window: run.train.sequenceLength, validation: run.data.validation,
                           description: "checkpoint \(folder) (step \(state.step))")
    }
}
