import Foundation

extension KernelBenchmarks {
    /// Resets the kernel's peak-RSS counter (VmHWM) to the current RSS by writing "5" to
    /// /proc/self/clear_refs (Linux ≥ 4.0). Returns false where that is not possible.
    static func resetPeakRSS() -> Bool {
        guard let handle = FileHandle(forWritingAtPath: "/proc/self/clear_refs") else { return false }
        defer { try? handle.close() }  // closing a /proc file cannot lose data
        do { try handle.write(contentsOf: Data("5".utf8)) } catch { return false }
        return true
    }

    /// Current resident set size in bytes (VmRSS), or nil where /proc is unavailable.
    static func currentRSSBytes() -> Int? { statusBytes("VmRSS") }

    /// A size field of /proc/self/status (`VmHWM`, `VmRSS`, in kB there) in bytes, or nil.
    static func statusBytes(_ field: String) -> Int? {
        // Without /proc the size is unknown (nil) and not printed.
        guard let s = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8) else { return nil }
        for line in s.split(separator: "\n") where line.hasPrefix(field + ":") {
            return line.split(separator: " ").compactMap { Int($0) }.first.map { $0 * 1024 }
        }
        return nil
    }
}
