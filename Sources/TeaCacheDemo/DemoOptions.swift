import Foundation

/// Everything `teacache demo` takes.
public struct DemoOptions: Sendable, Equatable {
    /// The model (family, config, weights, seed, steps).
    public var source: ModelSource
    /// Thresholds to run with every coefficient set; nil uses the family's defaults.
    public var thresholds: [Double]?
    /// A preset JSON (e.g. from `teacache calibrate`) run as an extra coefficient set.
    public var presetPath: String?
    /// Where the charts and traces go.
    public var outputDirectory: String
    /// Repetitions of the decision-overhead timing.
    public var overheadRepeats: Int
    /// How many times each sampling run is repeated; the fastest wall time is reported.
    public var repeats: Int

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
        if let thresholds { try Self.validate(thresholds) }
        guard !outputDirectory.isEmpty else { throw .invalidOption("--output is empty; give a folder") }
        guard repeats >= 1 else { throw .invalidOption("--repeats is \(repeats); use at least 1") }
        guard overheadRepeats >= 1 else { throw .invalidOption("overhead repeats is \(overheadRepeats); use at least 1") }
    }

    /// Thresholds must be finite and ≥ 0, and at least one must be given.
    public static func validate(_ thresholds: [Double]) throws(DemoError) {
        guard !thresholds.isEmpty else { throw .invalidOption("--thresholds is empty; give e.g. 0.1,0.3,0.6") }
        for t in thresholds where !(t.isFinite && t >= 0) {
            throw .invalidOption("threshold \(t) must be a finite number >= 0 (0 disables skipping)")
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
