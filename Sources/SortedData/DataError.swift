// DataError: what went wrong with a tokenizer or data file, printed as one line
// `file:line: message` (line omitted when it does not apply).

public struct DataError: Error, CustomStringConvertible, Equatable {
    public let file: String
    public let line: Int?
    public let message: String

    public init(file: String, line: Int? = nil, _ message: String) {
        self.file = file
        self.line = line
        self.message = message
    }

    public var description: String {
        if let line { return "\(file):\(line): \(message)" }
        return "\(file): \(message)"
    }
}

extension JSONSyntaxError {
    /// This syntax error located in `file`.
    func inFile(_ file: String) -> DataError {
        DataError(file: file, line: line, "invalid JSON at column \(column): \(message)")
    }
}
