// Python: runs python3 for the checks that compare with Python libraries (transformers,
// gguf-py), and tells whether python3 has them, so such checks can be skipped cleanly.
import Foundation

/// Whether `python3 -c "import <modules>"` succeeds.
public func python3Imports(_ modules: String) throws -> Bool {
    try runPython3(["-c", "import \(modules)"]).status == 0
}

/// Runs python3 with `arguments`; its exit status and stdout + stderr.
public func runPython3(_ arguments: [String]) throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = ["python3"] + arguments
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    return (process.terminationStatus, output)
}
