import Foundation
import TeaCache

/// Everything `teacache calibrate` takes.
public struct CalibrationOptions: Sendable, Equatable {
    /// The model (family, config, weights, seed, steps).
    public var source: ModelSource
    /// How many input seeds to run (`seed + 1 …`).
    public var seeds: Int
    /// Accept a fit below ``CalibrationRunner/minimumRSquared``.
    public var force: Bool
    /// Where the preset JSON goes.
    public var outputPath: String
    /// The preset's name (default `<family>-calibrated`).
    public var name: String?
    /// The preset's default threshold (default: the family preset's).
    public var defaultThreshold: Double?
    /// Fits below this R² are refused unless ``force`` is set.
    public var minimumRSquared: Double

    /// Options.
    public init(source: ModelSource = ModelSource(), seeds: Int = 3, force: Bool = false,
                outputPath: String = "teacache-output/calibrated-preset.json", name: String? = nil,
                defaultThreshold: Double? = nil, minimumRSquared: Double = CalibrationRunner.minimumRSquared) {
        self.minimumRSquared = minimumRSquared
        self.source = source
        self.seeds = seeds
        self.force = force
        self.outputPath = outputPath
        self.name = name
        self.defaultThreshold = defaultThreshold
    }

    /// Checks every option.
    public func validate() throws(DemoError) {
        _ = try DemoFamily(named: source.family)
        try source.validate()
        guard seeds >= 1 else { throw .invalidOption("--seeds \(seeds): must be at least 1; give the number of input seeds to record") }
        guard source.steps >= 2 else { throw .invalidOption("--steps \(source.steps): calibration needs at least 2 steps per run; give more steps") }
        if let t = defaultThreshold, !(t.isFinite && t >= 0) {
            throw .invalidOption("--default-threshold \(t): must be a finite number >= 0; give e.g. 0.3")
        }
        guard minimumRSquared.isFinite, minimumRSquared <= 1 else {
            throw .invalidOption("--minimum-r-squared \(minimumRSquared): must be a finite number <= 1; give e.g. 0.9")
        }
        if let name, name.isEmpty { throw .invalidOption("--name is empty; give a preset name or leave it out") }
        guard !outputPath.isEmpty else { throw .invalidOption("--output is empty; give a file path") }
        try PathChecks.output(outputPath, flag: "--output", folder: false)
    }
}

/// What `teacache calibrate` found.
public struct CalibrationReport: Sendable {
    /// The model description.
    public var summary: String
    /// The fit.
    public var fit: Calibration.Fit
    /// The preset written.
    public var preset: TeaCachePreset
    /// Where it was written.
    public var outputPath: String
    /// Uncached runs done.
    public var runs: Int
    /// Sampling steps per run (a CFG model records one pair per branch for every step after the first).
    public var steps: Int
    /// The R² floor that applied.
    public var minimumRSquared: Double

    /// The text printed on stdout.
    public func render() -> String {
        let c = fit
        var lines = [
            "model: \(summary)",
            "runs: \(runs) seeds × \(steps) steps → \(c.sampleCount) (input, output) pairs",
            "R² = \(String(format: "%.5f", c.rSquared))" + (c.rSquared < minimumRSquared ? " (below \(minimumRSquared), accepted with --force)" : ""),
            "RMS error = \(String(format: "%.4g", c.rmsResidual))",
            "input range = \(String(format: "%.4g", c.inputRange.lowerBound)) … \(String(format: "%.4g", c.inputRange.upperBound))",
            "coefficients (highest power first) = [\(c.coefficients.map { String(format: "%.8e", $0) }.joined(separator: ", "))]",
        ]
        lines.append("wrote preset '\(preset.name)' (default threshold \(preset.defaultThreshold)) to \(outputPath)")
        return lines.joined(separator: "\n")
    }
}

/// Runs `teacache calibrate`: the model uncached over several input seeds, a polynomial fit of the
/// recorded pairs (`Calibration/fit(_:minimumRSquared:force:)`), and a preset JSON that
/// `TeaCachePreset/load(from:)` and `teacache demo --preset` accept.
public enum CalibrationRunner {
    /// The default R² floor: fits below it are refused unless forced.
    public static let minimumRSquared = 0.9

