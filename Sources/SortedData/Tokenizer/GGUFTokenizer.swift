// GGUFTokenizer: builds a BPETokenizer from the tokenizer stored in GGUF metadata
// (`tokenizer.ggml.model` = "gpt2" for byte-level BPE, "llama" for SentencePiece BPE),
// following llama.cpp's reading of the same keys.
import Foundation
import SortedFormats

extension BPETokenizer {
    /// llama.cpp token types.
    enum GGUFTokenType: Int {
        case undefined = 0, normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6
    }

    /// Loads the tokenizer of a GGUF file.
    public static func load(gguf url: URL) throws -> BPETokenizer {
        let file = try GGUFFile(contentsOf: url)
        do {
            return try load(gguf: file)
        } catch let e as TokenizerLoadError {
            throw DataError(file: url.path, e.message)
        }
    }

    public static func load(gguf file: GGUFFile) throws -> BPETokenizer {
        let m = file.metadata
        guard let modelName = m["tokenizer.ggml.model"]?.string else {
            throw TokenizerLoadError("has no tokenizer.ggml.model key; it holds no tokenizer")
        }
        guard let tokens = m["tokenizer.ggml.tokens"]?.strings, !tokens.isEmpty else {
            throw TokenizerLoadError("tokenizer.ggml.tokens is missing or not an array of strings")
        }
        let types = m["tokenizer.ggml.token_type"]?.ints ?? Array(repeating: 1, count: tokens.count)
        guard types.count == tokens.count else {
            throw TokenizerLoadError("tokenizer.ggml.token_type has \(types.count) entries for \(tokens.count) tokens")
        }
        func optionalID(_ key: String) throws -> Int32? {
            guard let v = m[key] else { return nil }
            guard let id = v.int, id >= 0, id < tokens.count else {
                throw TokenizerLoadError("\(key) = \(v) is not a token id below \(tokens.count)")
            }
            return Int32(id)
        }
        let bos = try optionalID("tokenizer.ggml.bos_token_id")
        let eos = try optionalID("tokenizer.ggml.eos_token_id")
        let pad = try optionalID("tokenizer.ggml.padding_token_id")
        var unk = try optionalID("tokenizer.ggml.unknown_token_id")

        // Control and user-defined tokens are matched in text, as llama.cpp and HF do.
        var added: [AddedToken] = []
        for (i, t) in types.enumerated() where !tokens[i].isEmpty {
            if t == GGUFTokenType.control.rawValue || t == GGUFTokenType.userDefined.rawValue
                || (t == GGUFTokenType.unknown.rawValue && modelName == "llama") {
                added.append(.init(content: tokens[i], id: Int32(i), special: t != GGUFTokenType.userDefined.rawValue,
                                   lstrip: false, rstrip: false, singleWord: false))
            }
        }

        var idOf: [String: Int32] = [:]
        idOf.reserveCapacity(tokens.count)
        for (i, t) in tokens.enumerated() where idOf[t] == nil { idOf[t] = Int32(i) }

        switch modelName {
        case "gpt2":
            guard let merges = m["tokenizer.ggml.merges"]?.strings else {
                throw TokenizerLoadError("tokenizer.ggml.merges is missing; a gpt2 tokenizer needs its merges")
            }
            var mergeIDs: [(Int32, Int32, Int32)] = []
            mergeIDs.reserveCapacity(merges.count)
            for (rank, s) in merges.enumerated() {
                let parts = s.split(separator: " ", omittingEmptySubsequences: false)
                guard parts.count == 2, let a = idOf[String(parts[0])], let b = idOf[String(parts[1])],
                      let merged = idOf[String(parts[0]) + String(parts[1])] else {
                    throw TokenizerLoadError("tokenizer.ggml.merges[\(rank)] \(jsonQuoted(s)) does not name two tokens whose join is a token")
                }
                mergeIDs.append((a, b, merged))
            }
            let pre = m["tokenizer.ggml.pre"]?.string ?? "default"
            var preTokenizers: [PreTokenizerStep]
            var ignoreMerges = false
            switch pre {
            case "default", "gpt-2", "gpt2", "phi-2", "mpt", "olmo", "jais":
                preTokenizers = [.byteLevel(addPrefixSpace: false, useRegex: true)]
            case "llama3", "llama-v3", "llama-bpe", "falcon3", "dbrx", "smaug-bpe", "pixtral":
                preTokenizers = [.split(.llama3, .isolated, invert: false), .byteLevel(addPrefixSpace: false, useRegex: false)]
                ignoreMerges = true
            case "smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva":
                // SmolLM2's tokenizer.json: Sequence[Digits(individual), ByteLevel]. Digits splits
                // first, so a run of spaces before a digit stays one piece ("  1" is ĠĠ|1, ids
                // 256 33). transformers' GGUF loader knows no "smollm" and builds ByteLevel alone,
                // which splits Ġ|Ġ1 (216 216 33): that is not the tokenizer the model was trained with.
                preTokenizers = [.digits(individual: true), .byteLevel(addPrefixSpace: false, useRegex: true)]
            default:
                throw TokenizerLoadError("tokenizer.ggml.pre is \"\(pre)\"; sortedtrain knows gpt2, llama3 and smollm-style pre-tokenizers")
            }
            let model = BPEModel(tokens: tokens, modelBytes: tokens.map { ByteLevel.bytes(of: $0) }, mergeIDs: mergeIDs,
                                 byteLevel: true, byteFallback: false, unknownID: nil, fuseUnknown: false,
                                 ignoreMerges: ignoreMerges)
            let addBOS = m["tokenizer.ggml.add_bos_token"]?.bool ?? ignoreMerges
            let addEOS = m["tokenizer.ggml.add_eos_token"]?.bool ?? false
            return BPETokenizer(Definition(
                kind: "byte-level BPE (GGUF, pre-tokenizer \(pre))", model: model, addedTokens: added,
                preTokenizers: preTokenizers, decoders: [.byteLevel],
                prefixIDs: addBOS ? bos.map { [$0] } ?? [] : [], suffixIDs: addEOS ? eos.map { [$0] } ?? [] : [],
                bosID: bos, eosID: eos, padID: pad, lossless: true))

        case "llama":
            guard let scores = m["tokenizer.ggml.scores"]?.floats, scores.count == tokens.count else {
                throw TokenizerLoadError("tokenizer.ggml.scores is missing or its length differs from tokenizer.ggml.tokens")
            }
            if unk == nil, let i = types.firstIndex(of: GGUFTokenType.unknown.rawValue) { unk = Int32(i) }
            // SentencePiece BPE merges the adjacent pair whose join has the highest score. As
            // ranked merges: every split of a normal token into two normal tokens, ranked by
            // the joined token's score (equal scores share a rank; the leftmost pair wins).
            let normal = types.map { $0 == GGUFTokenType.normal.rawValue || $0 == GGUFTokenType.userDefined.rawValue }
            let distinctScores = Array(Set(scores)).sorted(by: >)
            var rankOfScore: [Float: Int32] = [:]
            for (r, s) in distinctScores.enumerated() { rankOfScore[s] = Int32(r) }
            var mergeIDs: [(Int32, Int32, Int32)] = []
            var ranks: [Int32] = []
            for (id, token) in tokens.enumerated() where normal[id] {
                let scalars = Array(token.unicodeScalars)
                guard scalars.count >= 2 else { continue }
                var left = String.UnicodeScalarView()
                for k in 1..<scalars.count {
                    left.append(scalars[k - 1])
                    var right = String.UnicodeScalarView()
                    right.append(contentsOf: scalars[k...])
                    if let a = idOf[String(left)], let b = idOf[String(right)], normal[Int(a)], normal[Int(b)] {
                        mergeIDs.append((a, b, Int32(id)))
                        ranks.append(rankOfScore[scores[id]]!)
                    }
                }
            }
            let addSpacePrefix = m["tokenizer.ggml.add_space_prefix"]?.bool ?? true
            let hasBytes = types.contains(GGUFTokenType.byte.rawValue)
            let model = BPEModel(tokens: tokens, modelBytes: tokens.enumerated().map { i, t in
                                     types[i] == GGUFTokenType.control.rawValue ? nil : Array(t.utf8) },
                                 mergeIDs: mergeIDs, ranks: ranks, byteLevel: false, byteFallback: hasBytes,
                                 unknownID: unk, fuseUnknown: true, ignoreMerges: false)
            let space: [UInt8] = [0x20], meta = Array("\u{2581}".utf8)
            let addBOS = m["tokenizer.ggml.add_bos_token"]?.bool ?? true
            let addEOS = m["tokenizer.ggml.add_eos_token"]?.bool ?? false
            return BPETokenizer(Definition(
                kind: "SentencePiece BPE (GGUF)", model: model, addedTokens: added,
                normalizers: (addSpacePrefix ? [.prepend(meta)] : []) + [.replace(space, meta)],
                decoders: [.replace("\u{2581}", " "), .byteFallback, .fuse, .strip(" ", start: addSpacePrefix ? 1 : 0, stop: 0)],
                prefixIDs: addBOS ? bos.map { [$0] } ?? [] : [], suffixIDs: addEOS ? eos.map { [$0] } ?? [] : [],
                bosID: bos, eosID: eos, padID: pad, lossless: hasBytes))

        default:
            throw TokenizerLoadError("tokenizer.ggml.model is \"\(modelName)\"; sortedtrain reads \"gpt2\" (byte-level BPE) and \"llama\" (SentencePiece BPE)")
        }
    }
}
