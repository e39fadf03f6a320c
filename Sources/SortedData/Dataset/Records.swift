// Records: reads the dataset formats people have — Alpaca JSON arrays and JSONL
// (instruction/input/output), chat JSONL (messages with role/content), JSONL with a "text"
// field, plain text files — with errors that name the file and line.
import Foundation
import SortedFormats

public struct ChatMessage: Equatable {
    public enum Role: String { case system, user, assistant }
    public var role: Role
    public var content: String
    public init(role: Role, content: String) {
        self.role = role
        self.content = content
    }
}

/// One training example before tokenization.
public enum Record: Equatable {
    /// Stanford Alpaca's fields; `input` may be empty.
    case instruction(instruction: String, input: String, output: String)
    /// A conversation; loss on assistant turns.
    case chat([ChatMessage])
    /// A document for language modelling; loss on every token.
    case text(String)
}

/// A record and where it came from.
public struct SourcedRecord: Equatable {
    public var record: Record
    public var file: String
    public var line: Int
}

/// Which record type a file holds; `auto` decides per record from its keys.
public enum RecordFormat: String, CaseIterable, Sendable {
    case auto, alpaca, chat, text
}

/// What to do with a bad record: stop with its error, or skip it and count a warning.
public enum BadRecordPolicy: String, CaseIterable, Sendable {
    case fail, skip
}

public struct RecordReadResult {
    public var records: [SourcedRecord] = []
    /// The errors of skipped records (policy `skip`), in file order.
    public var skipped: [DataError] = []
}

