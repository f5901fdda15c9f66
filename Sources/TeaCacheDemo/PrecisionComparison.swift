import Foundation
import TeaCache
import Tensors

/// The demo's precisions side by side: the same model (same seed, configuration or weights) with its
/// weight matrices in each precision, sampled uncached and with TeaCache, each final latent compared
/// with the float32 uncached run.
public struct PrecisionComparison: Sendable {
    /// One precision's runs.
    public struct Row: Sendable {
        /// The weight storage.
        public var precision: WeightPrecision
        /// How its products ran on this CPU (`WeightProducts/describe(_:)`).
        public var products: String
        /// Wall seconds of the uncached run.
        public var uncachedSeconds: Double
        /// The uncached final latent against float32's uncached one.
        public var uncached: LatentComparison
        /// Wall seconds of the TeaCache run.
        public var cachedSeconds: Double
        /// The TeaCache final latent against float32's uncached one.
        public var cached: LatentComparison
        /// Calls computed by the TeaCache run, and all calls.
        public var computed: Int, calls: Int
    }

    /// The TeaCache threshold used.
    public let threshold: Double
    /// One row per precision, float32 first.
    public let rows: [Row]

    /// Runs `precisions` (float32 is always run first, as the reference) on `source`'s model with the
    /// family's built-in TeaCache preset at `threshold` (default: the family's first demo threshold).
    /// - Throws: ``DemoError`` for an unknown family, a model that cannot be built or an invalid threshold.
    public static func run(source: ModelSource, precisions: [WeightPrecision], threshold: Double? = nil,
                           progress: ((String) -> StepProgress?)? = nil) throws(DemoError) -> PrecisionComparison {
        try source.validate()
        let family = try DemoFamily(named: source.family)
        let t = threshold ?? family.defaultThresholds.first ?? 0.1
        let configuration: TeaCacheConfiguration
        do { configuration = try family.builtInPreset.configuration(threshold: t) } catch { throw .teaCache(error) }
        var order: [WeightPrecision] = [.float32]
        for p in precisions where !order.contains(p) { order.append(p) }
        var reference: Tensor?
        var rows: [Row] = []
        for p in order {
            var s = source
            s.precision = p
            let workload = try family.makeWorkload(s)
            let uncached = try workload.runUncached(inputSeed: nil, progress: progress?("\(p) uncached"))
            let cached = try workload.runCached(.teaCache(configuration), progress: progress?("\(p) TeaCache \(t)"))
            let ref = reference ?? uncached.latent
            reference = ref
            rows.append(Row(precision: p, products: WeightProducts.describe(p), uncachedSeconds: uncached.wallSeconds,
                            uncached: try LatentComparison(uncached.latent, reference: ref), cachedSeconds: cached.wallSeconds,
                            cached: try LatentComparison(cached.latent, reference: ref),
                            computed: cached.trace.summary.computed, calls: cached.trace.summary.calls))
        }
        return PrecisionComparison(threshold: t, rows: rows)
    }

    /// A Markdown table: precision, uncached time and PSNR, TeaCache time, calls and PSNR (against float32
    /// uncached), then how each precision's products ran.
    public func render() -> String {
        func psnr(_ c: LatentComparison) -> String { c.psnr.isInfinite ? "∞ (identical)" : String(format: "%.1f dB", c.psnr) }
        var lines = ["| weights | uncached | PSNR vs float32 | TeaCache \(threshold) | computed | PSNR vs float32 |",
                     "|---|---|---|---|---|---|"]
        for r in rows {
            lines.append(String(format: "| %@ | %.2f s | %@ | %.2f s | %d/%d | %@ |", r.precision.rawValue, r.uncachedSeconds,
                                psnr(r.uncached), r.cachedSeconds, r.computed, r.calls, psnr(r.cached)))
        }
        lines.append("")
        for r in rows { lines.append("\(r.precision): \(r.products)") }
        return lines.joined(separator: "\n")
    }
}
