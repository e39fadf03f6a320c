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
import Foundation

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
        let n = tokens.count
        let e = offsets.count
        let header: [String: JSONValue] = [
            "__metadata__": .object(metadata.mapValues { .string($0) }),
            "tokens": .object(["dtype": .string("I32"), "shape": .array([.number(Double(n))]),
                               "data_offsets": .array([.number(0), .number(Double(4 * n))])]),
            "labels": .object(["dtype": .string("I32"), "shape": .array([.number(Double(n))]),
                               "data_offsets": .array([.number(Double(4 * n)), .number(Double(8 * n))])]),
            "offsets": .object(["dtype": .string("I64"), "shape": .array([.number(Double(e))]),
                                "data_offsets": .array([.number(Double(8 * n)), .number(Double(8 * n + 8 * e))])]),
        ]
        var json = Array(JSONValue.object(header).serialized.utf8)
        while json.count % 8 != 0 { json.append(0x20) }
        var data = Data(capacity: 8 + json.count + 8 * n + 8 * e)
        withUnsafeBytes(of: UInt64(json.count).littleEndian) { data.append(contentsOf: $0) }
        data.append(contentsOf: json)
        tokens.withUnsafeBytes { data.append(contentsOf: $0) }   // little-endian hosts only
        labels.withUnsafeBytes { data.append(contentsOf: $0) }
        offsets.map { Int64($0).littleEndian }.withUnsafeBytes { data.append(contentsOf: $0) }
        let temporary = url.deletingLastPathComponent().appendingPathComponent(".\(url.lastPathComponent).tmp")
        do {
            try data.write(to: temporary)
            if FileManager.default.fileExists(atPath: url.path) { try FileManager.default.removeItem(at: url) }
            try FileManager.default.moveItem(at: temporary, to: url)
        } catch {
            throw DataError(file: url.path, "cannot be written: \(error.localizedDescription)")
        }
    }

    /// Reads and checks a prepared file: version, tensor sizes, offsets, ids and labels.
    public convenience init(contentsOf url: URL) throws {
        let path = url.path
        func fail(_ message: String) -> DataError { DataError(file: path, message) }
        let data: Data
        do { data = try Data(contentsOf: url, options: .mappedIfSafe) } catch {
            throw fail("cannot be read: \(error.localizedDescription)")
        }
        guard data.count >= 8 else { throw fail("is too short to be a prepared dataset; the file is truncated") }
        let headerLength = data.withUnsafeBytes { Int(clamping: UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self))) }
        guard headerLength > 1, headerLength <= data.count - 8 else {
            throw fail("header length \(headerLength) does not fit the file (\(data.count) bytes); the file is truncated or not a prepared dataset")
        }
        let header: JSONValue
        do { header = try JSONParser.parse(data.subdata(in: 8..<(8 + headerLength))) } catch {
            throw fail("header is not valid JSON; the file is corrupt or not a prepared dataset")
        }
        guard let meta = header["__metadata__"]?.object else { throw fail("has no __metadata__; it is not a prepared dataset") }
        var metadata: [String: String] = [:]
        for (k, v) in meta { metadata[k] = v.string }
        guard metadata["format"] == Self.format else {
            throw fail("is not a sortedtrain prepared dataset (format \(metadata["format"].map { "\"\($0)\"" } ?? "missing")); make one with `sortedtrain prepare`")
        }
        guard let version = metadata["version"].flatMap({ Int($0) }) else { throw fail("has no format version") }
        guard version == Self.version else {
            throw fail("has format version \(version); this sortedtrain reads version \(Self.version): prepare the data again")
        }
        let payload = 8 + headerLength
        func tensor(_ name: String, dtype: String, elementSize: Int) throws -> (Range<Int>, Int) {
            guard let t = header[name], t["dtype"]?.string == dtype, let shape = t["shape"]?.array, shape.count == 1,
                  let count = shape[0].int, let range = t["data_offsets"]?.array, range.count == 2,
                  let lo = range[0].int, let hi = range[1].int else {
                throw fail("tensor \"\(name)\" is missing or malformed (expected \(dtype) with one dimension)")
            }
            guard lo >= 0, hi >= lo, hi - lo == count * elementSize, payload + hi <= data.count else {
                throw fail("tensor \"\(name)\" lies outside the file; the file is truncated or corrupt")
            }
            return ((payload + lo)..<(payload + hi), count)
        }
        let (tokenRange, n) = try tensor("tokens", dtype: "I32", elementSize: 4)
        let (labelRange, nLabels) = try tensor("labels", dtype: "I32", elementSize: 4)
        let (offsetRange, e) = try tensor("offsets", dtype: "I64", elementSize: 8)
        guard nLabels == n else { throw fail("has \(n) tokens but \(nLabels) labels") }
        guard e >= 1 else { throw fail("offsets is empty") }
        func int32s(_ r: Range<Int>) -> [Int32] {
            data.withUnsafeBytes { raw in
                (0..<(r.count / 4)).map { Int32(littleEndian: (raw.baseAddress! + r.lowerBound + 4 * $0).loadUnaligned(as: Int32.self)) }
            }
        }
        let tokens = int32s(tokenRange)
        let labels = int32s(labelRange)
        let offsets: [Int] = data.withUnsafeBytes { raw in
            (0..<e).map { Int(Int64(littleEndian: (raw.baseAddress! + offsetRange.lowerBound + 8 * $0).loadUnaligned(as: Int64.self))) }
        }
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
    /// Whether `url` is a file written by `sortedtrain prepare`.
    public static func isPrepared(_ url: URL) -> Bool {
        guard let h = FileHandle(forReadingAtPath: url.path) else { return false }
        defer { try? h.close() }
        // The throwing reads: readData(ofLength:) traps on a folder or a read error.
        guard let prefix = try? h.read(upToCount: 8), prefix.count == 8 else { return false }
        let length = prefix.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)) }
        guard length > 0, length < 1 << 24, let header = try? h.read(upToCount: Int(length)) else { return false }
        return (try? JSONParser.parse(header))?["__metadata__"]?["format"]?.string == PreparedDataset.format
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
