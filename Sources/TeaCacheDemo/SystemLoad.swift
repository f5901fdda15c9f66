import Foundation

/// The machine's load, read from `/proc/loadavg` (Linux).
enum SystemLoad {
    /// The 1-minute load average, or nil where it cannot be read.
    static func current() -> Double? {
        guard let text = try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8),
              let first = text.split(separator: " ").first else { return nil }
        return Double(first)
    }
}
