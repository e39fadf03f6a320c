// ProcessMemory: the process's peak resident memory, resettable, from Linux /proc.
import Foundation

public enum ProcessMemory {
    /// Resets the peak-RSS high-water mark (Linux ≥ 4.0: "5" into /proc/self/clear_refs), after
    /// handing the allocator's free pages back to the system: glibc keeps freed blocks of up to
    /// 32 MB resident, which would count against whatever is measured next.
    /// Returns false where that is not possible; the peak then covers the whole process.
    @discardableResult
    public static func resetPeak() -> Bool {
        releaseFreeMemory()
        guard let handle = FileHandle(forWritingAtPath: "/proc/self/clear_refs") else { return false }
        defer { try? handle.close() }
        return (try? handle.write(contentsOf: Data("5".utf8))) != nil
    }

    /// Peak resident set size in MiB since start or the last `resetPeak` (VmHWM).
    public static func peakMiB() -> Double {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
              let kb = Double(line.split(separator: " ").dropFirst().first ?? "") else { return 0 }
        return kb / 1024
    }

    /// glibc's malloc_trim(0), looked up at run time (Swift's Glibc module leaves malloc.h out);
    /// nothing where the C library has none.
    private static func releaseFreeMemory() {
        typealias Trim = @convention(c) (Int) -> Int32
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "malloc_trim") else { return }
        _ = unsafeBitCast(symbol, to: Trim.self)(0)
    }
}
