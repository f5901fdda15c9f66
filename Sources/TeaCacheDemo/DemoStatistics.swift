/// Small statistics helpers.
enum DemoStatistics {
    /// The median (mean of the two middle values for an even count; 0 for an empty array).
    static func median(_ values: [Double]) -> Double {
        guard !values.isEmpty else { return 0 }
        let s = values.sorted()
        let n = s.count
        return n % 2 == 1 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2
    }

    /// The spread of repeated wall times relative to the fastest: `(max − min) / min`; nil for fewer
    /// than two values or a non-positive fastest time.
    static func relativeSpread(_ values: [Double]) -> Double? {
        guard values.count >= 2, let lo = values.min(), let hi = values.max(), lo > 0 else { return nil }
        return (hi - lo) / lo
    }

    /// The speedups of runs measured next to each other: `uncached[k] / cached[k]` for every round `k`
    /// (rounds with a non-positive cached time are left out; extra values of the longer array too).
    static func pairedSpeedups(uncached: [Double], cached: [Double]) -> [Double] {
        zip(uncached, cached).compactMap { u, c in c > 0 ? u / c : nil }
    }
}