    /// Calibrates.
    /// - Throws: ``DemoError/teaCache(_:)`` with `CacheError/poorCalibrationFit(rSquared:minimum:)`
    ///   when the fit is poor and `force` is off; other ``DemoError``s for invalid options or models.
    public static func run(_ options: CalibrationOptions, progress: DemoRunner.ProgressFactory) throws(DemoError) -> CalibrationReport {
        try options.validate()
        let family = try DemoFamily(named: options.source.family)
        let workload = try family.makeWorkload(options.source)
        var samples: [CalibrationSample] = []
        for k in 1...options.seeds {
            let seed = options.source.seed &+ UInt64(k)
            let r = try DemoRunner.run("seed \(seed)", steps: workload.steps, progress: progress) { p throws(DemoError) in
                try workload.runUncached(inputSeed: seed, progress: p)
            } wall: { $0.wallSeconds }
            samples += r.samples
        }
        let fit: Calibration.Fit
        let preset: TeaCachePreset
        do {
            fit = try Calibration.fit(samples, minimumRSquared: options.minimumRSquared, force: options.force)
            preset = try Calibration.preset(
                named: options.name ?? "\(family.name)-calibrated", from: fit,
                defaultThreshold: options.defaultThreshold ?? family.builtInPreset.defaultThreshold,
                modulatedInput: family.modulatedInputDescription,
                provenance: "teacache calibrate: \(workload.summary); \(options.seeds) input seeds, \(workload.steps) steps",
                schedule: family.builtInPreset.schedule)
        } catch { throw .teaCache(error) }
        let url = URL(fileURLWithPath: options.outputPath)
        do {
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        } catch { throw .io(PathChecks.writeFailure(url) + "; choose an --output path you can write to") }
        let data: Data
        do { data = try preset.jsonData() } catch { throw .teaCache(error) }
        try AtomicFile.write(data, to: url)
        return CalibrationReport(summary: workload.summary, fit: fit, preset: preset, outputPath: url.path, runs: options.seeds,
                                 steps: workload.steps,
                                 minimumRSquared: options.minimumRSquared)
    }
}

/// What `teacache calibrate --policy magcache` found.
public struct MagCacheCalibrationReport: Sendable {
    /// The model description.
    public var summary: String
    /// The preset written (per-step mean ratios over every run and branch).
    public var preset: MagCachePreset
    /// Where it was written.
    public var outputPath: String
    /// Uncached runs done.
    public var runs: Int
    /// Ratio sequences averaged (runs × CFG branches).
    public var sequences: Int
    /// Sampling steps per run.
    public var steps: Int

    /// The text printed on stdout.
    public func render() -> String {
        [
            "model: \(summary)",
            "runs: \(runs) seeds × \(steps) steps → \(sequences) ratio sequences (runs × branches)",
            "largest per-step standard deviation across them = \(String(format: "%.4g", preset.maxStandardDeviation ?? 0))",
            "mag ratios = [\(preset.magRatios.map { String(format: "%.5f", $0) }.joined(separator: ", "))]",
            "wrote MagCache preset '\(preset.name)' to \(outputPath)",
        ].joined(separator: "\n")
    }
}

extension CalibrationRunner {
    /// Calibrates MagCache's magnitude ratios: the model uncached over several input seeds, stream 0's
    /// block-stack residual of every call recorded (`MagRatioRecorder`), the per-step mean over runs and
    /// branches written as a `MagCachePreset` JSON (with the largest per-step spread across them).
    public static func runMagCache(_ options: CalibrationOptions, progress: DemoRunner.ProgressFactory) throws(DemoError) -> MagCacheCalibrationReport {
        try options.validate()
        let family = try DemoFamily(named: options.source.family)
        let workload = try family.makeWorkload(options.source)
        var sequences: [[Double]] = []
        for k in 1...options.seeds {
            let seed = options.source.seed &+ UInt64(k)
            var r = try DemoRunner.run("seed \(seed)", steps: workload.steps, progress: progress) { p throws(DemoError) in
                try workload.runUncached(inputSeed: seed, progress: p)
            } wall: { $0.wallSeconds }
            r.magRatios.beginRun()
            sequences += r.magRatios.sequences
        }
        var all = MagRatioRecorder()
        all.append(sequences: sequences)
        let ratios: (ratios: [Double], maxStandardDeviation: Double)
        do { ratios = try all.ratios() } catch { throw .teaCache(error) }
        let preset = MagCachePreset(
            name: options.name ?? "\(family.name)-magcache-calibrated", magRatios: ratios.ratios,
            provenance: "teacache calibrate --policy magcache: \(workload.summary); \(options.seeds) input seeds, \(workload.steps) steps",
            maxStandardDeviation: ratios.maxStandardDeviation)
        let url = URL(fileURLWithPath: options.outputPath)
        do {
            try FileManager.default.createDirectory(at: url.deletingLastPathComponent(), withIntermediateDirectories: true)
        } catch { throw .io(PathChecks.writeFailure(url) + "; choose an --output path you can write to") }
        let data: Data
        do { data = try preset.jsonData() } catch { throw .teaCache(error) }
        try AtomicFile.write(data, to: url)
        return MagCacheCalibrationReport(summary: workload.summary, preset: preset, outputPath: url.path, runs: options.seeds,
                                         sequences: sequences.count, steps: workload.steps)
    }
}
