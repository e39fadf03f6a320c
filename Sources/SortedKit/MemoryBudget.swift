// MemoryBudget: the memory this process can get, checked before a large allocation whose
// size came from a file or a config, so that an absurd size is one clear error naming the
// key and the figures instead of a failed allocation deep inside the run.
import Foundation

public enum MemoryBudget {
    /// Physical memory, or the cgroup limit when the process runs under a smaller one.
    public static let availableBytes: Int = {
        let physical = Int(clamping: ProcessInfo.processInfo.physicalMemory)
        guard let text = try? String(contentsOfFile: "/sys/fs/cgroup/memory.max", encoding: .utf8),
              let limit = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)), limit > 0 else { return physical }
        return min(physical, limit)
    }()

    /// The product of sizes read from a file, nil when it overflows Int or a factor is negative.
    public static func product(_ factors: [Int]) -> Int? {
        var result = 1
        for f in factors {
            let (p, overflow) = result.multipliedReportingOverflow(by: f)
            if overflow || f < 0 { return nil }
            result = p
        }
        return result
    }

    /// "48.0 GB" (1e9 bytes, as the messages compare figures).
    public static func describe(_ bytes: Int) -> String {
        String(format: "%.1f GB", Double(bytes) / 1e9)
    }

    /// Throws a ConfigError on `key` when `bytes` (nil: not representable) exceed what the
    /// machine has. `what` names the allocation, e.g. "parameters, gradients and AdamW moments".
    public static func check(bytes: Int?, for what: String, key: String?) throws {
        guard let bytes else {
            throw ConfigError(key: key, .invalid("\(what) need more bytes than can be addressed; the sizes are wrong"))
        }
        guard bytes <= availableBytes else {
            throw ConfigError(key: key, .invalid("\(what) need \(describe(bytes)); this machine has \(describe(availableBytes)): lower the sizes"))
        }
    }
}
