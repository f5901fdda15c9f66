/// Small statistics helpers.
enum DemoStatistics {
    /// The median (mean of the two middle values for an even count; 0 for an empty array).
    static func median(_ values: [Double]) -> Double {
        guard !values.isEmpty else { return 0 }
        let s = values.sorted()
        let n = s.count
        return n % 2 == 1 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2
    }
}
