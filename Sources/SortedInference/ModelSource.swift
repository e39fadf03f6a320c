// ModelSource: a model to evaluate, generate with or serve, and what is needed to talk to
// it — from a checkpoint (its stored run config names tokenizer, template, window and
// held-out data; nothing else of the training config is read or checked), an exported HF
// directory or HDF5 file, or a llama GGUF file (which carries its tokenizer). The prompt
// template is the user's choice, else the run's, else `model` (the model's own chat template)
// when the tokenizer comes with one, else none.
import Foundation
import SortedData
import SortedFormats
import SortedIO
import SortedKit

/// Why a model cannot be talked to as asked.
public enum ModelLoadError: Error, Equatable, CustomStringConvertible {
    case unknownTemplate(String)
    /// Template `model`, and the tokenizer (at path) comes with no chat template.
    case noChatTemplate(path: String)
    /// The tokenizer's chat template (at path) cannot be rendered.
    case chatTemplateUnusable(path: String, ChatTemplateError)
    /// A model file that carries no tokenizer, and none was named.
    case tokenizerRequired(path: String)
    /// A checkpoint whose stored run config cannot be read for serving.
    case storedConfig(folder: String, problem: String)
    /// Weights that are NaN or infinite: whatever they generate is garbage.
    case nonFiniteWeights(path: String, tensor: String, count: Int)
    /// The weights cannot be stored in the format asked for.
    case unusableFormat(path: String, problem: String)

    public var description: String {
        switch self {
        case .unknownTemplate(let name): return "template '\(name)' is not one of \(PromptTemplate.allCases.map(\.rawValue).joined(separator: ", "))"
        case .noChatTemplate(let path):
            return "\(path): has no chat template for the model template; name another (alpaca, chatml or none)"
        case .chatTemplateUnusable(let path, let error):
            return "\(path): \(error); name another template (alpaca, chatml or none)"
        case .tokenizerRequired(let path):
            return "a tokenizer is required for \(path): the one the model was trained with (tokenizer.json, .gguf or byte)"
        case .storedConfig(let folder, let problem): return "\(folder): the stored run config \(problem)"
        case .nonFiniteWeights(let path, let tensor, let count):
            return "\(path): \(tensor) holds \(count) NaN or infinite value\(count == 1 ? "" : "s"); the model is damaged (a diverged run, or a damaged file): use an earlier checkpoint"
        case .unusableFormat(let path, let problem): return "\(path): \(problem)"
        }
    }
}

/// What serving needs of a checkpoint's stored run config (the training config's defaults
/// where a key is absent): its tokenizer, template, token window and held-out files.
struct StoredServingConfig {
    var tokenizer = "byte"
    /// A stored config without data.template is from before the key existed: alpaca.
    var template = PromptTemplate.alpaca.rawValue
    var window = 256
    var validation: [String] = []

    init(json: String, folder: String) throws {
        guard let root = (try? JSONParser.parse(json))?.object else { throw ModelLoadError.storedConfig(folder: folder, problem: "is not a JSON object") }
        func bad(_ key: String, _ expected: String) -> ModelLoadError { .storedConfig(folder: folder, problem: "has \(key) that is not \(expected)") }
        let data = root["data"]?.object ?? [:]
        if let v = data["tokenizer"] { guard let s = v.string else { throw bad("data.tokenizer", "a string") }; tokenizer = s }
        if let v = data["template"] { guard let s = v.string else { throw bad("data.template", "a string") }; template = s }
        switch data["validation"] {
        case nil: break
        case .string(let one)?: validation = [one]
        case .array(let many)? where many.allSatisfy({ $0.string != nil }): validation = many.map { $0.string! }
        default: throw bad("data.validation", "a path or an array of paths")
        }
        if let v = root["train"]?.object?["sequence_length"] {
            guard let n = v.int, n >= 2 else { throw bad("train.sequence_length", "an integer ≥ 2") }
            window = n
        }
    }
}

