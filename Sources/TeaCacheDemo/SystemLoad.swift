import Foundation

/// CPU time spent by other processes while the demo ran, from `/proc/stat` and `/proc/self/stat`
/// (Linux). The 1-minute load average is no use here: the demo's own threads count in it.
public struct SystemLoad: Sendable {
    /// Busy and total jiffies of the whole machine, and this process's user + system jiffies.
    struct Snapshot: Sendable {
        var busy: Double
        var total: Double
        var own: Double
    }

    let start: Snapshot?

    /// Starts measuring.
    public init() { start = Self.snapshot() }

    /// The share of the machine's CPU time (0…1) used by other processes since ``init()``, or nil
    /// where /proc is unavailable.
    public func othersShare() -> Double? {
        guard let start, let end = Self.snapshot(), end.total > start.total else { return nil }
        let others = (end.busy - start.busy) - (end.own - start.own)
        return max(0, others / (end.total - start.total))
    }

    static func snapshot() -> Snapshot? {
        // Without /proc the load is unknown (nil), which the report says; nothing is measured wrongly.
        guard let stat = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
              let cpu = stat.split(separator: "\n").first, cpu.hasPrefix("cpu "),
              let own = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
              let close = own.lastIndex(of: ")") else { return nil }
        let f = cpu.split(separator: " ").dropFirst().compactMap { Double($0) }
        guard f.count >= 4 else { return nil }
        // user nice system idle iowait irq softirq steal …; idle and iowait are not busy.
        let total = f.prefix(8).reduce(0, +)
        let idle = f[3] + (f.count > 4 ? f[4] : 0)
        // After the command name: state is field 3, utime and stime are fields 14 and 15.
        let rest = own[own.index(after: close)...].split(separator: " ")
        guard rest.count > 13, let ut = Double(rest[11]), let st = Double(rest[12]) else { return nil }
        return Snapshot(busy: total - idle, total: total, own: ut + st)
    }
}
