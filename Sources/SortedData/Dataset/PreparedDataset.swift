// PreparedDataset: tokenized examples in memory and in the file `sortedtrain prepare` writes,
// and the collation of examples into padded [B, T] token and label arrays for the trainer.
//
// File format (version 1) — a safetensors file, so `safetensors.safe_open` reads it too:
//   8 bytes   little-endian UInt64 n: length of the JSON header
//   n bytes   JSON header, padded with spaces to a multiple of 8:
//             "__metadata__": {"format": "sortedtrain-prepared", "version": "1",
//                              "vocab_size", "bos_id", "eos_id", "pad_id", "template",
//                              "max_length", "tokenizer", "sources", and the counts}
//             "tokens":  {"dtype": "I32", "shape": [N],   "data_offsets": [a, b]}
//             "labels":  {"dtype": "I32", "shape": [N],   "data_offsets": [b, c]}
//             "offsets": {"dtype": "I64", "shape": [E+1], "data_offsets": [c, d]}
//   data      little-endian tensors. Example i is tokens[offsets[i]..<offsets[i+1]]; its labels
//             are HF-style and unshifted: labels[t] == tokens[t] where there is loss, else -100.
// Read and written by SortedFormats' safetensors codec (header style `sortedKeys`).
import Foundation
import SortedFormats

public final class PreparedDataset {
    public static let format = "sortedtrain-prepared"
    public static let version = 1

    public let tokens: [Int32]
    public let labels: [Int32]
    public let offsets: [Int]
    /// The header metadata (all strings, as safetensors requires).
    public let metadata: [String: String]

    /// Number of examples.
    public var count: Int { offsets.count - 1 }
    public var tokenCount: Int { tokens.count }
    public var vocabularySize: Int? { metadata["vocab_size"].flatMap { Int($0) } }
    /// The id batches are padded with: pad_id, else eos_id, else 0. Padding has label -100.
    public var paddingID: Int32 {
        metadata["pad_id"].flatMap { Int32($0) } ?? metadata["eos_id"].flatMap { Int32($0) } ?? 0
    }
    public var maxLength: Int? { metadata["max_length"].flatMap { Int($0) } }

    public init(_ examples: TokenizedExamples, metadata: [String: String] = [:]) {
        tokens = examples.tokens
        labels = examples.labels
        offsets = examples.offsets
        var m = metadata
        m["format"] = Self.format
        m["version"] = String(Self.version)
        let c = examples.counts
        for (k, v) in [("records", c.records), ("examples", c.examples), ("tokens", c.tokens), ("trained_tokens", c.trainedTokens),
                       ("truncated", c.truncated), ("dropped", c.dropped), ("skipped", c.skipped)] {
            m["count_" + k] = String(v)
        }
        self.metadata = m
    }

    public func length(_ i: Int) -> Int { offsets[i + 1] - offsets[i] }

    public func example(_ i: Int) -> (tokens: ArraySlice<Int32>, labels: ArraySlice<Int32>) {
        (tokens[offsets[i]..<offsets[i + 1]], labels[offsets[i]..<offsets[i + 1]])
    }

    /// Examples `indices` as B = indices.count rows of T = sequenceLength: tokens padded with
    /// `paddingID`, labels padded with -100; a longer example is cut to T. Row-major [B·T],
    /// ready for `TokenBatch(batchSize:sequenceLength:tokens:labels:)`.
    public func batch(_ indices: [Int], sequenceLength T: Int) -> (tokens: [Int32], labels: [Int32]) {
        precondition(T > 0, "sequence length must be positive")
        var outTokens = [Int32](repeating: paddingID, count: indices.count * T)
        var outLabels = [Int32](repeating: ignoreIndex, count: indices.count * T)
        tokens.withUnsafeBufferPointer { src in
            labels.withUnsafeBufferPointer { srcLabels in
                outTokens.withUnsafeMutableBufferPointer { dst in
                    outLabels.withUnsafeMutableBufferPointer { dstLabels in
                        for (row, i) in indices.enumerated() {
                            precondition(i >= 0 && i < count, "example index \(i) is outside 0..<\(count)")
                            let n = min(offsets[i + 1] - offsets[i], T)
                            (dst.baseAddress! + row * T).update(from: src.baseAddress! + offsets[i], count: n)
                            (dstLabels.baseAddress! + row * T).update(from: srcLabels.baseAddress! + offsets[i], count: n)
                        }
                    }
                }
            }
        }
        return (outTokens, outLabels)
    }

    // MARK: File

    /// Writes the file atomically (to a temporary name, then renamed).
    public func write(to url: URL) throws {
        let wideOffsets = offsets.map { Int64($0).littleEndian }
        do {
            try tokens.withUnsafeBytes { tokenBytes in           // little-endian hosts only
                try labels.withUnsafeBytes { labelBytes in
                    try wideOffsets.withUnsafeBytes { offsetBytes in
                        try SafetensorsWriter.write([
                            .init(name: "tokens", dtype: .i32, shape: [tokens.count], bytes: tokenBytes),
                            .init(name: "labels", dtype: .i32, shape: [labels.count], bytes: labelBytes),
                            .init(name: "offsets", dtype: .i64, shape: [offsets.count], bytes: offsetBytes),
                        ], metadata: metadata, style: .sortedKeys, to: url)
                    }
                }
            }
        } catch let error as FormatError {
            throw DataError(file: error.file, error.message)
        }
    }

