// TokenizerJSON: builds a BPETokenizer from an HF `tokenizer.json` (BPE model with a
// byte-level or SentencePiece-style pipeline), reading special-token names from a
// `tokenizer_config.json` beside it when there is one.
import Foundation
import SortedFormats

extension BPETokenizer {
    /// Loads `tokenizer.json`. Errors name the file and the JSON key at fault.
    public static func load(tokenizerJSON url: URL) throws -> BPETokenizer {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw DataError(file: url.path, .unreadable(error.localizedDescription))
        }
        let root: JSONValue
        do { root = try JSONParser.parse(data) } catch let e as JSONSyntaxError { throw e.inFile(url.path) }
        var config: JSONValue?
        let configURL = url.deletingLastPathComponent().appendingPathComponent("tokenizer_config.json")
        if let configData = try? Data(contentsOf: configURL) {
            do { config = try JSONParser.parse(configData) } catch let e as JSONSyntaxError { throw e.inFile(configURL.path) }
        }
        do {
            return try BPETokenizer(Definition(tokenizerJSON: root, config: config))
        } catch let e as TokenizerLoadError {
            throw DataError(file: url.path, e.message)
        }
    }
}

extension BPETokenizer.Definition {
    init(tokenizerJSON root: JSONValue, config: JSONValue?) throws {
        guard let modelJSON = root["model"]?.object else { throw TokenizerLoadError("has no \"model\" object") }
        if let t = modelJSON["type"], t.string == nil, !t.isNull {
            throw TokenizerLoadError("model.type must be a string such as \"BPE\", got \(String(t.serialized.prefix(40)))")
        }
        let type = modelJSON["type"]?.string ?? (modelJSON["merges"] != nil ? "BPE" : "?")
        guard type == "BPE" else {
            throw TokenizerLoadError("model.type is \"\(type)\"; sortedtrain reads BPE tokenizers (byte-level or SentencePiece-style)")
        }
        for key in ["continuing_subword_prefix", "end_of_word_suffix"] {
            if let v = modelJSON[key], !v.isNull, v.string != "" {
                throw TokenizerLoadError("model.\(key) is set; sortedtrain reads BPE without subword prefixes or suffixes")
            }
        }
        if let d = modelJSON["dropout"]?.double, d > 0 {
            throw TokenizerLoadError("model.dropout is \(d); BPE dropout is for training tokenizers and is not supported")
        }
        guard let vocabJSON = modelJSON["vocab"]?.object else { throw TokenizerLoadError("model.vocab is missing or not an object") }

        // Added tokens (they may lie outside the model vocabulary).
        var addedTokens: [BPETokenizer.AddedToken] = []
        if let listed = root["added_tokens"], !listed.isNull, listed.array == nil {
            throw TokenizerLoadError("added_tokens is not an array; it lists the special tokens ({\"id\": …, \"content\": …})")
        }
        for (i, item) in (root["added_tokens"]?.array ?? []).enumerated() {
            guard let id = item["id"]?.int, let content = item["content"]?.string, id >= 0, id < 1 << 24 else {
                throw TokenizerLoadError("added_tokens[\(i)] needs an integer \"id\" below 2^24 and a string \"content\"")
            }
            // A flag of the wrong type would silently change how the token is matched.
            func flag(_ key: String) throws -> Bool {
                guard let value = item[key], !value.isNull else { return false }
                guard let b = value.bool else { throw TokenizerLoadError("added_tokens[\(i)].\(key) must be true or false") }
                return b
            }
            addedTokens.append(.init(content: content, id: Int32(id), special: try flag("special"),
                                     lstrip: try flag("lstrip"), rstrip: try flag("rstrip"),
                                     singleWord: try flag("single_word")))
        }

        let normalizers = try parseNormalizers(root["normalizer"])
        let preTokenizers = try parsePreTokenizers(root["pre_tokenizer"])
        let decoders = try parseDecoders(root["decoder"])
        let byteLevel = preTokenizers.contains { if case .byteLevel = $0 { return true }; return false }
            || normalizers.byteLevel

        // Vocabulary: id → token.
        var maxID = -1
        for (token, v) in vocabJSON {
            guard let id = v.int, id >= 0, id < 1 << 24 else { throw TokenizerLoadError("model.vocab[\(jsonQuoted(token))] is not a valid id") }
            maxID = max(maxID, id)
        }
        var tokens = [String](repeating: "", count: maxID + 1)
        var present = [Bool](repeating: false, count: maxID + 1)
        for (token, v) in vocabJSON {
            tokens[v.int!] = token
            present[v.int!] = true
        }
        if let missing = present.firstIndex(of: false) {
            // HF allows holes only where an added token fills them.
            guard addedTokens.contains(where: { Int($0.id) == missing }) else {
                throw TokenizerLoadError("model.vocab has no token with id \(missing) (ids must be 0..<\(maxID + 1))")
            }
        }
        var idOf: [String: Int32] = [:]
        idOf.reserveCapacity(tokens.count)
        for (i, t) in tokens.enumerated() where present[i] { idOf[t] = Int32(i) }
        let modelBytes: [[UInt8]?] = tokens.enumerated().map { i, t in
            guard present[i] else { return nil }
            return byteLevel ? ByteLevel.bytes(of: t) : Array(t.utf8)
        }

        // Merges: "a b" strings or [a, b] pairs.
        var mergeIDs: [(Int32, Int32, Int32)] = []
        // A BPE without the key would silently tokenize byte by byte; an explicit [] is allowed.
        guard let mergesJSON = modelJSON["merges"]?.array else {
            throw TokenizerLoadError("model.merges is missing or not an array; a BPE tokenizer needs its merge list")
        }
        mergeIDs.reserveCapacity(mergesJSON.count)
        for (rank, m) in mergesJSON.enumerated() {
            let left: String, right: String
            if let s = m.string {
                let parts = s.split(separator: " ", omittingEmptySubsequences: false)
                guard parts.count == 2 else { throw TokenizerLoadError("model.merges[\(rank)] \(jsonQuoted(s)) is not two tokens separated by one space") }
                left = String(parts[0]); right = String(parts[1])
            } else if let pair = m.array, pair.count == 2, let a = pair[0].string, let b = pair[1].string {
                left = a; right = b
            } else {
                throw TokenizerLoadError("model.merges[\(rank)] is neither \"a b\" nor [\"a\", \"b\"]")
            }
            guard let a = idOf[left], let b = idOf[right] else {
                throw TokenizerLoadError("model.merges[\(rank)] uses a token missing from model.vocab: \(jsonQuoted(idOf[left] == nil ? left : right))")
            }
            guard let merged = idOf[left + right] else {
                throw TokenizerLoadError("model.merges[\(rank)] makes \(jsonQuoted(left + right)), which is missing from model.vocab")
            }
            mergeIDs.append((a, b, merged))
        }

        var unknownID: Int32?
        if let unk = modelJSON["unk_token"]?.string {
            guard let id = idOf[unk] else { throw TokenizerLoadError("model.unk_token \(jsonQuoted(unk)) is not in model.vocab") }
            unknownID = id
        }
        let byteFallback = modelJSON["byte_fallback"]?.bool ?? false
        let model = BPEModel(tokens: tokens, modelBytes: modelBytes, mergeIDs: mergeIDs, byteLevel: byteLevel,
                             byteFallback: byteFallback, unknownID: unknownID,
                             fuseUnknown: modelJSON["fuse_unk"]?.bool ?? false,
                             ignoreMerges: modelJSON["ignore_merges"]?.bool ?? false)

        // Special tokens: names from tokenizer_config.json, else the usual spellings.
        var byName = idOf
        for t in addedTokens { byName[t.content] = t.id }
        func configToken(_ key: String) -> String? {
            guard let v = config?[key] else { return nil }
            return v.string ?? v["content"]?.string
        }
        func find(_ key: String, _ guesses: [String]) -> Int32? {
            if let name = configToken(key) { return byName[name] }
            for g in guesses { if let id = byName[g] { return id } }
            return nil
        }
        let (prefix, suffix) = try parsePostProcessor(root["post_processor"], byName: byName)
        var bos = find("bos_token", ["<s>", "<|begin_of_text|>", "<bos>", "<|startoftext|>"])
        if configToken("bos_token") == nil, let first = prefix.first { bos = first }
        let eos = find("eos_token", ["</s>", "<|end_of_text|>", "<|endoftext|>", "<eos>"])
        let pad = find("pad_token", ["<pad>", "<|pad|>"])

        let lossyNormalizer = normalizers.steps.contains {
            switch $0 {
            case .prepend, .replace: return false
            default: return true
            }
        }
        // HF's Metaspace decoder drops every "▁" of the first token, so " x" can decode to "x".
        let lossyDecoder = decoders.contains { if case .metaspace = $0 { return true }; return false }
        self.init(kind: byteLevel ? "byte-level BPE" : (byteFallback ? "SentencePiece-style BPE with byte fallback" : "BPE"),
                  model: model, addedTokens: addedTokens, normalizers: normalizers.steps,
                  preTokenizers: preTokenizers, decoders: decoders, prefixIDs: prefix, suffixIDs: suffix,
                  bosID: bos, eosID: eos, padID: pad, lossless: (byteLevel || byteFallback) && !lossyNormalizer && !lossyDecoder)
    }
}

