// LlamaCppReference: `bench generate --llama-bench PATH` runs llama.cpp's llama-bench on the
// same GGUF file with the same threads, prompt and decode lengths and repeats, and sets its
// rates beside sortedtrain's full-depth ones: a reference measured in the same run.
import Foundation
import SortedInference

enum LlamaCppReference {
    /// One llama-bench test of its `-o json` output: a prefill (n_gen 0) or a decode (n_prompt 0).
    private struct Test: Decodable {
        var buildCommit: String?
        var nPrompt: Int
        var nGen: Int
        var averageTokensPerSecond: Double
        enum CodingKeys: String, CodingKey {
            case buildCommit = "build_commit", nPrompt = "n_prompt", nGen = "n_gen", averageTokensPerSecond = "avg_ts"
        }
    }

    /// llama.cpp's rates and the ratios, or why there are none (the tool missing or failing).
    static func measure(tool: String, model: String, result: GenerationBenchmarkResult, repeats: Int,
                        progress: (String) -> Void) -> Result<LlamaCppRates, CommandLineError> {
        guard let full = result.depths.last else { return .failure(CommandLineError("no depth was measured")) }
        guard FileManager.default.isExecutableFile(atPath: tool) else {
            return .failure(CommandLineError("--llama-bench \(tool) is not an executable file"))
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = ["-m", model, "-t", "\(result.threads)", "-p", "\(result.promptTokens)", "-n", "\(result.newTokens)",
                             "-r", "\(repeats)", "-o", "json"]
        let stdout = Pipe()
        process.standardOutput = stdout
        progress("llama.cpp: \(tool) \(process.arguments!.joined(separator: " "))")
        do { try process.run() } catch {
            return .failure(CommandLineError("\(tool) cannot be started: \(error.localizedDescription)"))
        }
        let data = stdout.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard let tests = try? JSONDecoder().decode([Test].self, from: data),
              let prefill = tests.first(where: { $0.nGen == 0 && $0.nPrompt > 0 }),
              let decode = tests.first(where: { $0.nPrompt == 0 && $0.nGen > 0 }) else {
            return .failure(CommandLineError("\(tool) exited \(process.terminationStatus) without a prefill and a decode result (its message is above)"))
        }
        return .success(LlamaCppRates(build: prefill.buildCommit ?? "unknown",
                                      prefillTokensPerSecond: prefill.averageTokensPerSecond,
                                      decodeTokensPerSecond: decode.averageTokensPerSecond,
                                      prefillRatio: full.prefillTokensPerSecond / prefill.averageTokensPerSecond,
                                      decodeRatio: full.decodeTokensPerSecondBatch1 / decode.averageTokensPerSecond))
    }
}
