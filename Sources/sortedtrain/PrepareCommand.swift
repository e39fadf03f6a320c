// `sortedtrain prepare`: tokenizes a dataset once into the file the trainer reads directly.
import ArgumentParser
import SortedIO
import Foundation
import SortedData

struct PrepareCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prepare",
        abstract: "Tokenize a dataset into a prepared file (tokens, labels, offsets) for training.",
        discussion: """
        Inputs: Alpaca JSON arrays or JSONL (instruction, input, output), chat JSONL \
        (messages with role and content), JSONL with a "text" field, or plain text files. \
        Labels are -100 on prompt tokens, so the loss is on responses only; each response ends \
        with EOS (with chatml: <|im_end|>). Text documents are packed end to end and cut into \
        --max-length windows. An instruction example longer than --max-length is cut to it \
        (--truncation truncate: the prompt is kept and the response shortened; an example \
        whose response would not start is dropped) or dropped (--truncation drop). \
        The output is a safetensors file (tensors tokens, labels, offsets; metadata with the \
        tokenizer, template and counts) that `safetensors.safe_open` can also read.
        """)

    @OptionGroup var tokenizer: TokenizerOptions<TokenizerSpecHelp>

    @OptionGroup var template: TemplateOptions

    @Option(parsing: .unconditional, help: "Maximum tokens per example.")
    var maxLength: Int = 1024

    @Option(help: "Over-long examples: truncate or drop.")
    var truncation: String = "truncate"

    @Option(help: "Record format: auto (from each record's keys), alpaca, chat or text.")
    var format: String = "auto"

    @Option(name: .customLong("on-bad-record"), help: "fail (stop at the first bad record, naming file and line) or skip (warn and count).")
    var onBadRecord: String = "fail"

    @Option(help: "chatml only: a system message for conversations that have none.")
    var systemPrompt: String?

    @Option(name: [.short, .long], help: "The prepared file to write (e.g. data/train.safetensors).")
    var output: String

    @Argument(help: "Dataset files (.json, .jsonl, .txt).")
    var inputs: [String]

    @Flag(help: "Replace an existing --output file (never a folder or a checkpoint).")
    var overwrite = false

    func validate() throws {
        try template.check()
        guard TruncationPolicy(rawValue: truncation) != nil else { throw ValidationError("--truncation must be truncate or drop") }
        guard RecordFormat(rawValue: format) != nil else { throw ValidationError("--format must be one of: \(RecordFormat.allCases.map(\.rawValue).joined(separator: ", "))") }
        guard BadRecordPolicy(rawValue: onBadRecord) != nil else { throw ValidationError("--on-bad-record must be fail or skip") }
        guard maxLength >= 2 else { throw ValidationError("--max-length must be at least 2") }
        guard !inputs.isEmpty else { throw ValidationError("give at least one dataset file") }
    }

    func run() throws {
        try OutputTarget.check(URL(fileURLWithPath: output), directory: false, overwrite: overwrite, flag: "--output")
        let t = try tokenizer.load()
        let builder = ExampleBuilder(tokenizer: t, template: template.promptTemplate, maxLength: maxLength,
                                     truncation: TruncationPolicy(rawValue: truncation)!, systemPrompt: systemPrompt,
                                     chatTemplate: try template.chatTemplate(tokenizer: tokenizer.tokenizer))
        var warnings = 0
        let dataset = try DatasetLoader.load(inputs, builder: builder, format: RecordFormat(rawValue: format)!,
                                             policy: BadRecordPolicy(rawValue: onBadRecord)!) { line in
            warnings += 1
            if warnings <= 20 { printProgress(line) }
        }
        if warnings > 20 { FileHandle.standardError.write(Data("warning: \(warnings - 20) more records skipped\n".utf8)) }
        guard dataset.count > 0 else {
            throw DataError(file: inputs[0], "no example is left (\(dataset.counts)); raise --max-length or fix the data")
        }
        try dataset.write(to: URL(fileURLWithPath: output))
        print("tokenizer: \(t.summary)")
        print("prepared \(dataset.counts) → \(output)")
    }
}
