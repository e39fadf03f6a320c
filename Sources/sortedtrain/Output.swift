// Output: how commands print machine-readable results and progress.
import Foundation
import SortedFormats

/// One JSON object on one line, keys sorted (for --json).
func printJSON<T: Encodable>(_ value: T) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

/// A progress line on stderr, so stdout keeps only the result.
func printProgress(_ line: String) {
    FileHandle.standardError.write(Data((line + "\n").utf8))
}

/// A bad argument or input found by a command: ArgumentParser prints "Error: <message>"
/// as one line and exits 1 (a ValidationError would add the usage text and exit 64).
struct CommandLineError: Error, CustomStringConvertible {
    let description: String
    init(_ message: String) { description = message }
}

/// "2,4,8" as depths (whole numbers ≥ 1), for `flag`'s error message.
func parseDepths(_ text: String, flag: String) throws -> [Int] {
    let depths = try text.split(separator: ",", omittingEmptySubsequences: false).map {
        guard let d = Int($0.trimmingCharacters(in: .whitespaces)), d >= 1 else {
            throw CommandLineError("\(flag): '\($0)' is not a depth (a whole number ≥ 1)")
        }
        return d
    }
    // Exits are ordered shallow to deep everywhere; a list in another order is a typo.
    if let i = depths.indices.dropFirst().first(where: { depths[$0] <= depths[$0 - 1] }) {
        throw CommandLineError("\(flag): \(depths[i]) after \(depths[i - 1]); list the depths in increasing order, each once")
    }
    return depths
}

/// "0.9,0.8" as finite numbers, for `flag`'s error message.
func parseNumbers(_ text: String, flag: String) throws -> [Double] {
    try text.split(separator: ",", omittingEmptySubsequences: false).map {
        guard let v = Double($0.trimmingCharacters(in: .whitespaces)), v.isFinite else {
            throw CommandLineError("\(flag): '\($0)' is not a number")
        }
        return v
    }
}

/// The prompts of a JSONL file ({"instruction": …, "input": …} or {"prompt": …} per line; a
/// pipe works too), for --prompts-file.
func readPromptsFile(_ file: String, flag: String = "--prompts-file") throws -> [(instruction: String, input: String)] {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: file, isDirectory: &isDirectory), !isDirectory.boolValue,
          let handle = FileHandle(forReadingAtPath: file), let data = try? handle.readToEnd() ?? Data() else {
        throw CommandLineError("\(flag) \(file): cannot be read")
    }
    var prompts: [(String, String)] = []
    for (n, line) in String(decoding: data, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
        guard !line.trimmingCharacters(in: .whitespaces).isEmpty else { continue }
        guard let object = (try? JSONParser.parse(String(line)))?.object,
              let text = (object["instruction"] ?? object["prompt"])?.string else {
            throw CommandLineError("\(file):\(n + 1): not a JSON object with a string \"instruction\" or \"prompt\"")
        }
        prompts.append((text, object["input"]?.string ?? ""))
    }
    guard !prompts.isEmpty else { throw CommandLineError("\(flag) \(file): holds no prompts") }
    return prompts
}
