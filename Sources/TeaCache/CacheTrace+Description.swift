import Foundation

extension CacheTrace.Summary: CustomStringConvertible {
    /// The totals as a sentence: "12 of 28 calls computed (2.33× fewer), 16 skipped, longest skip streak 3".
    public var description: String {
        let fewer = computed > 0 ? String(format: " (%.2f× fewer)", predictedSpeedup) : ""
        return "\(computed) of \(calls) calls computed\(fewer), \(skipped) skipped, longest skip streak \(longestSkipStreak)"
    }
}
