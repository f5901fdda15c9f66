import Foundation

/// One row of the demo table: a cached run against the uncached one.
public struct DemoRow: Sendable, Equatable, Codable {
    /// Which coefficients (e.g. `flux preset`, `calibrated`).
    public var coefficients: String
    /// The threshold δ.
    public var threshold: Double
    /// Calls that ran the block stack.
    public var computed: Int
    /// All calls.
    public var calls: Int
    /// Wall seconds of the cached run.
    public var wallSeconds: Double
    /// Wall seconds of the uncached run.
    public var uncachedWallSeconds: Double
    /// Relative L1 of the final latent against the uncached one.
    public var relativeL1: Double
    /// PSNR (dB) of the final latent against the uncached one (see ``LatentComparison``).
    public var psnr: Double
    /// For First-Block Cache rows: the share of a forward block 0 costs, which a skipped call still pays.
    public var firstBlockShare: Double?
    /// Wall seconds of every cached run of this row, one per round (nil or one value: a single run).
    public var wallSamples: [Double]?
    /// Wall seconds of the uncached run of each of the same rounds, paired with ``wallSamples`` by index.
    public var uncachedWallSamples: [Double]?

    /// A row.
    public init(coefficients: String, threshold: Double, computed: Int, calls: Int, wallSeconds: Double,
                uncachedWallSeconds: Double, relativeL1: Double, psnr: Double) {
        self.coefficients = coefficients
        self.threshold = threshold
        self.computed = computed
        self.calls = calls
        self.wallSeconds = wallSeconds
        self.uncachedWallSeconds = uncachedWallSeconds
        self.relativeL1 = relativeL1
        self.psnr = psnr
    }

    /// The speedups of the rounds: uncached wall ÷ cached wall of runs measured in the same round
    /// (empty without ``wallSamples`` and ``uncachedWallSamples``).
    public var pairedSpeedups: [Double] {
        DemoStatistics.pairedSpeedups(uncached: uncachedWallSamples ?? [], cached: wallSamples ?? [])
    }
    /// The median of ``pairedSpeedups`` when there are rounds, else uncached wall ÷ cached wall: each
    /// ratio compares runs made next to each other, so load that changes between rounds cancels.
    public var measuredSpeedup: Double {
        let paired = pairedSpeedups
        if !paired.isEmpty { return DemoStatistics.median(paired) }
        return wallSeconds > 0 ? uncachedWallSeconds / wallSeconds : 0
    }
    /// `(slowest − fastest) / fastest` of the row's cached wall times; nil with a single run.
    public var wallSpread: Double? { DemoStatistics.relativeSpread(wallSamples ?? []) }
    /// Calls ÷ computed calls: the speedup if everything but the block stack were free.
    public var predictedSpeedup: Double { computed > 0 ? Double(calls) / Double(computed) : 1 }
    /// The honesty target: measured ≥ ``DemoTable/honestyRatio`` × predicted.
    public var meetsHonestyTarget: Bool { measuredSpeedup >= DemoTable.honestyRatio * predictedSpeedup }
    /// True when the measured speedup exceeds what the computed calls allow (predicted ÷
    /// ``DemoTable/honestyRatio``): the uncached run was slowed by something else, so the figure is
    /// timing noise, not a result.
    public var isTimingNoise: Bool { measuredSpeedup > predictedSpeedup / DemoTable.honestyRatio }
}

/// Formats demo rows as a fixed-width text table with notes for rows below the honesty target.
public enum DemoTable {
    /// Measured speedup must reach this fraction of the predicted one.
    public static let honestyRatio = 0.97

    static let headers = ["coefficients", "threshold", "computed", "wall s", "measured", "predicted", "rel L1", "PSNR dB"]

    /// The header of the spread column, shown after `wall s` when some timing was repeated.
    static let spreadHeader = "spread"

    /// A relative spread as a percentage with one decimal (`"-"` when there is none).
    static func formatSpread(_ spread: Double?) -> String {
        spread.map { String(format: "%.1f%%", $0 * 100) } ?? "-"
    }

    /// A measured speedup close to the cap (at least this fraction of it) is explained by the cap.
    public static let nearCapRatio = 0.9

    /// The cells of one row (a timing-noise speedup is marked `*`).
    static func cells(_ r: DemoRow) -> [String] {
        [r.coefficients, String(format: "%.3g", r.threshold), "\(r.computed)/\(r.calls)",
         String(format: "%.2f", r.wallSeconds), String(format: "%.2fx", r.measuredSpeedup) + (r.isTimingNoise ? "*" : ""),
         String(format: "%.2fx", r.predictedSpeedup), String(format: "%.2e", r.relativeL1), formatPSNR(r.psnr)]
    }