public enum RecordReader {
    /// Reads one file. `.json` is a JSON array of records; `.jsonl` one JSON object per line;
    /// anything else is a plain-text document (format `text`).
    public static func read(_ url: URL, format: RecordFormat = .auto, policy: BadRecordPolicy = .fail) throws -> RecordReadResult {
        let path = url.path
        var isFolder: ObjCBool = false
        if FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), isFolder.boolValue {
            throw DataError(file: path, .isFolder)
        }
        let data: Data
        do { data = try Data(contentsOf: url, options: .mappedIfSafe) } catch {
            throw DataError(file: path, .unreadable(error.localizedDescription))
        }
        let ext = url.pathExtension.lowercased()
        if ext == "jsonl" || ext == "ndjson" { return try readJSONL(data, path: path, format: format, policy: policy) }
        if ext == "json" { return try readJSONArray(data, path: path, format: format, policy: policy) }
        // A plain text document.
        if let line = data.withUnsafeBytes({ firstInvalidUTF8Line($0) }) {
            if data.prefix(4096).range(of: Data(PreparedDataset.format.utf8)) != nil {
                throw DataError(file: path, "was made by `sortedtrain prepare` but its header is damaged; prepare the data again")
            }
            throw DataError(file: path, line: line, .notUTF8)
        }
        guard format == .auto || format == .text else {
            throw DataError(file: path, "is a plain text file, but format \(format.rawValue) was asked for; use a .json or .jsonl file")
        }
        let text = String(decoding: data, as: UTF8.self)
        guard !text.allSatisfy(\.isWhitespace) else { throw DataError(file: path, .empty) }
        return RecordReadResult(records: [SourcedRecord(record: .text(text), file: path, line: 1)])
    }

    static func readJSONL(_ data: Data, path: String, format: RecordFormat, policy: BadRecordPolicy) throws -> RecordReadResult {
        var result = RecordReadResult()
        try data.withUnsafeBytes { (raw: UnsafeRawBufferPointer) in
            var start = 0
            var line = 1
            while start < raw.count {
                var end = start
                while end < raw.count && raw[end] != 0x0A { end += 1 }
                let slice = UnsafeRawBufferPointer(rebasing: raw[start..<end])
                let blank = slice.allSatisfy { $0 == 0x20 || $0 == 0x09 || $0 == 0x0D }
                if !blank {
                    do {
                        guard String(validatingUTF8Bytes: slice) != nil else { throw DataError(file: path, line: line, .notUTF8) }
                        let value: JSONValue
                        do {
                            var parser = JSONParser(bytes: slice, firstLine: line)
                            value = try parser.parseDocument()
                        } catch let e as JSONSyntaxError {
                            throw DataError(file: path, line: line, .malformedJSON(column: e.column, message: e.message))
                        }
                        result.records.append(SourcedRecord(record: try record(from: value, format: format, path: path, line: line),
                                                            file: path, line: line))
                    } catch let e as DataError {
                        guard policy == .skip else { throw e }
                        result.skipped.append(e)
                    }
                }
                start = end + 1
                line += 1
            }
        }
        if result.records.isEmpty && result.skipped.isEmpty { throw DataError(file: path, .noRecords) }
        return result
    }

    static func readJSONArray(_ data: Data, path: String, format: RecordFormat, policy: BadRecordPolicy) throws -> RecordReadResult {
        var result = RecordReadResult()
        let elements: [(value: JSONValue, line: Int)] = try data.withUnsafeBytes { raw in
            if let line = firstInvalidUTF8Line(raw) { throw DataError(file: path, line: line, .notUTF8) }
            var parser = JSONParser(bytes: raw)
            do { return try parser.parseArrayElements() } catch let e as JSONSyntaxError { throw e.inFile(path) }
        }
        for (value, line) in elements {
            do {
                result.records.append(SourcedRecord(record: try record(from: value, format: format, path: path, line: line), file: path, line: line))
            } catch let e as DataError {
                guard policy == .skip else { throw e }
                result.skipped.append(e)
            }
        }
        if result.records.isEmpty && result.skipped.isEmpty { throw DataError(file: path, .noRecords) }
        return result
    }

    /// One record from a JSON object, checked for the fields its format needs.
    static func record(from value: JSONValue, format: RecordFormat, path: String, line: Int) throws -> Record {
        func fail(_ message: String) -> DataError { DataError(file: path, line: line, message) }
        guard let object = value.object else { throw fail("a record must be a JSON object") }
        let kind: RecordFormat
        switch format {
        case .auto:
            if object["messages"] != nil { kind = .chat }
            else if object["instruction"] != nil || object["output"] != nil { kind = .alpaca }
            else if object["text"] != nil { kind = .text }
            else { throw fail("record has none of the fields \"instruction\" (Alpaca), \"messages\" (chat) or \"text\"") }
        default:
            kind = format
        }
        func string(_ key: String, required: Bool) throws -> String {
            guard let v = object[key], !v.isNull else {
                if required { throw DataError(file: path, line: line, .missingField(key)) }
                return ""
            }
            guard let s = v.string else { throw fail("field \"\(key)\" must be a string") }
            return s
        }
        switch kind {
        case .alpaca, .auto:
            let instruction = try string("instruction", required: true)
            let input = try string("input", required: false)
            let output = try string("output", required: true)
            if instruction.allSatisfy(\.isWhitespace) { throw fail("field \"instruction\" is empty") }
            if output.allSatisfy(\.isWhitespace) { throw fail("field \"output\" is empty: an example needs a response to learn from") }
            return .instruction(instruction: instruction, input: input, output: output)
        case .chat:
            guard let list = object["messages"]?.array else { throw fail(object["messages"] == nil ? "missing field \"messages\"" : "field \"messages\" must be an array") }
            var messages: [ChatMessage] = []
            for (i, m) in list.enumerated() {
                guard let roleName = m["role"]?.string else { throw fail("messages[\(i)] needs a string \"role\"") }
                guard let role = ChatMessage.Role(rawValue: roleName) else {
                    throw fail("messages[\(i)] has role \"\(roleName)\"; roles are system, user, assistant")
                }
                guard let content = m["content"]?.string else { throw fail("messages[\(i)] needs a string \"content\"") }
                if role == .assistant && content.allSatisfy(\.isWhitespace) {
                    throw fail("messages[\(i)] is an empty assistant response")
                }
                messages.append(ChatMessage(role: role, content: content))
            }
            guard messages.contains(where: { $0.role == .assistant }) else { throw fail("the conversation has no assistant message to learn from") }
            return .chat(messages)
        case .text:
            let text = try string("text", required: true)
            if text.allSatisfy(\.isWhitespace) { throw fail("field \"text\" is empty") }
            return .text(text)
        }
    }
}