private func patternBytes(_ v: JSONValue?, _ key: String) throws -> (literal: String?, regex: String?) {
    if let s = v?["String"]?.string { return (s, nil) }
    if let r = v?["Regex"]?.string { return (nil, r) }
    throw TokenizerLoadError("\(key).pattern must be {\"String\": ...} or {\"Regex\": ...}")
}

private func parseNormalizers(_ v: JSONValue?) throws -> (steps: [BPETokenizer.NormalizerStep], byteLevel: Bool) {
    guard let v, !v.isNull else { return ([], false) }
    let type = v["type"]?.string ?? "?"
    switch type {
    case "Sequence":
        var steps: [BPETokenizer.NormalizerStep] = []
        var byteLevel = false
        for item in v["normalizers"]?.array ?? [] {
            let r = try parseNormalizers(item)
            steps += r.steps
            byteLevel = byteLevel || r.byteLevel
        }
        return (steps, byteLevel)
    case "Prepend":
        guard let s = v["prepend"]?.string else { throw TokenizerLoadError("normalizer Prepend needs \"prepend\"") }
        return ([.prepend(Array(s.utf8))], false)
    case "Replace":
        let p = try patternBytes(v["pattern"], "normalizer Replace")
        let content = v["content"]?.string ?? ""
        if let literal = p.literal { return ([.replace(Array(literal.utf8), Array(content.utf8))], false) }
        do {
            return ([.replaceRegex(try NSRegularExpression(pattern: p.regex!), content)], false)
        } catch { throw TokenizerLoadError("normalizer Replace regex does not compile: \(p.regex!)") }
    case "NFC": return ([.nfc], false)
    case "NFD": return ([.nfd], false)
    case "NFKC": return ([.nfkc], false)
    case "NFKD": return ([.nfkd], false)
    case "Lowercase": return ([.lowercase], false)
    case "Strip": return ([.strip(left: v["strip_left"]?.bool ?? true, right: v["strip_right"]?.bool ?? true)], false)
    case "ByteLevel": return ([], true)
    default:
        throw TokenizerLoadError("normalizer type \"\(type)\" is not supported (supported: Sequence, Prepend, Replace, NFC, NFD, NFKC, NFKD, Lowercase, Strip, ByteLevel)")
    }
}

