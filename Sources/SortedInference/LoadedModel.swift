// LoadedModel: a model ready to serve — weights, the tokenizer and prompt template it was
// trained with, the exits it was trained at, and the tokens that end an answer.
import Foundation
import SortedData
import SortedKit

public struct LoadedModel {
    /// The weights, in the format they are decoded in.
    public let model: InferenceModel
    public let tokenizer: Tokenizer
    public let template: PromptTemplate
    /// The model's own chat template, for template `model`.
    public let chatTemplate: ChatTemplate?
    /// The exits the model was trained with (the last layer when nothing says otherwise).
    public let exits: [Int]
    /// Token window: the training sequence length for a checkpoint.
    public let window: Int
    /// Held-out files named by the run config, if any.
    public let validation: [String]
    public let description: String
    /// The size of the file the weights came from, when they came from one file (GGUF, HDF5).
    public var fileBytes: Int?
    /// Where the model's exit probes are kept (`sortedtrain calibrate` writes there), and
    /// the probes when that file exists.
    public let probesLocation: URL?
    public let probes: ExitProbes?
    /// Why the probes kept with the model could not be used (a damaged file), if so.
    public let probesProblem: String?

    public init(model: InferenceModel, tokenizer: Tokenizer, template: PromptTemplate, chatTemplate: ChatTemplate? = nil,
                exits: [Int], window: Int, validation: [String], description: String, probesLocation: URL? = nil,
                probes: ExitProbes? = nil, probesProblem: String? = nil) {
        self.model = model
        self.tokenizer = tokenizer
        self.template = template
        self.chatTemplate = chatTemplate
        self.exits = exits
        self.window = window
        self.validation = validation
        self.description = description
        self.probesLocation = probesLocation
        self.probes = probes
        self.probesProblem = probesProblem
    }

    /// Why the tokenizer cannot feed this model (more ids than embeddings), or nil.
    public var vocabularyProblem: String? {
        guard tokenizer.vocabularySize > model.config.vocabSize else { return nil }
        return "the tokenizer has \(tokenizer.vocabularySize) tokens but the model only \(model.config.vocabSize) embeddings: give the tokenizer the model was trained with"
    }

    /// EOS, and the end-of-turn token of a ChatML template or of the model's own.
    public var stopTokens: Set<Int32> {
        var stop = Set<Int32>()
        if let eos = tokenizer.eosID { stop.insert(eos) }
        if template == .chatml, let end = tokenizer.id(forToken: "<|im_end|>") { stop.insert(end) }
        if template == .model, let chatTemplate, let end = PromptTemplate.endOfTurnToken(chatTemplate, tokenizer: tokenizer) { stop.insert(end) }
        return stop
    }

    /// The tokens generation continues from after a conversation, in the model's template.
    public func prompt(messages: [ChatMessage]) throws -> [Int32] {
        try template.prompt(messages: messages, tokenizer: tokenizer, chatTemplate: chatTemplate)
    }

    /// The tokens generation continues from for an instruction, in the model's template.
    public func prompt(instruction: String, input: String = "") throws -> [Int32] {
        try template.prompt(instruction: instruction, input: input, tokenizer: tokenizer, chatTemplate: chatTemplate)
    }
}
