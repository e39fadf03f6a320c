// FormatError: a file that is not what its format says, printed as one line `file: message`.

public struct FormatError: Error, CustomStringConvertible {
    public let file: String
    public let message: String
    public init(file: String, _ message: String) {
        self.file = file
        self.message = message
    }
    public var description: String { "\(file): \(message)" }
}
