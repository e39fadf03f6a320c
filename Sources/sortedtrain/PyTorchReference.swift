// PyTorchReference: `bench step --pytorch` runs scripts/bench_pytorch.py on the same config,
// lengths, batch, steps and threads, and sets its timings beside sortedtrain's.
import Foundation
import SortedTraining

/// sortedtrain in one precision against PyTorch in one precision at one length: time against
/// the better of eager and sdpa attention, peak RSS against sdpa's (nil where PyTorch's
/// measurement failed).
struct PyTorchComparison: Codable {
    var sequenceLength: Int
    /// sortedtrain's train.precision on this row.
    var precision: String
    /// PyTorch's: fp32, or bf16 (autocast).
    var pytorchPrecision: String
    var pytorchSFTStepSeconds: Double?
    var pytorchSFTAttention: String?
    var pytorchSoFTStepSeconds: Double?
    var pytorchSoFTAttention: String?
    var sdpaSFTPeakRSSMiB: Double?
    var sdpaSoFTPeakRSSMiB: Double?
    var sftTimeRatio: Double?
    var softTimeRatio: Double?
    var sftMemoryRatio: Double?
    var softMemoryRatio: Double?

    enum CodingKeys: String, CodingKey {
        case precision, pytorchPrecision = "pytorch_precision", sequenceLength = "sequence_length", pytorchSFTStepSeconds = "pytorch_sft_step_s",
             pytorchSFTAttention = "pytorch_sft_attention", pytorchSoFTStepSeconds = "pytorch_soft_step_s",
             pytorchSoFTAttention = "pytorch_soft_attention", sdpaSFTPeakRSSMiB = "sdpa_sft_peak_rss_mb",
             sdpaSoFTPeakRSSMiB = "sdpa_soft_peak_rss_mb", sftTimeRatio = "sft_time_ratio",
             softTimeRatio = "soft_time_ratio", sftMemoryRatio = "sft_memory_ratio", softMemoryRatio = "soft_memory_ratio"
    }
}

enum PyTorchReference {
    static let script = "scripts/bench_pytorch.py"

    /// One measurement of the script's JSON ("error" instead of the numbers when it failed).
    private struct Measurement: Decodable {
        var precision: String
        var attention: String
        var sequenceLength: Int
        var mode: String
        var stepSeconds: Double?
        var peakRSSMiB: Double?
        enum CodingKeys: String, CodingKey {
            case precision, attention, sequenceLength = "sequence_length", mode, stepSeconds = "step_s", peakRSSMiB = "peak_rss_mb"
        }
    }
    private struct Output: Decodable { var results: [Measurement] }

    /// The comparison per length, sortedtrain precision and PyTorch precision (float32, and bf16
    /// autocast when sortedtrain measured bf16), or why there is none (torch missing, the script
    /// absent or failing).
    static func compare(config: String, results: [StepBenchmarkResult], steps: Int, warmup: Int,
                        progress: (String) -> Void) -> Result<[PyTorchComparison], CommandLineError> {
        guard let first = results.first else { return .success([]) }
        guard FileManager.default.fileExists(atPath: script) else {
            return .failure(CommandLineError("\(script) not found; run from the repository's root"))
        }
        let precisions = results.contains { $0.precision == "bf16" } ? ["fp32", "bf16"] : ["fp32"]
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", script, config, "--attention", "both",
                             "--sequence-lengths", results.map(\.sequenceLength).uniqued().map(String.init).joined(separator: ","),
                             "--batch", "\(first.batch)", "--modes", "sft,soft", "--precisions", precisions.joined(separator: ","),
                             "--steps", "\(steps)",
                             "--warmup", "\(warmup)", "--threads", "\(first.threads)"]
        // The script's progress and errors go to stderr as they come; its JSON is read at the end.
        let stdout = Pipe()
        process.standardOutput = stdout
        progress("PyTorch: \(process.arguments!.joined(separator: " "))")
        do { try process.run() } catch {
            return .failure(CommandLineError("python3 cannot be started: \(error.localizedDescription)"))
        }
        let data = stdout.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard let output = try? JSONDecoder().decode(Output.self, from: data) else {
            return .failure(CommandLineError("\(script) exited \(process.terminationStatus) with no results (its message is above)"))
        }
        return .success(results.flatMap { r in precisions.map { p in
            let here = output.results.filter { $0.precision == p && $0.sequenceLength == r.sequenceLength && $0.stepSeconds != nil }
            let best = { (mode: String) in here.filter { $0.mode == mode }.min { $0.stepSeconds! < $1.stepSeconds! } }
            let sdpa = { (mode: String) in here.first { $0.mode == mode && $0.attention == "sdpa" }?.peakRSSMiB }
            let sft = best("sft"), soft = best("soft")
            return PyTorchComparison(
                sequenceLength: r.sequenceLength, precision: r.precision, pytorchPrecision: p,
                pytorchSFTStepSeconds: sft?.stepSeconds, pytorchSFTAttention: sft?.attention,
                pytorchSoFTStepSeconds: soft?.stepSeconds, pytorchSoFTAttention: soft?.attention,
                sdpaSFTPeakRSSMiB: sdpa("sft"), sdpaSoFTPeakRSSMiB: sdpa("soft"),
                sftTimeRatio: sft?.stepSeconds.map { r.sftStepSeconds / $0 },
                softTimeRatio: soft?.stepSeconds.map { r.softStepSeconds / $0 },
                sftMemoryRatio: sdpa("sft").map { r.sftPeakRSSMiB / $0 },
                softMemoryRatio: sdpa("soft").map { r.softPeakRSSMiB / $0 })
        } })
    }
}

extension Array where Element: Hashable {
    /// The elements in order, each kept at its first occurrence.
    func uniqued() -> [Element] {
        var seen = Set<Element>()
        return filter { seen.insert($0).inserted }
    }
}
