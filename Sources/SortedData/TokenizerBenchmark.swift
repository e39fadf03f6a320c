// TokenizerBenchmark: encode throughput (MB/s) of sortedtrain's tokenizer on a text, side
// by side with HF `tokenizers` (Python, one thread) on the same documents, and whether
// both produce the same ids (a count and a checksum of the ids). `sortedtrain bench
// tokenizer` prints it.
import Foundation
import SortedFormats

public enum TokenizerBenchmark {
    /// The text encoded when none is given.
    public static let defaultText = "Tests/Fixtures/tokenizers/corpus.txt"

    /// The text to encode, split into documents at blank lines.
    public struct Corpus: Sendable {
        public var documents: [String]
        /// UTF-8 bytes of the documents, in MB (10^6).
        public var megabytes: Double
    }

    /// One side's encode of every document: the best of the timed passes, the first
    /// (cold) pass, and the ids as a count and a checksum to compare the sides by.
    public struct Timing: Sendable {
        public var seconds: Double
        public var coldSeconds: Double
        public var tokens: Int
        public var checksum: UInt64
    }

    /// What the Python side did: its `tokenizers` version and timing, or why it did not run.
    public enum Reference: Sendable {
        case ran(version: String, timing: Timing)
        case notRun(reason: String)
    }

    /// The files, joined (each ending in a newline) and repeated until at least `megabytes`
    /// MB (0: as is).
    public static func corpus(files: [String], megabytes: Double) throws -> Corpus {
        var corpus = ""
        for f in files {
            guard let data = FileManager.default.contents(atPath: f) else {
                throw DataError(file: f, .unreadable("no such readable file"))
            }
            guard let s = String(validating: data, as: UTF8.self) else { throw DataError(file: f, .notUTF8) }
            corpus += s
            if !corpus.hasSuffix("\n") { corpus += "\n" }
        }
        let unit = corpus
        while Double(corpus.utf8.count) < megabytes * 1_000_000 { corpus += unit }
        let documents = corpus.components(separatedBy: "\n\n").filter { !$0.isEmpty }
        let bytes = documents.reduce(0) { $0 + $1.utf8.count }
        return Corpus(documents: documents, megabytes: Double(bytes) / 1_000_000)
    }

    /// sortedtrain's side: every document without added special tokens, one warm-up pass
    /// then `passes` timed ones.
    public static func time(_ t: Tokenizer, documents: [String], passes: Int) -> Timing {
        var swiftTokens = 0
        var swiftChecksum: UInt64 = 0
        var best = Double.infinity
        var cold = 0.0
        for pass in 0...passes {
            let start = DispatchTime.now().uptimeNanoseconds
            var count = 0
            var checksum: UInt64 = 0
            for d in documents {
                let ids = t.encode(d, addSpecialTokens: false, parseSpecial: true)
                count += ids.count
                for id in ids { checksum = checksum &* 31 &+ UInt64(id) }
            }
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            if pass > 0 { best = min(best, seconds) } else { cold = seconds }
            swiftTokens = count
            swiftChecksum = checksum
        }
        return Timing(seconds: best, coldSeconds: cold, tokens: swiftTokens, checksum: swiftChecksum)
    }

    /// The reference side: HF `tokenizers`' `encode_batch_fast` on the same documents with
    /// RAYON_NUM_THREADS=1, run by `python` on the tokenizer `spec` (a .gguf is rebuilt with
    /// the `gguf` package, byte-level models only). Not run when python or tokenizers is missing.
    public static func reference(python: String, tokenizer spec: String, documents: [String], passes: Int) throws -> Reference {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sortedtrain-bench-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let docsURL = dir.appendingPathComponent("documents.json")
        try Data(JSONValue.array(documents.map { .string($0) }).serialized.utf8).write(to: docsURL)
        let scriptURL = dir.appendingPathComponent("bench.py")
        try Data(Self.pythonScript.utf8).write(to: scriptURL)

        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [python, scriptURL.path, spec, docsURL.path, String(passes)]
        var environment = ProcessInfo.processInfo.environment
        environment["RAYON_NUM_THREADS"] = "1"
        environment["TOKENIZERS_PARALLELISM"] = "false"
        process.environment = environment
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        do { try process.run() } catch {
            return .notRun(reason: "\(python): \(error.localizedDescription)")
        }
        let output = out.fileHandleForReading.readDataToEndOfFile()
        let errors = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0, let json = try? JSONParser.parse(output) else {
            let last = String(decoding: errors, as: UTF8.self).split(separator: "\n").last.map(String.init) ?? "exit \(process.terminationStatus)"
            return .notRun(reason: last)
        }
        let timing = Timing(seconds: json["seconds"]?.double ?? .nan, coldSeconds: json["cold_seconds"]?.double ?? .nan,
                            tokens: json["tokens"]?.int ?? -1, checksum: UInt64(json["checksum"]?.string ?? "") ?? 0)
        return .ran(version: json["version"]?.string ?? "?", timing: timing)
    }

    static let pythonScript = #"""
import json, sys, time
import tokenizers
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, AddedToken

path, docs_path, repeat = sys.argv[1], sys.argv[2], int(sys.argv[3])
docs = json.load(open(docs_path, encoding="utf-8"))
if path.endswith(".gguf"):
    import gguf
    f = gguf.GGUFReader(path).fields
    if f["tokenizer.ggml.model"].contents() != "gpt2":
        sys.exit("the Python side builds byte-level (gpt2) GGUF tokenizers only")
    tokens = f["tokenizer.ggml.tokens"].contents()
    types = f["tokenizer.ggml.token_type"].contents()
    merges = [tuple(m.split(" ")) for m in f["tokenizer.ggml.merges"].contents()]
    pre = f["tokenizer.ggml.pre"].contents() if "tokenizer.ggml.pre" in f else "default"
    llama3 = pre in ("llama3", "llama-v3", "llama-bpe", "falcon3", "dbrx", "smaug-bpe", "pixtral")
    tok = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=merges, ignore_merges=llama3))
    if llama3:
        pattern = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(tokenizers.Regex(pattern), "isolated"),
                                                     pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    elif pre in ("smollm", "starcoder", "refact", "command-r", "codeshell", "exaone", "minerva"):
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                                     pre_tokenizers.ByteLevel(add_prefix_space=False)])
    else:
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(tokens[i], normalized=False, special=True) for i, t in enumerate(types) if t == 3])
else:
    import os
    tok = Tokenizer.from_file(os.path.join(path, "tokenizer.json") if os.path.isdir(path) else path)
best, cold = float("inf"), 0.0
for p in range(repeat + 1):
    start = time.perf_counter()
    encodings = tok.encode_batch_fast(docs, add_special_tokens=False)
    seconds = time.perf_counter() - start
    if p > 0:
        best = min(best, seconds)
    else:
        cold = seconds
count, checksum = 0, 0
for e in encodings:
    count += len(e.ids)
    for i in e.ids:
        checksum = (checksum * 31 + i) % (1 << 64)
print(json.dumps({"version": tokenizers.__version__, "seconds": best, "cold_seconds": cold, "tokens": count,
                  "checksum": str(checksum)}))
"""#
}
