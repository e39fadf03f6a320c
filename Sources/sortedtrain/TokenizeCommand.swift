// `sortedtrain tokenize`: prints the token ids of each input line as a JSON array (one output
// line per input line), or with --decode turns such arrays back into text.
import ArgumentParser
import Foundation
import SortedFormats
import SortedData

struct TokenizeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tokenize",
        abstract: "Encode text to token ids (JSON arrays), or decode ids back to text.",
        discussion: """
        Each input line (without its newline) becomes one JSON array of ids, so the output can \
        be compared line by line with another tool, e.g. Python's \
        `json.dumps(Tokenizer.from_file(PATH).encode(line, add_special_tokens=False).ids)`. \
        Special tokens written in the text (such as <|im_start|>) are matched, as HF does, \
        unless --no-parse-special is given. With --decode each input line must be a JSON \
        array of ids and is printed as text.
        """)

    /// --tokenizer's help here names the built-in byte tokenizer.
    enum Help: TokenizerOptionHelp {
        static let text = "tokenizer.json, a model directory, a .gguf file, or \"byte\" for the built-in byte tokenizer."
    }

    @OptionGroup var tokenizer: TokenizerOptions<Help>

    @Argument(help: "Input file (default: standard input).")
    var file: String?

    @Flag(help: "Decode: read JSON arrays of ids, print text.")
    var decode = false

    @Flag(help: "Add what the tokenizer adds around a sequence (e.g. BOS for LLaMA).")
    var addSpecial = false

    @Flag(inversion: .prefixedNo, help: "Match special tokens written in the text.")
    var parseSpecial = true

    @Flag(help: "When decoding, leave out special tokens.")
    var skipSpecial = false

    func run() throws {
        let t = try tokenizer.load()
        let name = file ?? "<stdin>"
        let data: Data
        if let file {
            do { data = try Data(contentsOf: URL(fileURLWithPath: file)) } catch {
                throw DataError(file: file, .unreadable(error.localizedDescription))
            }
        } else {
            data = FileHandle.standardInput.readDataToEndOfFile()
        }
        var output = ""
        var lineNumber = 0
        var lines = data.split(separator: 0x0A, omittingEmptySubsequences: false)
        if lines.last?.isEmpty == true { lines.removeLast() }
        for raw in lines {
            lineNumber += 1
            guard let line = String(validating: raw, as: UTF8.self) else {
                throw DataError(file: name, line: lineNumber, .notUTF8)
            }
            if decode {
                let ids: [Int32]
                do {
                    guard let array = try JSONParser.parse(line).array else { throw DataError(file: name, line: lineNumber, "is not a JSON array of ids") }
                    ids = try array.map { v in
                        guard let i = v.int, i >= 0, i < t.vocabularySize else {
                            throw DataError(file: name, line: lineNumber, "\(v.serialized) is not an id in 0..<\(t.vocabularySize)")
                        }
                        return Int32(i)
                    }
                } catch let e as JSONSyntaxError {
                    throw DataError(file: name, line: lineNumber, "is not a JSON array of ids (\(e.message))")
                }
                output += t.decode(ids, skipSpecialTokens: skipSpecial)
            } else {
                let ids = t.encode(line, addSpecialTokens: addSpecial, parseSpecial: parseSpecial)
                output += "[" + ids.map(String.init).joined(separator: ", ") + "]"
            }
            output += "\n"
            if output.utf8.count > 1 << 20 {
                FileHandle.standardOutput.write(Data(output.utf8))
                output = ""
            }
        }
        FileHandle.standardOutput.write(Data(output.utf8))
    }
}
