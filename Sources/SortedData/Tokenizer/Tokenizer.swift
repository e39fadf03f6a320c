// Tokenizer: the interface the rest of sortedtrain uses to turn text into token ids and back.

/// Encodes text to token ids and decodes ids to text. Ids are Int32 as the model takes them.
public protocol Tokenizer: AnyObject {
    /// Number of ids (the model's embedding rows must be at least this many).
    var vocabularySize: Int { get }
    var bosID: Int32? { get }
    var eosID: Int32? { get }
    /// The id used to pad batches; the trainer gives padding the label -100.
    var padID: Int32? { get }
    /// Whether the tokenizer adds BOS itself when asked to add special tokens.
    var addsBOS: Bool { get }
    /// Whether decode(encode(s)) == s for every string s (byte-level and byte-fallback models).
    var isLossless: Bool { get }
    /// A short description such as "byte-level BPE, 49152 ids".
    var summary: String { get }

    /// - Parameters:
    ///   - addSpecialTokens: add what the tokenizer's post-processor adds (e.g. BOS for LLaMA).
    ///   - parseSpecial: match special tokens such as `<|im_start|>` written in the text (as HF
    ///     does); when false they are encoded as ordinary text.
    func encode(_ text: String, addSpecialTokens: Bool, parseSpecial: Bool) -> [Int32]
    func decode(_ ids: [Int32], skipSpecialTokens: Bool) -> String

    func id(forToken token: String) -> Int32?
    func token(forID id: Int32) -> String?
}

extension Tokenizer {
    public func encode(_ text: String, addSpecialTokens: Bool = false) -> [Int32] {
        encode(text, addSpecialTokens: addSpecialTokens, parseSpecial: true)
    }

    public func decode(_ ids: [Int32]) -> String {
        decode(ids, skipSpecialTokens: false)
    }
}

/// A problem in a tokenizer's definition; the loader adds the file name.
struct TokenizerLoadError: Error, CustomStringConvertible {
    let message: String
    init(_ message: String) { self.message = message }
    var description: String { message }
}