public enum ModelSource {
    /// path: a checkpoint folder or checkpoints root, an HF directory, an HDF5 model file or a .gguf file.
    /// format: the weights' format for decoding; nil keeps a GGUF file's own block formats
    /// (read in place, never as float32) and any other model's float32.
    /// readProbes: false skips the exit probes kept with the model (calibrate replaces them).
    public static func load(_ path: String, tokenizer tokenizerSpec: String?, template templateName: String?,
                            format: WeightFormat? = nil, readProbes: Bool = true) throws -> LoadedModel {
        let kind = ModelPath.classify(path)
        if kind == .missing { throw ModelLookupError.notFound(path: path) }
        func load(_ model: InferenceModel, tokenizer spec: String, fallback: String?, exits: [Int], window: Int,
                  validation: [String], description: String, probes: URL, embedded: () throws -> ExitProbes? = { nil }) throws -> LoadedModel {
            let own = TokenizerLoader.chatTemplate(spec)
            var template = own == nil ? PromptTemplate.none : .model
            if let name = templateName ?? fallback {
                guard let t = PromptTemplate(rawValue: name) else { throw ModelLoadError.unknownTemplate(name) }
                template = t
            }
            var chatTemplate: ChatTemplate?
            if template == .model {
                guard let own else { throw ModelLoadError.noChatTemplate(path: spec) }
                do { chatTemplate = try ChatTemplate(own) } catch let error as ChatTemplateError {
                    throw ModelLoadError.chatTemplateUnusable(path: spec, error)
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
        // NaN or infinite weights make every answer garbage: refuse them with the tensor's name.
        func checked(_ model: LlamaModel) throws -> InferenceModel {
            if let bad = model.nonFiniteTensor() {
                throw ModelLoadError.nonFiniteWeights(path: path, tensor: bad.name, count: bad.count)
            }
            do { return try InferenceModel(model, format: format ?? .f32) } catch let error as ConfigError {
                throw ModelLoadError.unusableFormat(path: path, problem: error.message)
            }
        }
        if kind == .gguf {
            let model = try ModelFiles.readGGUFForInference(url, format: format)
            if let bad = model.nonFiniteTensor() {
                throw ModelLoadError.nonFiniteWeights(path: path, tensor: bad.name, count: bad.count)
            }
            var loaded = try load(model, tokenizer: tokenizerSpec ?? path, fallback: nil,
                            exits: [model.config.numHiddenLayers], window: min(model.config.maxPositionEmbeddings, 2048),
                            validation: [], description: "GGUF model \(path)", probes: ExitProbes.location(forModel: url, isFolder: false),
                            embedded: {
                                try GGUFFile(contentsOf: url).metadata[ExitProbes.ggufKey]?.string.map {
                                    try ExitProbes.decode($0, source: "\(path): \(ExitProbes.ggufKey)", for: model.config)
                                }
                            })
            loaded.fileBytes = try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int
            return loaded
        }
        if isHF || kind == .file {
            let model = try checked(isHF ? try ModelFiles.readHF(url) : try ModelFiles.readHDF5(url))
            let hasTokenizer = isHF && FileManager.default.fileExists(atPath: url.appendingPathComponent("tokenizer.json").path)
            guard let spec = tokenizerSpec ?? (hasTokenizer ? path : nil) else {
                throw ModelLoadError.tokenizerRequired(path: path)
            }
            var loaded = try load(model, tokenizer: spec, fallback: nil, exits: [model.config.numHiddenLayers],
                            window: min(model.config.maxPositionEmbeddings, 2048),
                            validation: [], description: "\(isHF ? "HF model" : "HDF5 model") \(path)",
                            probes: ExitProbes.location(forModel: url, isFolder: isHF))
            if !isHF { loaded.fileBytes = try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int }
            return loaded
        }
        let folder = try CheckpointDirectory.checkpointFolder(for: path)
        let (stored, state) = try CheckpointFiles.readModel(directory: folder)
        let run = try StoredServingConfig(json: state.config, folder: folder)
        return try load(try checked(stored), tokenizer: tokenizerSpec ?? run.tokenizer, fallback: run.template,
                        exits: state.exits, window: run.window, validation: run.validation,
                        description: "checkpoint \(folder) (step \(state.step))",
                        probes: ExitProbes.location(forModel: URL(fileURLWithPath: folder), isFolder: true))
    }
}