    /// The speedup a skip pattern allows when every skipped call still costs `f` of a forward (plus
    /// block 0 for First-Block Cache): `calls / (computed + skipped · f)`.
    static func cap(_ r: DemoRow, _ f: Double) -> Double {
        let f = f + (r.firstBlockShare ?? 0)
        let cost = Double(r.computed) + Double(r.calls - r.computed) * f
        return cost > 0 ? Double(r.calls) / cost : 1
    }

    /// Why a row misses the target: the fixed per-call cost when the measured figure is near the cap it
    /// sets (at least ``nearCapRatio`` of it), else timing variation.
    static func expectation(_ r: DemoRow, _ f: Double) -> String {
        let expected = cap(r, f)
        let fixed = f + (r.firstBlockShare ?? 0)
        if fixed > 0, expected < honestyRatio * r.predictedSpeedup, r.measuredSpeedup >= nearCapRatio * expected {
            let what = r.firstBlockShare == nil ? "prepare, decision and head" : "prepare, block 0, decision and head"
            return String(format: "(expected: skipped calls still run %@ = %.2f%% of a forward each, "
                          + "which caps this skip pattern at %.2fx)", what, fixed * 100, expected)
        }
        return String(format: "(the skip pattern allows %.2fx: the gap is run-to-run timing variation, not the decision; "
                      + "rerun with more --repeats)", expected)
    }

    /// `inf` for identical latents, else one decimal.
    static func formatPSNR(_ p: Double) -> String { p.isInfinite ? (p > 0 ? "inf" : "-inf") : String(format: "%.1f", p) }

    /// The table: an uncached line, a header, one line per row, then one note per row whose measured
    /// speedup is below ``honestyRatio`` × predicted.
    ///
    /// `skippedCallFraction` (the cost of a skipped call relative to a forward: prepare, decision and
    /// head) gives each note the speedup the skip pattern allows: `calls / (computed + skipped · f)`.
    ///
    /// When the uncached run or any row was timed more than once (`uncachedWallSamples`, the rows'
    /// ``DemoRow/wallSamples``), a `spread` column after `wall s` gives `(slowest − fastest) / fastest`
    /// of those wall times; `wall s` stays the fastest.
    public static func render(_ rows: [DemoRow], uncachedWallSeconds: Double, calls: Int,
                              skippedCallFraction: Double = 0, uncachedWallSamples: [Double] = []) -> String {
        var lines = [headers] + [["uncached", "-", "\(calls)/\(calls)", String(format: "%.2f", uncachedWallSeconds),
                                  "1.00x", "1.00x", "0", "inf"]]
        lines += rows.map(cells)
        let repeated = uncachedWallSamples.count > 1 || rows.contains { ($0.wallSamples?.count ?? 0) > 1 }
        if repeated {
            let spreads = [spreadHeader, formatSpread(DemoStatistics.relativeSpread(uncachedWallSamples))]
                + rows.map { formatSpread($0.wallSpread) }
            for i in lines.indices { lines[i].insert(spreads[i], at: 4) }
        }
        let widths = lines[0].indices.map { c in lines.map { $0[c].count }.max() ?? 0 }
        func format(_ cells: [String]) -> String {
            cells.enumerated().map { c, s in
                c == 0 ? s.padding(toLength: widths[c], withPad: " ", startingAt: 0)
                       : String(repeating: " ", count: widths[c] - s.count) + s
            }.joined(separator: "  ")
        }
        var out = [format(lines[0]), String(repeating: "-", count: widths.reduce(0, +) + 2 * (widths.count - 1))]
        out += lines.dropFirst().map(format)
        for r in rows where !r.meetsHonestyTarget {
            out.append("note: \(r.coefficients) δ=\(String(format: "%.3g", r.threshold)): measured "
                       + String(format: "%.2fx is below %.2f × predicted %.2fx ", r.measuredSpeedup, honestyRatio, r.predictedSpeedup)
                       + expectation(r, skippedCallFraction))
        }
        for r in rows where r.isTimingNoise {
            out.append("note: \(r.coefficients) δ=\(String(format: "%.3g", r.threshold)): measured "
                       + String(format: "%.2fx* is more than %d of %d computed calls allow (%.2fx): timing noise ", r.measuredSpeedup,
                                r.computed, r.calls, r.predictedSpeedup)
                       + "(the uncached run was slowed by other work), not a speedup; rerun with more --repeats")
        }
        return out.joined(separator: "\n")
    }
}
