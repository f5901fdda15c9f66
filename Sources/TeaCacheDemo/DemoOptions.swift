import Foundation

/// A cache policy the demo can put in its table.
public enum DemoPolicy: String, Sendable, Equatable, CaseIterable {
    /// TeaCache with the family's preset and calibrated coefficients.
    case teaCache = "teacache"
    /// First-Block Cache.
    case firstBlock = "first-block"
    /// MagCache with the family's published ratios and ratios calibrated on the uncached run.
    case magCache = "magcache"
    /// TaylorSeer (output forecast on a fixed interval; its rows' threshold column is the interval).
    case taylorSeer = "taylorseer"
    /// EasyCache (no coefficients).
    case easyCache = "easycache"
    /// DBCache with one front block and no back block (no rows on a single-block model, whose middle is empty).
    case dbCache = "dbcache"
    /// TeaCache (built-in preset, its default threshold) and MagCache (first ratio set, first threshold), with first- and
    /// second-order forecast residuals beside the same policy reusing the stale residual.
    case forecast = "forecast"

    /// Every name `--policy` takes.
    static var names: String { allCases.map(\.rawValue).joined(separator: ", ") }

    /// Parses a policy name (`names`), a comma list of them, or `all`.
    public static func parse(_ text: String) throws(DemoError) -> [DemoPolicy] {
        if text == "all" { return allCases }
        var out: [DemoPolicy] = []
        for part in text.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) {
            guard let p = DemoPolicy(rawValue: part) else {
                throw .invalidOption("--policy \(part) is not one of \(names), all")
            }
            if !out.contains(p) { out.append(p) }
        }
        guard !out.isEmpty else { throw .invalidOption("--policy is empty; give one of \(names), or all") }
        return out
    }

    /// The thresholds run when none are given: diffusers' defaults ×1, ×2, ×4 for the hooks, cache-dit's for
    /// DBCache, the paper's 5 % ×1, ×2, ×4 for EasyCache; TaylorSeer's intervals.
    public var defaultThresholds: [Double]? {
        switch self {
        case .teaCache, .forecast: return nil
        case .firstBlock: return [0.05, 0.1, 0.2]
        case .magCache: return [0.06, 0.12, 0.24]
        case .taylorSeer: return [2, 3]
        case .easyCache: return [0.05, 0.1, 0.2]
        case .dbCache: return [0.08, 0.16, 0.32]
        }
    }
}

/// Everything `teacache demo` takes.
public struct DemoOptions: Sendable, Equatable {
    /// The model (family, config, weights, seed, steps).
    public var source: ModelSource
    /// Thresholds to run with every coefficient set; nil uses the family's defaults.
    public var thresholds: [Double]?
    /// A built-in preset name (`teacache presets`) or a preset JSON (TeaCache or MagCache, e.g. from
    /// `teacache calibrate`), run as an extra row set (see ``PresetCatalog/resolve(_:)``).
    public var presetPath: String?
    /// Where the charts and traces go.
    public var outputDirectory: String
    /// Repetitions of the decision-overhead timing.
    public var overheadRepeats: Int
    /// Rounds of timed runs (each: the uncached run, then every cached row; see `DemoRunner.runOrder`); the table
    /// reports the fastest wall time, the spread, and the median speedup of runs from the same round.
    public var repeats: Int
    /// The policies of the table, in order.
    public var policies: [DemoPolicy] = [.teaCache]
    /// First-Block Cache thresholds (nil: ``DemoPolicy/defaultThresholds``).
    public var firstBlockThresholds: [Double]?
    /// MagCache thresholds (nil: ``DemoPolicy/defaultThresholds``).
    public var magCacheThresholds: [Double]?
    /// EasyCache thresholds (nil: ``DemoPolicy/defaultThresholds``).
    public var easyCacheThresholds: [Double]?
    /// DBCache thresholds (nil: ``DemoPolicy/defaultThresholds``).
    public var dbCacheThresholds: [Double]?
    /// A demo estimated to take longer than this (seconds, every call computed) announces its
    /// estimate before the first timed run.
    public var estimateNoticeSeconds: Double = 600

    /// Options.
    public init(source: ModelSource = ModelSource(), thresholds: [Double]? = nil, presetPath: String? = nil,
                outputDirectory: String = "teacache-output", overheadRepeats: Int = 30, repeats: Int = 2) {
        self.repeats = repeats
        self.source = source
        self.thresholds = thresholds
        self.presetPath = presetPath
        self.outputDirectory = outputDirectory
        self.overheadRepeats = overheadRepeats
    }

    /// Checks every option (model name, steps, thresholds, files).
    public func validate() throws(DemoError) {
        _ = try DemoFamily(named: source.family)
        try source.validate()
        if let presetPath { _ = try PresetCatalog.resolve(presetPath) }
        if let thresholds { try Self.validate(thresholds) }
        if let firstBlockThresholds { try Self.validate(firstBlockThresholds) }
        if let magCacheThresholds { try Self.validate(magCacheThresholds) }
        if let easyCacheThresholds { try Self.validate(easyCacheThresholds) }
        if let dbCacheThresholds { try Self.validate(dbCacheThresholds) }
        guard !policies.isEmpty else { throw .invalidOption("no policy to run") }
        guard !outputDirectory.isEmpty else { throw .invalidOption("--output is empty; give a folder") }
        try PathChecks.output(outputDirectory, flag: "--output", folder: true)
        guard repeats >= 1 else { throw .invalidOption("--repeats \(repeats): must be at least 1; give the number of runs per row") }
        guard overheadRepeats >= 1 else { throw .invalidOption("overhead repeats \(overheadRepeats): must be at least 1; give the number of timings") }
    }

    /// Thresholds must be finite and ≥ 0, and at least one must be given.
    public static func validate(_ thresholds: [Double]) throws(DemoError) {
        guard !thresholds.isEmpty else { throw .invalidOption("--thresholds is empty; give e.g. 0.1,0.3,0.6") }
        for t in thresholds where !(t.isFinite && t >= 0) {
            throw .invalidOption("threshold \(String(format: "%g", t)): must be a finite number >= 0 (0 disables skipping); give e.g. 0.1,0.3,0.6")
        }
    }

    /// Parses a comma-separated threshold list (`"0.1,0.3, 0.6"`).
    public static func parseThresholds(_ text: String) throws(DemoError) -> [Double] {
        var out: [Double] = []
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            let s = part.trimmingCharacters(in: .whitespaces)
            guard let v = Double(s) else {
                throw .invalidOption("'\(s)' in --thresholds is not a number; use a comma list like 0.1,0.3,0.6")
            }
            out.append(v)
        }
        try validate(out)
        return out
    }
}
