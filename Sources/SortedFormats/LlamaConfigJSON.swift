// LlamaConfigJSON: an HF `config.json` (or the copy a checkpoint keeps) read by the one
// strict JSON parser and validated; errors name the file, and the line and column of a
// syntax error.
import Foundation
import SortedKit

extension LlamaConfig {
    /// Decodes and validates HF `config.json` bytes; errors name `source`.
    public static func decode(json data: Data, source: String = "config") throws -> LlamaConfig {
        let config: LlamaConfig
        do {
            config = try JSONValueDecoder.decode(LlamaConfig.self, from: data)
            try config.validate()
        } catch var error as ConfigError {
            error.file = source
            throw error
        } catch let error as JSONSyntaxError {
            throw ConfigError(file: source, line: error.line, column: error.column, key: nil, .invalid("is not valid JSON: \(error.message)"))
        } catch {
            throw ConfigError(file: source, key: nil, .invalid("is not a LLaMA config: \(error)"))
        }
        return config
    }
}
