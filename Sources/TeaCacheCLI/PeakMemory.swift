import Foundation

extension KernelBenchmarks {
    /// Resets the kernel's peak-RSS counter (VmHWM) to the current RSS by writing "5" to
    /// /proc/self/clear_refs (Linux ≥ 4.0). Returns false where that is not possible.
    static func resetPeakRSS() -> Bool {
        guard let handle = FileHandle(forWritingAtPath: "/proc/self/clear_refs") else { return false }
        defer { try? handle.close() }
        do { try handle.write(contentsOf: Data("5".utf8)) } catch { return false }
        return true
    }

    /// Current resident set size in bytes (VmRSS), or nil where /proc is unavailable.
    static func currentRSSBytes() -> Int? {
        guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
        for line in s.split(separator: "\n") where line.hasPrefix("VmRSS:") {
            return line.split(separator: " ").compactMap { Int($0) }.first.map { $0 * 1024 }
        }
        return nil
    }
}
