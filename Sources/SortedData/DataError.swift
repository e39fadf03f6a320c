// DataError: what went wrong with a tokenizer or data file, printed as one line
// `file:line: message` (line omitted when it does not apply).

import SortedFormats

public struct DataError: Error, CustomStringConvertible, Equatable {
    public enum Problem: Equatable, Sendable {
        /// The file system refused (the system's reason).
        case unreadable(String)
        case isFolder
        case notUTF8
        case malformedJSON(column: Int, message: String)
        case empty
        case noRecords
        /// A record field the format requires is absent.
        case missingField(String)
        case template(TemplateError)
        /// Any other wrong content, said in words.
        case invalid(String)

        public var text: String {
            switch self {
            case .unreadable(let reason): return "cannot be read: \(reason)"
            case .isFolder: return "is a folder; name the data files (.json, .jsonl, .txt) inside it"
            case .notUTF8: return "is not valid UTF-8"
            case .malformedJSON(let column, let message): return "malformed JSON at column \(column): \(message)"
            case .empty: return "is empty"
            case .noRecords: return "holds no records"
            case .missingField(let name): return "missing field \"\(name)\""
            case .template(let error): return error.description
            case .invalid(let text): return text
            }
        }
    }

    public let file: String
    public let line: Int?
    public let problem: Problem

    public init(file: String, line: Int? = nil, _ problem: Problem) {
        self.file = file
        self.line = line
        self.problem = problem
    }

    /// Wrong content of `file` said in words.
    public init(file: String, line: Int? = nil, _ message: String) {
        self.init(file: file, line: line, .invalid(message))
    }

    public var message: String { problem.text }

    public var description: String {
        if let line { return "\(file):\(line): \(message)" }
        return "\(file): \(message)"
    }
}

extension JSONSyntaxError {
    /// This syntax error located in `file`.
    func inFile(_ file: String) -> DataError {
        DataError(file: file, line: line, .malformedJSON(column: column, message: message))
    }
}