    /// Reads and checks a prepared file: version, tensor sizes, offsets, ids and labels.
    public convenience init(contentsOf url: URL) throws {
        let path = url.path
        func fail(_ message: String) -> DataError { DataError(file: path, message) }
        let file: SafetensorsFile
        do { file = try SafetensorsFile(contentsOf: url) } catch let error as FormatError {
            throw DataError(file: error.file, error.message)
        }
        let metadata = file.metadata
        guard !metadata.isEmpty else { throw fail("has no __metadata__; it is not a prepared dataset") }
        guard metadata["format"] == Self.format else {
            throw fail("is not a sortedtrain prepared dataset (format \(metadata["format"].map { "\"\($0)\"" } ?? "missing")); make one with `sortedtrain prepare`")
        }
        guard let version = metadata["version"].flatMap({ Int($0) }) else { throw fail("has no format version") }
        guard version == Self.version else {
            throw fail("has format version \(version); this sortedtrain reads version \(Self.version): prepare the data again")
        }
        func tensor(_ name: String, dtype: SafetensorsFile.DType) throws -> Int {
            guard let t = file.entries[name], t.dtype == dtype, t.shape.count == 1 else {
                throw fail("tensor \"\(name)\" is missing or malformed (expected \(dtype.rawValue) with one dimension)")
            }
            return t.count
        }
        let n = try tensor("tokens", dtype: .i32)
        let nLabels = try tensor("labels", dtype: .i32)
        let e = try tensor("offsets", dtype: .i64)
        guard nLabels == n else { throw fail("has \(n) tokens but \(nLabels) labels") }
        guard e >= 1 else { throw fail("offsets is empty") }
        let tokens = try file.int32s("tokens")
        let labels = try file.int32s("labels")
        let offsets = try file.integers("offsets").map { Int($0) }
        guard offsets[0] == 0, offsets[e - 1] == n else { throw fail("offsets do not span the \(n) tokens; the file is corrupt") }
        for i in 1..<e where offsets[i] < offsets[i - 1] {
            throw fail("offsets decrease at example \(i - 1); the file is corrupt")
        }
        let vocab = metadata["vocab_size"].flatMap { Int($0) } ?? Int(Int32.max)
        if let bad = tokens.firstIndex(where: { $0 < 0 || Int($0) >= vocab }) {
            throw fail("token \(tokens[bad]) at position \(bad) is outside the vocabulary 0..<\(vocab); the file is corrupt")
        }
        for i in 0..<n where labels[i] != ignoreIndex && labels[i] != tokens[i] {
            throw fail("label \(labels[i]) at position \(i) is neither -100 nor the token there; the file is corrupt")
        }
        self.init(tokens: tokens, labels: labels, offsets: offsets, metadata: metadata)
    }

    private init(tokens: [Int32], labels: [Int32], offsets: [Int], metadata: [String: String]) {
        self.tokens = tokens
        self.labels = labels
        self.offsets = offsets
        self.metadata = metadata
    }

    /// The counts stored by `prepare`.
    public var counts: DatasetCounts {
        func c(_ k: String) -> Int { metadata["count_" + k].flatMap { Int($0) } ?? 0 }
        return DatasetCounts(records: c("records"), examples: c("examples"), tokens: c("tokens"), trainedTokens: c("trained_tokens"),
                             truncated: c("truncated"), dropped: c("dropped"), skipped: c("skipped"))
    }
}

/// Loads training data from what a run config names.
public enum DatasetLoader {
    /// Whether `url` is a file written by `sortedtrain prepare`, whole or damaged: it starts
    /// with a little-endian header length below 2^24, so a NUL is among its first 8 bytes,
    /// which no text file has. A damaged one is then refused by its reader with the reason,
    /// rather than trained on as text.
    public static func isPrepared(_ url: URL) -> Bool {
        guard let h = FileHandle(forReadingAtPath: url.path) else { return false }
        defer { try? h.close() }
        // The throwing reads: readData(ofLength:) traps on a folder or a read error.
        guard let prefix = try? h.read(upToCount: 8) else { return false }
        return prefix.contains(0)
    }

    /// A prepared file as is; otherwise the records of every file in `paths` (Alpaca JSON or
    /// JSONL, chat JSONL, text) tokenized with `builder`. `warnings` receives one line per
    /// skipped record (policy `skip`).
    public static func load(_ paths: [String], builder: ExampleBuilder, format: RecordFormat = .auto,
                            policy: BadRecordPolicy = .fail, warnings: (String) -> Void = { _ in }) throws -> PreparedDataset {
        if paths.count == 1, isPrepared(URL(fileURLWithPath: paths[0])) {
            let prepared = try PreparedDataset(contentsOf: URL(fileURLWithPath: paths[0]))
            if let v = prepared.vocabularySize, v > builder.tokenizer.vocabularySize {
                throw DataError(file: paths[0], "was prepared with a vocabulary of \(v) ids, larger than this tokenizer's \(builder.tokenizer.vocabularySize)")
            }
            return prepared
        }
        var records: [SourcedRecord] = []
        var skipped = 0
        for p in paths {
            let r = try RecordReader.read(URL(fileURLWithPath: p), format: format, policy: policy)
            records += r.records
            skipped += r.skipped.count
            for e in r.skipped { warnings("warning: skipped \(e)") }
        }
        var examples = try builder.build(records)
        examples.counts.skipped = skipped
        let t = builder.tokenizer
        var metadata: [String: String] = [
            "vocab_size": String(t.vocabularySize), "template": builder.template.rawValue,
            "max_length": String(builder.maxLength), "truncation": builder.truncation.rawValue,
            "tokenizer": t.summary, "sources": paths.joined(separator: ","),
        ]
        metadata["bos_id"] = t.bosID.map { String($0) }
        metadata["eos_id"] = t.eosID.map { String($0) }
        metadata["pad_id"] = (t.padID ?? t.eosID).map { String($0) }
        return PreparedDataset(examples, metadata: metadata)
    }
}
