// GGUFTokenizerMetadata: a tokenizer as the `tokenizer.ggml.*` metadata llama.cpp reads — the
// inverse of GGUFTokenizer.swift's reading, so that BPETokenizer.load(gguf:) gives the same ids:
// byte-level BPE as model "gpt2" (tokens, types, merges, the pre-tokenizer's llama.cpp name),
// SentencePiece-style BPE as model "llama" (tokens, scores ranking the merges, types with
// <0xNN> byte tokens), and the built-in byte tokenizer as a gpt2 vocabulary without merges.
import Foundation
import SortedFormats

public enum GGUFTokenizerMetadata {
    /// The metadata for `tokenizer` in a model with `vocabularySize` embedding rows (ids past the
    /// tokenizer's are written as unused "[PAD<id>]" tokens, as llama.cpp's converter does).
    /// `source` names the tokenizer in errors. `notes` says what the GGUF form does not keep.
    public static func metadata(of tokenizer: Tokenizer, source: String, vocabularySize: Int, chatTemplate: String?) throws
        -> (metadata: [(String, GGUFFile.Value)], notes: [String]) {
        guard tokenizer.vocabularySize <= vocabularySize else {
            throw DataError(file: source, "has \(tokenizer.vocabularySize) ids, more than the model's \(vocabularySize) embedding rows")
        }
        var result: (metadata: [(String, GGUFFile.Value)], notes: [String])
        if tokenizer is ByteTokenizer {
            result = byteTokenizer(vocabularySize: vocabularySize)
        } else if let bpe = tokenizer as? BPETokenizer {
            do { result = try bpe.ggufMetadata(vocabularySize: vocabularySize) } catch let e as TokenizerLoadError {
                throw DataError(file: source, e.message)
            }
        } else {
            throw DataError(file: source, "is a tokenizer that has no GGUF form")
        }
        func id(_ key: String, _ value: Int32?) { if let value { result.metadata.append((key, .uint32(UInt32(value)))) } }
        id("tokenizer.ggml.bos_token_id", tokenizer.bosID)
        id("tokenizer.ggml.eos_token_id", tokenizer.eosID)
        id("tokenizer.ggml.padding_token_id", tokenizer.padID)
        if let chatTemplate { result.metadata.append(("tokenizer.chat_template", .string(chatTemplate))) }
        return result
    }

    /// ids 0…255 as the GPT-2 byte alphabet (so each byte is its own token and, with no merges,
    /// stays one), then BOS, EOS and PAD as control tokens.
    static func byteTokenizer(vocabularySize: Int) -> (metadata: [(String, GGUFFile.Value)], notes: [String]) {
        let byteTokenizer = ByteTokenizer()
        var tokens = (0..<256).map { ByteLevel.spelling(of: [UInt8($0)]) }
        var types = [Int](repeating: BPETokenizer.GGUFTokenType.normal.rawValue, count: 256)
        for id in [ByteTokenizer.bos, ByteTokenizer.eos, ByteTokenizer.pad] {
            tokens.append(byteTokenizer.token(forID: id)!)
            types.append(BPETokenizer.GGUFTokenType.control.rawValue)
        }
        pad(&tokens, &types, to: vocabularySize)
        return ([("tokenizer.ggml.model", .string("gpt2")), ("tokenizer.ggml.pre", .string("gpt-2")),
                 ("tokenizer.ggml.tokens", .array(tokens.map { .string($0) })),
                 ("tokenizer.ggml.token_type", .array(types.map { .int32(Int32($0)) })),
                 ("tokenizer.ggml.merges", .array([])),
                 ("tokenizer.ggml.add_bos_token", .bool(true)), ("tokenizer.ggml.add_eos_token", .bool(false))],
                ["the byte tokenizer's <bos>, <eos> and <pad> are control tokens in the GGUF, so llama.cpp matches them when they are written in text (the built-in tokenizer never does)"])
    }

    static func pad(_ tokens: inout [String], _ types: inout [Int], to count: Int) {
        for i in tokens.count..<max(tokens.count, count) {
            tokens.append("[PAD\(i)]")
            types.append(BPETokenizer.GGUFTokenType.unused.rawValue)
        }
    }
}

