// ModelSource: a model to evaluate or generate with, and what is needed to talk to it —
// from a checkpoint (its run config names tokenizer, template, exits and data) or from an
// exported HF directory or HDF5 file (tokenizer and template given by the user).
import Foundation
import SortedData
import SortedIO
import SortedKit

public struct LoadedModel {
    public let model: LlamaModel
    public let tokenizer: Tokenizer
    public let template: PromptTemplate
    /// The exits the model was trained with (the last layer for an exported model).
    public let exits: [Int]
    /// Token window: the training sequence length for a checkpoint.
    public let window: Int
    /// Held-out files named by the run config, if any.
    public let validation: [String]
    public let description: String
}

public enum ModelSource {
    /// path: a checkpoint folder or checkpoints root, an HF directory, or an HDF5 model file.
    public static func load(_ path: String, tokenizer tokenizerSpec: String?, template templateName: String?) throws -> LoadedModel {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
            throw TrainingError("\(path): does not exist")
        }
        func template(_ fallback: String?) throws -> PromptTemplate {
            guard let name = templateName ?? fallback else {
                throw TrainingError("--template is required for \(path): alpaca, chatml or none, as the model was trained")
            }
            guard let t = PromptTemplate(rawValue: name) else {
                throw TrainingError("--template \(name) is not one of alpaca, chatml, none")
            }
            return t
        }
        let isHF = isDirectory.boolValue
            && FileManager.default.fileExists(atPath: (path as NSString).appendingPathComponent("config.json"))
        if isHF || !isDirectory.boolValue {
            let model = isHF ? try ModelFiles.readHF(URL(fileURLWithPath: path)) : try ModelFiles.readHDF5(URL(fileURLWithPath: path))
            let hasTokenizer = isHF && FileManager.default.fileExists(atPath: (path as NSString).appendingPathComponent("tokenizer.json"))
            guard let spec = tokenizerSpec ?? (hasTokenizer ? path : nil) else {
                throw TrainingError("--tokenizer is required for \(path): the tokenizer the model was trained with (tokenizer.json, .gguf or byte)")
            }
            return LoadedModel(model: model, tokenizer: try TokenizerLoader.load(spec), template: try template(nil),
                               exits: [model.config.numHiddenLayers], window: min(model.config.maxPositionEmbeddings, 2048),
                               validation: [], description: "\(isHF ? "HF model" : "HDF5 model") \(path)")
        }
        let folder = try ModelExporter.resolveCheckpoint(path)
        let (model, state) = try CheckpointFiles.readModel(directory: folder)
        let run = try RunConfig.decode(stored: state.config, source: folder)
        return LoadedModel(model: model, tokenizer: try TokenizerLoader.load(tokenizerSpec ?? run.data.tokenizer),
                           template: try template(run.data.template), exits: state.exits,
                           window: run.train.sequenceLength, validation: run.data.validation,
                           description: "checkpoint \(folder) (step \(state.step))")
    }
}
