// `sortedtrain bench tokenizer`: encode throughput (MB/s) of sortedtrain's tokenizer on a
// text, side by side with HF `tokenizers` (Python, one thread) on the same documents, and a
// check that both produce the same ids.
import ArgumentParser
import Foundation
import SortedData

struct TokenizerBenchCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenizer",
        abstract: "Measure tokenizer encode speed against HF tokenizers on the same text.",
        discussion: """
        The text is split into documents at blank lines; both sides encode every document
        without added special tokens, one warm-up pass then --repeat timed passes, and the
        best pass is reported. The Python side runs `Tokenizer.encode_batch_fast` with
        RAYON_NUM_THREADS=1 (one thread) and is skipped when python3 cannot import
        tokenizers. For a .gguf tokenizer the Python side builds the same vocabulary with the
        `gguf` package (byte-level models only).
        """)

    @Option(help: "tokenizer.json, a model directory, a .gguf file, or \"byte\".")
    var tokenizer: String

    @Option(parsing: .upToNextOption, help: "Text files to encode (default: Tests/Fixtures/tokenizers/corpus.txt).")
    var text: [String] = []

    @Option(parsing: .unconditional, help: "Repeat the text until it is at least this many MB (0: as is).")
    var megabytes: Double = 0

    @Option(name: .customLong("repeat"), parsing: .unconditional, help: "Timed passes per side (the best is reported).")
    var passes: Int = 3

    @Flag(inversion: .prefixedNo, help: "Also time HF tokenizers through python3.")
    var python = true

    @Option(help: "The Python interpreter for the reference side.")
    var pythonExecutable: String = "python3"

    func validate() throws {
        guard passes >= 1 else { throw ValidationError("--repeat must be at least 1") }
        guard megabytes >= 0 else { throw ValidationError("--megabytes must be non-negative") }
    }

    func run() throws {
        let files = text.isEmpty ? ["Tests/Fixtures/tokenizers/corpus.txt"] : text
        var corpus = ""
        for f in files {
            guard let data = FileManager.default.contents(atPath: f) else {
                throw DataError(file: f, "cannot be read; give the text to encode with --text FILE")
            }
            guard let s = String(validating: data, as: UTF8.self) else { throw DataError(file: f, "is not valid UTF-8") }
            corpus += s
            if !corpus.hasSuffix("\n") { corpus += "\n" }
        }
        let unit = corpus
        while Double(corpus.utf8.count) < megabytes * 1_000_000 { corpus += unit }
        let documents = corpus.components(separatedBy: "\n\n").filter { !$0.isEmpty }
        let bytes = documents.reduce(0) { $0 + $1.utf8.count }
        let megabytesOfText = Double(bytes) / 1_000_000

        let t = try TokenizerLoader.load(tokenizer)
        print("text: \(files.joined(separator: ", ")) → \(String(format: "%.2f", megabytesOfText)) MB in \(documents.count) documents")
        print("tokenizer: \(t.summary)")

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
        let swiftRate = megabytesOfText / best
        print(String(format: "sortedtrain:            %7.2f MB/s  (%.3f s, %d tokens; first pass, cold caches: %.2f MB/s)",
                     swiftRate, best, swiftTokens, megabytesOfText / cold))

        guard python else { return }
        guard let reference = try runPython(documents: documents) else { return }
        let same = reference.tokens == swiftTokens && reference.checksum == swiftChecksum
        print(String(format: "tokenizers %@ (1 thread): %7.2f MB/s  (%.3f s, %d tokens; first pass, cold caches: %.2f MB/s)",
                     reference.version, megabytesOfText / reference.seconds, reference.seconds, reference.tokens,
                     megabytesOfText / reference.coldSeconds))
        print("ids identical: \(same ? "yes" : "NO")")
        print(String(format: "speed: sortedtrain is %.2f× tokenizers", reference.seconds / best))
    }

    struct PythonResult {
        var version: String
        var seconds: Double
        var coldSeconds: Double
        var tokens: Int
        var checksum: UInt64
    }

    /// Runs the reference side; nil (with a note) when python3 or tokenizers is missing.
    func runPython(documents: [String]) throws -> PythonResult? {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("sortedtrain-bench-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let docsURL = dir.appendingPathComponent("documents.json")
        try Data(JSONValue.array(documents.map { .string($0) }).serialized.utf8).write(to: docsURL)
        let scriptURL = dir.appendingPathComponent("bench.py")
        try Data(Self.pythonScript.utf8).write(to: scriptURL)

        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [pythonExecutable, scriptURL.path, tokenizer, docsURL.path, String(passes)]
        var environment = ProcessInfo.processInfo.environment
        environment["RAYON_NUM_THREADS"] = "1"
        environment["TOKENIZERS_PARALLELISM"] = "false"
        process.environment = environment
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        do { try process.run() } catch {
            print("tokenizers (Python): not run (\(pythonExecutable): \(error.localizedDescription))")
            return nil
        }
        let output = out.fileHandleForReading.readDataToEndOfFile()
        let errors = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0, let json = try? JSONParser.parse(output) else {
            let last = String(decoding: errors, as: UTF8.self).split(separator: "\n").last.map(String.init) ?? "exit \(process.terminationStatus)"
            print("tokenizers (Python): not run (\(last))")
            return nil
        }
        return PythonResult(version: json["version"]?.string ?? "?", seconds: json["seconds"]?.double ?? .nan,
                            coldSeconds: json["cold_seconds"]?.double ?? .nan,
                            tokens: json["tokens"]?.int ?? -1, checksum: UInt64(json["checksum"]?.string ?? "") ?? 0)
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