extension BPETokenizer {
    func ggufMetadata(vocabularySize: Int) throws -> (metadata: [(String, GGUFFile.Value)], notes: [String]) {
        typealias T = GGUFTokenType
        var notes: [String] = []
        var tokens = idToToken
        var types = [Int](repeating: T.normal.rawValue, count: tokens.count)
        for (i, t) in tokens.enumerated() where t.isEmpty {
            tokens[i] = "[PAD\(i)]"
            types[i] = T.unused.rawValue
        }
        for t in added { types[Int(t.id)] = t.special ? T.control.rawValue : T.userDefined.rawValue }
        if let t = added.first(where: { $0.lstrip || $0.rstrip || $0.singleWord }) {
            notes.append("added token \(jsonQuoted(t.content)) has lstrip, rstrip or single_word, which GGUF does not record; llama.cpp matches it exactly")
        }

        func flags() throws -> [(String, GGUFFile.Value)] {
            func adds(_ ids: [Int32], _ special: Int32?, _ what: String) throws -> Bool {
                if ids.isEmpty { return false }
                guard let special, ids == [special] else {
                    throw TokenizerLoadError("its post-processor adds \(ids) \(what) each sequence; GGUF can only say whether BOS (before) and EOS (after) are added")
                }
                return true
            }
            return [("tokenizer.ggml.add_bos_token", .bool(try adds(prefixIDs, bosID, "before"))),
                    ("tokenizer.ggml.add_eos_token", .bool(try adds(suffixIDs, eosID, "after")))]
        }

        let unknown: [(String, GGUFFile.Value)] = model.unknownID.map { [("tokenizer.ggml.unknown_token_id", .uint32(UInt32($0)))] } ?? []
        if model.byteLevel {
            guard normalizers.isEmpty else { throw TokenizerLoadError("has a normalizer, which a GGUF byte-level (gpt2) tokenizer cannot express") }
            let pre: String
            switch (preTokenizers.count, preTokenizers.first, preTokenizers.last, model.ignoreMerges) {
            case (1, .byteLevel(addPrefixSpace: false, useRegex: true)?, _, false): pre = "gpt-2"
            case (2, .digits(individual: true)?, .byteLevel(addPrefixSpace: false, useRegex: true)?, false): pre = "smollm"
            case (2, .split(.llama3, .isolated, invert: false)?, .byteLevel(addPrefixSpace: false, useRegex: false)?, true): pre = "llama-bpe"
            default:
                throw TokenizerLoadError("has a pre-tokenizer with no llama.cpp name (GGUF knows GPT-2's byte-level, SmolLM2's digits + byte-level and LLaMA 3's split + byte-level)")
            }
            if let ranks = model.mergeRanks, ranks != Array(0..<Int32(ranks.count)) {
                throw TokenizerLoadError("has merges with shared ranks, which a GGUF merge list cannot express")
            }
            let merges = model.mergeIDs.map { GGUFFile.Value.string(model.tokens[Int($0.0)] + " " + model.tokens[Int($0.1)]) }
            GGUFTokenizerMetadata.pad(&tokens, &types, to: vocabularySize)
            return ([("tokenizer.ggml.model", .string("gpt2")), ("tokenizer.ggml.pre", .string(pre)),
                     ("tokenizer.ggml.tokens", .array(tokens.map { .string($0) })),
                     ("tokenizer.ggml.token_type", .array(types.map { .int32(Int32($0)) })),
                     ("tokenizer.ggml.merges", .array(merges))] + unknown + (try flags()), notes)
        }

        // SentencePiece-style: "▁" for spaces by normalizer, no pre-tokenizer.
        let meta = Array("\u{2581}".utf8)
        let addSpacePrefix: Bool
        switch (normalizers.count, normalizers.first, normalizers.last) {
        case (2, .prepend(let p)?, .replace(let a, let b)?) where p == meta && a == [0x20] && b == meta: addSpacePrefix = true
        case (1, .replace(let a, let b)?, _) where a == [0x20] && b == meta: addSpacePrefix = false
        default:
            throw TokenizerLoadError("is neither byte-level nor SentencePiece-style (Prepend \"\u{2581}\" + Replace \" \" → \"\u{2581}\"), the two tokenizer kinds GGUF holds")
        }
        guard preTokenizers.isEmpty else {
            throw TokenizerLoadError("is SentencePiece-style with a pre-tokenizer, which a GGUF llama tokenizer cannot express")
        }
        // llama.cpp merges the adjacent pair whose joined token scores highest: a merge's
        // token scores minus its rank; tokens no merge makes score below every merge.
        var scores = [Float](repeating: -Float(model.mergeIDs.count + 1), count: tokens.count)
        for (i, m) in model.mergeIDs.enumerated().reversed() {
            scores[Int(m.2)] = -Float(model.mergeRanks.map { Int($0[i]) } ?? i)
        }
        if let unknown = model.unknownID { types[Int(unknown)] = T.unknown.rawValue }
        if model.byteFallback {
            for b in 0..<256 {
                if let id = model.id(modelBytes: Array(String(format: "<0x%02X>", b).utf8)) { types[Int(id)] = T.byte.rawValue }
            }
        }
        GGUFTokenizerMetadata.pad(&tokens, &types, to: vocabularySize)
        scores += [Float](repeating: -Float(model.mergeIDs.count + 1), count: tokens.count - scores.count)
        return ([("tokenizer.ggml.model", .string("llama")),
                 ("tokenizer.ggml.tokens", .array(tokens.map { .string($0) })),
                 ("tokenizer.ggml.scores", .array(scores.map { .float32($0) })),
                 ("tokenizer.ggml.token_type", .array(types.map { .int32(Int32($0)) })),
                 ("tokenizer.ggml.add_space_prefix", .bool(addSpacePrefix))] + unknown + (try flags()), notes)
    }
}
