// DatasetTests: reading Alpaca/chat/text records, bad input as one-line errors naming file and
// line (or skipped with counts), templates with loss only on responses, truncation counts,
// and the prepared file round trip and corruption checks.
import Foundation
import SortedTestSupport
import XCTest
@testable import SortedData

final class DatasetTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws { dir = try makeTemporaryDirectory("sortedtrain-data") }

    func write(_ name: String, _ text: String) -> URL {
        let url = dir.appendingPathComponent(name)
        try! Data(text.utf8).write(to: url)
        return url
    }

    func writeBytes(_ name: String, _ bytes: [UInt8]) -> URL {
        let url = dir.appendingPathComponent(name)
        try! Data(bytes).write(to: url)
        return url
    }

    /// The error of reading `url`, as printed.
    func readError(_ url: URL, format: RecordFormat = .auto, file: StaticString = #filePath, line: UInt = #line) -> String {
        do {
            _ = try RecordReader.read(url, format: format)
            XCTFail("expected an error for \(url.lastPathComponent)", file: file, line: line)
            return ""
        } catch {
            let message = String(describing: error)
            XCTAssertFalse(message.contains("\n"), "one line: \(message)", file: file, line: line)
            XCTAssertTrue(message.hasPrefix(url.path), "names the file: \(message)", file: file, line: line)
            return message
        }
    }

    // MARK: Records

    func testReadsAlpacaArrayJSONLChatAndText() throws {
        let array = write("a.json", """
        [
          {"instruction": "Add", "input": "1 2", "output": "3"},
          {"instruction": "Say hi", "output": "hi"}
        ]
        """)
        let r = try RecordReader.read(array)
        XCTAssertEqual(r.records.map(\.record), [.instruction(instruction: "Add", input: "1 2", output: "3"),
                                                  .instruction(instruction: "Say hi", input: "", output: "hi")])
        XCTAssertEqual(r.records.map(\.line), [2, 3])

        let jsonl = write("b.jsonl", "{\"instruction\": \"x\", \"input\": \"\", \"output\": \"y\"}\n\n{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}, {\"role\": \"assistant\", \"content\": \"a\"}]}\n{\"text\": \"doc\"}\n")
        let j = try RecordReader.read(jsonl)
        XCTAssertEqual(j.records.map(\.line), [1, 3, 4])
        XCTAssertEqual(j.records[1].record, .chat([ChatMessage(role: .user, content: "q"), ChatMessage(role: .assistant, content: "a")]))
        XCTAssertEqual(j.records[2].record, .text("doc"))

        let text = write("c.txt", "Plain text.\nTwo lines.\n")
        XCTAssertEqual(try RecordReader.read(text).records.map(\.record), [.text("Plain text.\nTwo lines.\n")])
    }

    func testBadRecordsNameFileAndLine() throws {
        XCTAssertTrue(readError(write("m.jsonl", "{\"instruction\": \"a\", \"output\": \"b\"}\n{\"instruction\": \"a\", \"output\": \n")).contains(":2: malformed JSON"))
        XCTAssertTrue(readError(write("f.jsonl", "{\"instruction\": \"a\", \"output\": \"b\"}\n\n{\"instruction\": \"a\"}\n")).contains(":3: missing field \"output\""))
        XCTAssertTrue(readError(write("e.jsonl", "{\"instruction\": \"a\", \"output\": \"  \"}\n")).contains(":1: field \"output\" is empty"))
        XCTAssertTrue(readError(write("t.jsonl", "{\"instruction\": \"a\", \"output\": 5}\n")).contains("field \"output\" must be a string"))
        XCTAssertTrue(readError(writeBytes("u.jsonl", Array("{\"text\": \"ok\"}\n{\"text\": \"".utf8) + [0xC3, 0x28] + Array("\"}\n".utf8))).contains(":2: is not valid UTF-8"))
        XCTAssertTrue(readError(writeBytes("u.txt", Array("fine\nfine\nbad ".utf8) + [0xFF] + Array("\n".utf8))).contains(":3: is not valid UTF-8"))
        XCTAssertTrue(readError(write("r.jsonl", "{\"messages\": [{\"role\": \"bot\", \"content\": \"x\"}]}\n")).contains("role \"bot\""))
        XCTAssertTrue(readError(write("n.jsonl", "{\"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}\n")).contains("no assistant message"))
        XCTAssertTrue(readError(write("k.jsonl", "{\"prompt\": \"x\"}\n")).contains("none of the fields"))
        XCTAssertTrue(readError(write("s.json", "[\n{\"instruction\": \"a\", \"output\": \"b\"},\n{\"instruction\": \"a\", \"output\": \"b\"}\n,]\n")).contains(":4:"))
        XCTAssertTrue(readError(write("x.json", "[\n{\"instruction\": \"a\", \"output\": \"b\"},\n  {\"instruction\": \"a\"}\n]\n")).contains(":3: missing field \"output\""))
        XCTAssertTrue(readError(write("o.jsonl", "[1, 2]\n")).contains("must be a JSON object"))
        XCTAssertTrue(readError(write("empty.jsonl", "\n\n")).contains("holds no records"))
        XCTAssertTrue(readError(write("alpaca-only.jsonl", "{\"text\": \"a\"}\n"), format: .alpaca).contains("missing field \"instruction\""))
        XCTAssertThrowsError(try RecordReader.read(dir.appendingPathComponent("nope.jsonl"))) {
            XCTAssertTrue(String(describing: $0).contains("cannot be read"))
        }
    }

    func testDataErrorsAreCases() throws {
        func problem(_ url: URL) -> (Int?, DataError.Problem)? {
            do { _ = try RecordReader.read(url) } catch let e as DataError { return (e.line, e.problem) } catch { XCTFail("\(error)") }
            return nil
        }
        let missing = problem(write("f2.jsonl", "{\"instruction\": \"a\", \"output\": \"b\"}\n\n{\"instruction\": \"a\"}\n"))
        XCTAssertEqual(missing?.0, 3)
        XCTAssertEqual(missing?.1, .missingField("output"))
        XCTAssertEqual(problem(writeBytes("u2.txt", [0x61, 0xFF, 0x0A]))?.1, .notUTF8)
        XCTAssertEqual(problem(write("empty2.jsonl", "\n"))?.1, .noRecords)
        XCTAssertEqual(problem(dir)?.1, .isFolder)
        guard case .malformedJSON(let column, _)? = problem(write("m2.jsonl", "{\"text\": }\n"))?.1 else { return XCTFail("malformed") }
        XCTAssertEqual(column, 10)
        let chat = write("chat2.jsonl", "{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}, {\"role\": \"assistant\", \"content\": \"a\"}, {\"role\": \"user\", \"content\": \"q2\"}, {\"role\": \"assistant\", \"content\": \"a2\"}]}\n")
        XCTAssertThrowsError(try ExampleBuilder(tokenizer: ByteTokenizer(), template: .alpaca, maxLength: 99).build(try RecordReader.read(chat).records)) {
            XCTAssertEqual(($0 as? DataError)?.problem, .template(.alpacaNeedsOneExchange))
        }
    }

    func testSkipPolicyCountsAndWarns() throws {
        let url = write("mixed.jsonl", """
        {"instruction": "a", "output": "b"}
        {"instruction": "a", "output": ""}
        not json
        {"instruction": "c", "output": "d"}
        """)
        let r = try RecordReader.read(url, policy: .skip)
        XCTAssertEqual(r.records.count, 2)
        XCTAssertEqual(r.skipped.map(\.line), [2, 3])
        var warnings: [String] = []
        let builder = ExampleBuilder(tokenizer: ByteTokenizer(), template: .none, maxLength: 64)
        let d = try DatasetLoader.load([url.path], builder: builder, policy: .skip) { warnings.append($0) }
        XCTAssertEqual(d.count, 2)
        XCTAssertEqual(d.counts.skipped, 2)
        XCTAssertEqual(warnings.count, 2)
        XCTAssertTrue(warnings[0].contains("mixed.jsonl:2:"))
    }

    // MARK: Templates

    func testAlpacaTemplateMasksThePrompt() throws {
        let t = ByteTokenizer()
        let b = ExampleBuilder(tokenizer: t, template: .alpaca, maxLength: 4096)
        let (tokens, labels) = try b.encode(.instruction(instruction: "Add", input: "1 2", output: "3"))
        let prompt = PromptTemplate.alpacaWithInput.replacingOccurrences(of: "{instruction}", with: "Add").replacingOccurrences(of: "{input}", with: "1 2")
        XCTAssertEqual(tokens, [ByteTokenizer.bos] + prompt.utf8.map { Int32($0) } + [Int32(UInt8(ascii: "3")), ByteTokenizer.eos])
        XCTAssertEqual(labels, Array(repeating: ignoreIndex, count: 1 + prompt.utf8.count) + [Int32(UInt8(ascii: "3")), ByteTokenizer.eos])
        XCTAssertTrue(prompt.hasSuffix("### Response:\n"))
        XCTAssertEqual(try PromptTemplate.alpaca.prompt(instruction: "Add", input: "1 2", tokenizer: t), Array(tokens.dropLast(2)))
    }

    func testChatMLTrainsAssistantTurnsAndImEnd() throws {
        let t = try TokenizerLoader.load(tokenizerFixtures.appendingPathComponent("bytelevel.json").path)
        let start = t.id(forToken: "<|im_start|>")!, end = t.id(forToken: "<|im_end|>")!
        let b = ExampleBuilder(tokenizer: t, template: .chatml, maxLength: 4096, systemPrompt: "Be brief.")
        let record = Record.chat([ChatMessage(role: .user, content: "hi <|im_end|>"), ChatMessage(role: .assistant, content: "hello"),
                                  ChatMessage(role: .user, content: "bye"), ChatMessage(role: .assistant, content: "ciao")])
        let (tokens, labels) = try b.encode(record)
        // The same text through HF-style parsing of the rendered template, except the user's
        // literal "<|im_end|>", which stays text.
        let rendered = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nhi <|im_end|><|im_end|>\n<|im_start|>assistant\nhello<|im_end|>\n<|im_start|>user\nbye<|im_end|>\n<|im_start|>assistant\nciao<|im_end|>"
        XCTAssertEqual(t.decode(tokens), rendered)
        XCTAssertEqual(tokens.filter { $0 == start }.count, 5)
        XCTAssertEqual(tokens.filter { $0 == end }.count, 5, "five turns; the user's literal <|im_end|> is text, not a control token")
        let trained = zip(tokens, labels).filter { $0.1 >= 0 }.map(\.0)
        XCTAssertEqual(t.decode(trained), "hello<|im_end|>ciao<|im_end|>")
        XCTAssertTrue(zip(tokens, labels).allSatisfy { $0.1 == ignoreIndex || $0.1 == $0.0 })
        let prompt = try PromptTemplate.chatml.prompt(instruction: "Q", tokenizer: t)
        XCTAssertEqual(t.decode(prompt), "<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\n")
    }

    func testTemplateErrorsNameTheRecord() throws {
        let url = write("chat.jsonl", "{\"messages\": [{\"role\": \"user\", \"content\": \"q\"}, {\"role\": \"assistant\", \"content\": \"a\"}, {\"role\": \"user\", \"content\": \"q2\"}, {\"role\": \"assistant\", \"content\": \"a2\"}]}\n")
        let records = try RecordReader.read(url).records
        XCTAssertThrowsError(try ExampleBuilder(tokenizer: ByteTokenizer(), template: .alpaca, maxLength: 99).build(records)) {
            XCTAssertTrue(String(describing: $0).hasPrefix(url.path + ":1: the alpaca template"))
        }
        XCTAssertThrowsError(try ExampleBuilder(tokenizer: ByteTokenizer(), template: .chatml, maxLength: 99).build(records)) {
            XCTAssertTrue(String(describing: $0).contains("<|im_start|>"))
        }
    }

    func testTruncationPolicyIsCounted() throws {
        let t = ByteTokenizer()
        let records = [
            SourcedRecord(record: .instruction(instruction: "ab", input: "", output: "cdef"), file: "f", line: 1),   // 1+3+4+1 = 9
            SourcedRecord(record: .instruction(instruction: "abcdefgh", input: "", output: "x"), file: "f", line: 2), // prompt 10 > 8
            SourcedRecord(record: .instruction(instruction: "a", input: "", output: "b"), file: "f", line: 3),        // 5
        ]
        let truncated = try ExampleBuilder(tokenizer: t, template: .none, maxLength: 8, truncation: .truncate).build(records)
        XCTAssertEqual(truncated.counts.truncated, 1)
        XCTAssertEqual(truncated.counts.dropped, 1)
        XCTAssertEqual(truncated.count, 2)
        XCTAssertEqual(truncated.offsets, [0, 8, 13])
        XCTAssertEqual(Array(truncated.labels[0..<8]), [ignoreIndex, ignoreIndex, ignoreIndex, ignoreIndex] + "cdef".utf8.map { Int32($0) })
        let dropped = try ExampleBuilder(tokenizer: t, template: .none, maxLength: 8, truncation: .drop).build(records)
        XCTAssertEqual(dropped.counts.truncated, 0)
        XCTAssertEqual(dropped.counts.dropped, 2)
        XCTAssertEqual(dropped.count, 1)
    }

    func testTextIsPackedIntoWindowsWithoutLoss() throws {
        let t = ByteTokenizer()
        let records = [SourcedRecord(record: .text("hello"), file: "f", line: 1), SourcedRecord(record: .text("world!"), file: "f", line: 1)]
        let e = try ExampleBuilder(tokenizer: t, template: .alpaca, maxLength: 4).build(records)
        // BOS hello EOS BOS world! EOS = 15 tokens in windows of 4.
        XCTAssertEqual(e.tokens.count, 15)
        XCTAssertEqual(e.offsets, [0, 4, 8, 12, 15])
        XCTAssertEqual(e.labels[0], ignoreIndex, "BOS is context")
        XCTAssertEqual(e.labels[7], ignoreIndex, "the second BOS too")
        XCTAssertEqual(e.tokens[6], ByteTokenizer.eos)
        XCTAssertEqual(e.labels.filter { $0 >= 0 }.count, 13)
    }

    // MARK: Prepared file

    func makePrepared() throws -> PreparedDataset {
        let url = write("train.jsonl", """
        {"instruction": "What is 2 + 2?", "output": "4"}
        {"instruction": "Reverse the letters of the word.", "input": "cat", "output": "tac"}
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello there"}]}
        """)
        let b = ExampleBuilder(tokenizer: ByteTokenizer(), template: .alpaca, maxLength: 512)
        return try DatasetLoader.load([url.path], builder: b)
    }

    func testPreparedFileRoundTrip() throws {
        let d = try makePrepared()
        XCTAssertEqual(d.count, 3)
        let out = dir.appendingPathComponent("train.safetensors")
        try d.write(to: out)
        XCTAssertTrue(DatasetLoader.isPrepared(out))
        let r = try PreparedDataset(contentsOf: out)
        XCTAssertEqual(r.tokens, d.tokens)
        XCTAssertEqual(r.labels, d.labels)
        XCTAssertEqual(r.offsets, d.offsets)
        XCTAssertEqual(r.metadata, d.metadata)
        XCTAssertEqual(r.counts, d.counts)
        XCTAssertEqual(r.counts.examples, 3)
        XCTAssertEqual(r.vocabularySize, 259)
        XCTAssertEqual(r.paddingID, ByteTokenizer.pad)
        // DatasetLoader reads a prepared file as is.
        let again = try DatasetLoader.load([out.path], builder: ExampleBuilder(tokenizer: ByteTokenizer(), template: .none, maxLength: 1))
        XCTAssertEqual(again.tokens, d.tokens)
    }

    func testBatchPadsWithPadAndIgnoreIndex() throws {
        let d = try makePrepared()
        let T = 200
        let (tokens, labels) = d.batch([2, 0], sequenceLength: T)
        XCTAssertEqual(tokens.count, 2 * T)
        let n2 = d.length(2), n0 = d.length(0)
        XCTAssertEqual(Array(tokens[0..<n2]), Array(d.example(2).tokens))
        XCTAssertEqual(Array(labels[0..<n2]), Array(d.example(2).labels))
        XCTAssertTrue(tokens[n2..<T].allSatisfy { $0 == ByteTokenizer.pad })
        XCTAssertTrue(labels[n2..<T].allSatisfy { $0 == ignoreIndex })
        XCTAssertEqual(Array(tokens[T..<(T + n0)]), Array(d.example(0).tokens))
        // Cut to T when longer.
        let (short, _) = d.batch([1], sequenceLength: 5)
        XCTAssertEqual(short, Array(d.example(1).tokens.prefix(5)))
    }

    func testCorruptPreparedFilesAreClearErrors() throws {
        let d = try makePrepared()
        let good = dir.appendingPathComponent("good.safetensors")
        try d.write(to: good)
        let bytes = try Data(contentsOf: good)
        let bad = dir.appendingPathComponent("bad.safetensors")
        func expectError(_ data: Data, _ needle: String, line: UInt = #line) {
            try! data.write(to: bad)
            XCTAssertThrowsError(try PreparedDataset(contentsOf: bad), line: line) { error in
                let m = String(describing: error)
                XCTAssertTrue(m.hasPrefix(bad.path), m, line: line)
                XCTAssertTrue(m.contains(needle), "\(m) should contain \(needle)", line: line)
                XCTAssertFalse(m.contains("\n"), line: line)
            }
        }
        expectError(bytes.prefix(bytes.count - 3), "truncated")
        expectError(bytes.prefix(4), "too short")
        for cut in stride(from: 0, to: bytes.count - 1, by: 7) {
            try bytes.prefix(cut).write(to: bad)
            XCTAssertThrowsError(try PreparedDataset(contentsOf: bad), "cut at \(cut)")
        }
        let headerLength = Int(bytes.prefix(8).withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) })
        let header = String(decoding: bytes[8..<(8 + headerLength)], as: UTF8.self)
        func replacingHeader(_ a: String, _ b: String) -> Data {
            let h = header.replacingOccurrences(of: a, with: b)
            precondition(h.utf8.count == header.utf8.count && h != header)
            return bytes.prefix(8) + Data(h.utf8) + bytes.suffix(from: 8 + headerLength)
        }
        expectError(replacingHeader("\"version\": \"1\"", "\"version\": \"9\""), "format version 9")
        expectError(replacingHeader("sortedtrain-prepared", "sortedtrain-somethin"), "not a sortedtrain prepared dataset")
        // A token outside the vocabulary.
        var corrupt = bytes
        let dataStart = 8 + headerLength
        corrupt.replaceSubrange(dataStart..<(dataStart + 4), with: withUnsafeBytes(of: Int32(5000).littleEndian) { Data($0) })
        expectError(corrupt, "outside the vocabulary")
        // A label that is neither -100 nor its token.
        corrupt = bytes
        let labelStart = dataStart + 4 * d.tokenCount + 4 * (d.tokenCount - 1)
        corrupt.replaceSubrange(labelStart..<(labelStart + 4), with: withUnsafeBytes(of: Int32(7).littleEndian) { Data($0) })
        expectError(corrupt, "neither -100 nor the token")
        expectError(Data("not a prepared file at all".utf8), "does not fit the file")
    }

    /// The file is safetensors: Python's safetensors library reads it (when installed).
    func testPythonSafetensorsReadsThePreparedFile() throws {
        let d = try makePrepared()
        let out = dir.appendingPathComponent("py.safetensors")
        try d.write(to: out)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", "-c", """
        import sys
        try:
            from safetensors.numpy import load_file
        except Exception:
            sys.exit(77)
        t = load_file(sys.argv[1])
        print(int(t["tokens"].sum()), int(t["labels"][t["labels"] >= 0].sum()), ",".join(str(int(x)) for x in t["offsets"]))
        """, out.path]
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = FileHandle.nullDevice
        do { try p.run() } catch { throw XCTSkip("python3 is not available") }
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        if p.terminationStatus == 77 { throw XCTSkip("Python safetensors is not installed") }
        let tokenSum = d.tokens.reduce(0) { $0 + Int($1) }
        let labelSum = d.labels.filter { $0 >= 0 }.reduce(0) { $0 + Int($1) }
        XCTAssertEqual(output.trimmingCharacters(in: .whitespacesAndNewlines),
                       "\(tokenSum) \(labelSum) \(d.offsets.map(String.init).joined(separator: ","))")
    }
}