private func parsePreTokenizers(_ v: JSONValue?) throws -> [BPETokenizer.PreTokenizerStep] {
    guard let v, !v.isNull else { return [] }
    let type = v["type"]?.string ?? "?"
    switch type {
    case "Sequence":
        var steps: [BPETokenizer.PreTokenizerStep] = []
        for item in v["pretokenizers"]?.array ?? [] { steps += try parsePreTokenizers(item) }
        return steps
    case "ByteLevel":
        return [.byteLevel(addPrefixSpace: v["add_prefix_space"]?.bool ?? true, useRegex: v["use_regex"]?.bool ?? true)]
    case "Split":
        let p = try patternBytes(v["pattern"], "pre_tokenizer Split")
        let pattern: SplitPattern = try p.literal.map { .literal(Array($0.utf8)) } ?? SplitPattern.fromRegex(p.regex!)
        let behaviorName = v["behavior"]?.string ?? "Isolated"
        guard let behavior = BPETokenizer.SplitBehavior(rawValue: behaviorName) else {
            throw TokenizerLoadError("pre_tokenizer Split behavior \"\(behaviorName)\" is unknown")
        }
        return [.split(pattern, behavior, invert: v["invert"]?.bool ?? false)]
    case "Digits":
        return [.digits(individual: v["individual_digits"]?.bool ?? false)]
    case "Metaspace":
        let replacement = v["replacement"]?.string ?? "\u{2581}"
        // An empty replacement would drop every space without a trace.
        guard replacement.count == 1 else {
            throw TokenizerLoadError("pre_tokenizer Metaspace replacement must be one character, got \"\(replacement)\"")
        }
        let scheme: BPETokenizer.PrependScheme
        if let name = v["prepend_scheme"]?.string {
            guard let s = BPETokenizer.PrependScheme(rawValue: name) else { throw TokenizerLoadError("pre_tokenizer Metaspace prepend_scheme \"\(name)\" is unknown") }
            scheme = s
        } else {
            scheme = (v["add_prefix_space"]?.bool ?? true) ? .always : .never
        }
        return [.metaspace(replacement: Array(replacement.utf8), prepend: scheme, split: v["split"]?.bool ?? true)]
    case "WhitespaceSplit":
        return [.whitespaceSplit]
    case "Whitespace":
        return [.split(try SplitPattern.fromRegex(#"\w+|[^\w\s]+"#), .removed, invert: true)]
    default:
        throw TokenizerLoadError("pre_tokenizer type \"\(type)\" is not supported (supported: Sequence, ByteLevel, Split, Digits, Metaspace, Whitespace, WhitespaceSplit)")
    }
}

private func parseDecoders(_ v: JSONValue?) throws -> [BPETokenizer.DecoderStep] {
    guard let v, !v.isNull else { return [] }
    let type = v["type"]?.string ?? "?"
    switch type {
    case "Sequence":
        return try (v["decoders"]?.array ?? []).flatMap { try parseDecoders($0) }
    case "ByteLevel": return [.byteLevel]
    case "Replace":
        let p = try patternBytes(v["pattern"], "decoder Replace")
        guard let literal = p.literal else { throw TokenizerLoadError("decoder Replace with a regex pattern is not supported") }
        return [.replace(literal, v["content"]?.string ?? "")]
    case "ByteFallback": return [.byteFallback]
    case "Fuse": return [.fuse]
    case "Strip":
        let content = v["content"]?.string ?? " "
        guard let c = content.first, content.count == 1 else { throw TokenizerLoadError("decoder Strip content must be one character") }
        return [.strip(c, start: v["start"]?.int ?? 0, stop: v["stop"]?.int ?? 0)]
    case "Metaspace":
        let replacement = v["replacement"]?.string ?? "\u{2581}"
        guard let c = replacement.first, replacement.count == 1 else { throw TokenizerLoadError("decoder Metaspace replacement must be one character") }
        let stripFirst: Bool
        if let scheme = v["prepend_scheme"]?.string { stripFirst = scheme != "never" } else { stripFirst = v["add_prefix_space"]?.bool ?? true }
        return [.metaspace(c, stripFirst: stripFirst)]
    default:
        throw TokenizerLoadError("decoder type \"\(type)\" is not supported (supported: Sequence, ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace)")
    }
}

/// The ids a post-processor puts before and after a single sequence.
private func parsePostProcessor(_ v: JSONValue?, byName: [String: Int32]) throws -> ([Int32], [Int32]) {
    guard let v, !v.isNull else { return ([], []) }
    let type = v["type"]?.string ?? "?"
    switch type {
    case "ByteLevel": return ([], [])
    case "Sequence":
        var prefix: [Int32] = [], suffix: [Int32] = []
        for item in v["processors"]?.array ?? [] {
            let (p, s) = try parsePostProcessor(item, byName: byName)
            prefix += p
            suffix = s + suffix
        }
        return (prefix, suffix)
    case "TemplateProcessing":
        guard let single = v["single"]?.array else { throw TokenizerLoadError("post_processor TemplateProcessing needs \"single\"") }
        var prefix: [Int32] = [], suffix: [Int32] = []
        var seenSequence = false
        for piece in single {
            if piece["Sequence"] != nil { seenSequence = true; continue }
            guard let name = piece["SpecialToken"]?["id"]?.string else { throw TokenizerLoadError("post_processor single template has an unknown piece") }
            var ids: [Int32] = []
            if let listed = v["special_tokens"]?[name]?["ids"]?.array {
                ids = try listed.map { item in
                    guard let id = item.int, id >= 0, id < 1 << 24 else {
                        throw TokenizerLoadError("post_processor special token \(jsonQuoted(name)) has an id that is not a token id")
                    }
                    return Int32(id)
                }
            } else if let id = byName[name] {
                ids = [id]
            } else {
                throw TokenizerLoadError("post_processor uses special token \(jsonQuoted(name)), which is not in the vocabulary")
            }
            if seenSequence { suffix += ids } else { prefix += ids }
        }
        return (prefix, suffix)
    case "RobertaProcessing", "BertProcessing":
        guard let cls = v["cls"]?.array?.last?.int, let sep = v["sep"]?.array?.last?.int,
              (0..<(1 << 24)).contains(cls), (0..<(1 << 24)).contains(sep) else {
            throw TokenizerLoadError("post_processor \(type) needs \"cls\" and \"sep\"")
        }
        return ([Int32(cls)], [Int32(sep)])
    default:
        throw TokenizerLoadError("post_processor type \"\(type)\" is not supported (supported: TemplateProcessing, ByteLevel, RobertaProcessing, BertProcessing, Sequence)")
    }
}
