import DiTModels

/// A latency table of the TeaCache4Wan2.1 README (spec §3), verbatim: the uncached time and the time at
/// each threshold, in seconds.
struct WanPublishedLatency: Sendable, Equatable {
    /// Which README table.
    var table: String
    /// The checkpoint.
    var variant: WanVariant
    /// The modulated-input mode.
    var mode: WanTeaCacheMode
    /// Seconds without TeaCache.
    var baselineSeconds: Double
    /// (threshold, seconds) pairs.
    var runs: [(threshold: Double, seconds: Double)]

    /// `baseline / seconds` per threshold.
    var speedups: [(threshold: Double, speedup: Double)] {
        runs.map { ($0.threshold, baselineSeconds / $0.seconds) }
    }

    static func == (a: Self, b: Self) -> Bool {
        a.table == b.table && a.variant == b.variant && a.mode == b.mode && a.baselineSeconds == b.baselineSeconds
            && a.runs.map(\.threshold) == b.runs.map(\.threshold) && a.runs.map(\.seconds) == b.runs.map(\.seconds)
    }

    /// Every Wan2.1 latency table of the README: "Inference Latency Comparisons on a Single A800"
    /// (standard mode) and the `use_ret_steps` comparison (both modes, GPU not stated).
    static let all: [WanPublishedLatency] = {
        let a800 = "Inference Latency Comparisons on a Single A800"
        let ret = "use_ret_steps table"
        return [
            .init(table: a800, variant: .t2v1_3B, mode: .standard, baselineSeconds: 175,
                  runs: [(0.05, 117), (0.07, 110), (0.08, 88)]),
            .init(table: a800, variant: .t2v14B, mode: .standard, baselineSeconds: 55 * 60,
                  runs: [(0.14, 38 * 60), (0.15, 30 * 60), (0.2, 27 * 60)]),
            .init(table: a800, variant: .i2v480P, mode: .standard, baselineSeconds: 735,
                  runs: [(0.13, 464), (0.19, 372), (0.26, 300)]),
            .init(table: a800, variant: .i2v720P, mode: .standard, baselineSeconds: 29 * 60,
                  runs: [(0.18, 17 * 60), (0.2, 15 * 60), (0.3, 12 * 60)]),
            .init(table: ret, variant: .t2v1_3B, mode: .standard, baselineSeconds: 97, runs: [(0.05, 64), (0.08, 49)]),
            .init(table: ret, variant: .t2v1_3B, mode: .retention, baselineSeconds: 97, runs: [(0.05, 61), (0.10, 41)]),
            .init(table: ret, variant: .t2v14B, mode: .standard, baselineSeconds: 1829, runs: [(0.14, 1234), (0.20, 909)]),
            .init(table: ret, variant: .t2v14B, mode: .retention, baselineSeconds: 1829, runs: [(0.10, 915), (0.20, 578)]),
            .init(table: ret, variant: .i2v480P, mode: .standard, baselineSeconds: 385, runs: [(0.13, 241), (0.26, 156)]),
            .init(table: ret, variant: .i2v480P, mode: .retention, baselineSeconds: 385, runs: [(0.20, 212), (0.30, 164)]),
            .init(table: ret, variant: .i2v720P, mode: .standard, baselineSeconds: 903, runs: [(0.20, 476), (0.30, 363)]),
            .init(table: ret, variant: .i2v720P, mode: .retention, baselineSeconds: 903, runs: [(0.20, 430), (0.30, 340)]),
        ]
    }()
}
