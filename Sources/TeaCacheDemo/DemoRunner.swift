import DiTModels
import Foundation
import TeaCache

/// One coefficient set of the demo.
public struct CoefficientSet: Sendable {
    /// The label in the table (`flux preset`, `calibrated`, ...).
    public var label: String
    /// The preset (coefficients and schedule).
    public var preset: TeaCachePreset
}

/// Everything the demo measured.
public struct DemoReport: Sendable {
    /// The model description.
    public var summary: String
    /// Steps per run.
    public var steps: Int
    /// Calls per run.
    public var calls: Int
    /// Wall seconds of the uncached run (the fastest of the rounds).
    public var uncachedWallSeconds: Double
    /// The fit on the uncached run's pairs, when one could be computed (below ``CalibrationRunner/minimumRSquared`` it is
    /// reported as refused and has no rows).
    public var calibration: Calibration.Fit?
    /// Why there is no calibrated set (too few steps, degenerate data...).
    public var calibrationProblem: String?
    /// The decision overhead against one forward.
    public var overhead: DecisionOverhead
    /// One row per (coefficient set, threshold).
    public var rows: [DemoRow]
    /// The files written.
    public var files: [String]
    /// Rounds of runs (each: one uncached run, then every cached row once; see
    /// `runOrder(rows:repeats:)`).
    public var repeats: Int = 1
    /// The share of CPU time other processes used during the runs (0…1), when measurable.
    public var othersCPUShare: Double?
    /// Wall seconds of the uncached run of every round (``uncachedWallSeconds`` is the fastest).
    public var uncachedWallSamples: [Double] = []

    /// The text printed on stdout: model line, calibration, table, overhead.
    public func render() -> String {
        var out = ["model: \(summary)", "steps: \(steps) (flow-matching Euler), \(calls) model calls per run"]
        if let c = calibration {
            out.append("calibrated on the uncached run: R² = \(String(format: "%.4f", c.rSquared)), "
                       + "RMS = \(String(format: "%.3g", c.rmsResidual)), input range "
                       + "\(String(format: "%.3g", c.inputRange.lowerBound))…\(String(format: "%.3g", c.inputRange.upperBound)), "
                       + "\(c.sampleCount) pairs; coefficients \(c.coefficients.map { String(format: "%.6g", $0) })")
            if c.rSquared < CalibrationRunner.minimumRSquared {
                out.append("calibrated coefficients refused: R² = \(String(format: "%.2f", c.rSquared)) is below "
                           + "\(CalibrationRunner.minimumRSquared), so the table has no calibrated rows "
                           + "(`teacache calibrate` refuses such a fit unless --force)")
            }
        } else if let p = calibrationProblem {
            out.append("no calibrated coefficients: \(p)")
        }
        out.append("")
        out.append(DemoTable.render(rows, uncachedWallSeconds: uncachedWallSeconds, calls: calls,
                                    skippedCallFraction: overhead.skippedCallFraction,
                                    uncachedWallSamples: uncachedWallSamples))
        out.append("")
        out.append((repeats > 1 ? "measured = median over the \(repeats) rounds of uncached wall / cached wall of the same round; "
                    + "wall s = fastest run, spread = (slowest − fastest) / fastest; "
                    : "measured = uncached wall / cached wall; ") + "predicted = calls / computed; rel L1 = Σ|x−u|/Σ|u| and "
                   + "PSNR = 10·log10((max u − min u)² / mean((x−u)²)) of the final latent x against the uncached u")
        out.append(String(format: "decision overhead (modulated input + distance + policy + residual add): %.3f ms "
                          + "= %.2f%% of one forward (%.1f ms)", overhead.decisionSeconds * 1000,
                          overhead.fraction * 100, overhead.forwardSeconds * 1000))
        out.append(String(format: "a skipped call also runs prepare (%.2f ms) and the output head (%.2f ms): "
                          + "it costs %.2f%% of a forward in all", overhead.prepareSeconds * 1000,
                          overhead.headSeconds * 1000, overhead.skippedCallFraction * 100))
        var timing = "wall times: " + (repeats > 1 ? "\(repeats) interleaved rounds (uncached, then every cached row)" : "one run each")
            + " after a warm-up"
        if let share = othersCPUShare {
            timing += String(format: "; other processes used %.0f%% of the CPU meanwhile", share * 100)
                + (share > 0.1 ? " (a busy machine: expect noisy speedups)" : "")
        }
        out.append(timing)
        if !files.isEmpty { out.append("wrote \(files.count) files to \(URL(fileURLWithPath: files[0]).deletingLastPathComponent().path)") }
        return out.joined(separator: "\n")
    }
}

/// A calibration whose R² is below ``CalibrationRunner/minimumRSquared``.
struct RefusedFit: Error {
    var fit: Calibration.Fit
}

/// Runs `teacache demo`: one uncached run, a calibration on its pairs, then cached runs for every
/// coefficient set and threshold, writing a chart and a trace per cached run.
public enum DemoRunner {
    /// Makes the progress bar of a run from its label.
    public typealias ProgressFactory = (String) -> ProgressBar

    /// Runs the demo.
    /// - Parameters:
    ///   - options: what to run.
    ///   - progress: makes the progress bar of each run.
    ///   - notice: receives a time estimate before a demo longer than
    ///     ``DemoOptions/estimateNoticeSeconds`` starts.
    /// - Throws: ``DemoError`` for invalid options, model problems, or unwritable output.
    public static func run(_ options: DemoOptions, progress: ProgressFactory,
                           notice: (String) -> Void = { _ in }) throws(DemoError) -> DemoReport {
        try options.validate()
        let family = try DemoFamily(named: options.source.family)
        let thresholds = options.thresholds ?? family.defaultThresholds
        let loadedPreset = try options.presetPath.map { p throws(DemoError) in try PresetCatalog.resolve(p) }
        var userPreset: TeaCachePreset?, userMagCache: MagCachePreset?
        switch loadedPreset {
        case let .teaCache(p)?: userPreset = p
        case let .magCache(p)?: userMagCache = p
        case nil: break
        }
        // A MagCache preset runs with the MagCache policy, even when --policy does not name it.
        let policies = options.policies + (userMagCache != nil && !options.policies.contains(.magCache) ? [.magCache] : [])
        let workload = try family.makeWorkload(options.source)
        let folder = URL(fileURLWithPath: options.outputDirectory, isDirectory: true)
        do { try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true) } catch {
            throw .io("--output \(folder.path): cannot create the folder (\(FileProblem.describeWrite(folder))); choose a folder you can write to")
        }
        var files: [String] = []

        // Warm-up before anything is timed for the table: two forwards and the skip path (page faults of
        // the weights, allocator growth, BLAS thread start-up would otherwise land on the uncached run).
        let overheadConfiguration: TeaCacheConfiguration
        do { overheadConfiguration = try .faithful(family.builtInPreset, threshold: thresholds[0]) } catch { throw .teaCache(error) }
        let warmUp = try workload.measureDecisionOverhead(overheadConfiguration, repeats: 2, forwardSeconds: nil)
        let cachedRuns = policies.reduce(0) { n, p in
            switch p {
            case .teaCache: return n + (2 + (userPreset == nil ? 0 : 1)) * thresholds.count
            case .firstBlock: return n + (options.firstBlockThresholds ?? p.defaultThresholds ?? []).count
            case .magCache:
                return n + (family.family.magCachePresets.count + 1 + (userMagCache == nil ? 0 : 1))
                    * (options.magCacheThresholds ?? p.defaultThresholds ?? []).count
            case .taylorSeer: return n + 2 * (p.defaultThresholds ?? []).count   // orders 1 and 2
            case .easyCache: return n + (options.easyCacheThresholds ?? p.defaultThresholds ?? []).count
            case .dbCache: return n + (options.dbCacheThresholds ?? p.defaultThresholds ?? []).count
            case .forecast: return n + 6   // TeaCache and MagCache: stale, first and second order
            }
        }
        let estimate = RunEstimate(forwardSeconds: warmUp.forwardSeconds, steps: workload.steps,
                                   callsPerStep: family.family.guidanceScale == nil ? 1 : 2,
                                   runs: options.repeats * (1 + cachedRuns))
        if estimate.upperBoundSeconds > options.estimateNoticeSeconds { notice(estimate.sentence) }

        let load = SystemLoad()
        // Round 1's uncached run comes first: its pairs and ratios decide the calibrated rows. The other
        // rounds' runs are interleaved with the cached ones below (`runOrder(rows:repeats:)`).
        let uncached = try run("uncached", steps: workload.steps, progress: progress) { p throws(DemoError) in
            try workload.runUncached(inputSeed: nil, progress: p)
        } wall: { $0.wallSeconds }
        let calls = uncached.forwardSeconds.count
        files.append(try write(try encode(uncached.samples), to: folder.appendingPathComponent("uncached-calibration-pairs.json")))

        var sets = [CoefficientSet(label: "\(family.builtInPreset.name) preset", preset: family.builtInPreset)]
        var fit: Calibration.Fit?
        var problem: String?
        do {
            let f = try Calibration.fit(uncached.samples, force: true)
            // A fit `teacache calibrate` would refuse is reported as refused, and gets no rows.
            guard f.rSquared >= CalibrationRunner.minimumRSquared else { throw RefusedFit(fit: f) }
            let preset = try Calibration.preset(
                named: "\(family.name)-demo-calibrated", from: f, defaultThreshold: family.builtInPreset.defaultThreshold,
                modulatedInput: family.modulatedInputDescription,
                provenance: "teacache demo: fitted on the uncached run of \(workload.summary), \(workload.steps) steps",
                schedule: family.builtInPreset.schedule)
            fit = f
            sets.append(CoefficientSet(label: "calibrated", preset: preset))
            files.append(try write(try preset.jsonData(), to: folder.appendingPathComponent("calibrated-preset.json")))
        } catch let refused as RefusedFit {
            fit = refused.fit
        } catch { problem = "\(error)" }
        if let userPreset { sets.append(CoefficientSet(label: "preset \(userPreset.name)", preset: userPreset)) }

        // Every (policy, parameter set, threshold) run of the table, in order.
        var plan: [(label: String, threshold: Double, policy: CachePolicy)] = []
        for p in policies {
            switch p {
            case .teaCache:
                for set in sets {
                    for threshold in thresholds {
                        do { plan.append((set.label, threshold, .teaCache(try .faithful(set.preset, threshold: threshold)))) } catch {
                            throw .teaCache(error)
                        }
                    }
                }
            case .firstBlock:
                guard workload.blockCount != nil else {
                    throw .invalidOption("--policy first-block needs a model that runs block by block; \(family.name) does not")
                }
                for threshold in options.firstBlockThresholds ?? p.defaultThresholds ?? [] {
                    do { plan.append(("first-block", threshold, .firstBlock(try FirstBlockCacheConfiguration(threshold: threshold)))) } catch {
                        throw .teaCache(error)
                    }
                }
            case .magCache:
                var ratioSets = family.family.magCachePresets.map { ("magcache \($0.name) ratios", $0.magRatios) }
                if let userMagCache { ratioSets.append(("magcache preset \(userMagCache.name)", userMagCache.magRatios)) }
                // A run of fewer than 2 steps has no ratio to calibrate: only the published sets run.
                if let calibrated = try? uncached.magRatios.ratios() {
                    ratioSets.append(("magcache calibrated", calibrated.ratios))
                    let preset = MagCachePreset(name: "\(family.name)-demo-calibrated", magRatios: calibrated.ratios,
                                                provenance: "teacache demo: the uncached run of \(workload.summary)",
                                                maxStandardDeviation: calibrated.maxStandardDeviation)
                    do { files.append(try write(try preset.jsonData(), to: folder.appendingPathComponent("calibrated-magcache.json"))) } catch {
                        throw DemoError.wrap(error)
                    }
                }
                for (label, ratios) in ratioSets {
                    for threshold in options.magCacheThresholds ?? p.defaultThresholds ?? [] {
                        do { plan.append((label, threshold, .magCache(try MagCacheConfiguration(magRatios: ratios, threshold: threshold)))) } catch {
                            throw .teaCache(error)
                        }
                    }
                }
            case .taylorSeer, .easyCache, .dbCache, .forecast:
                let published = family.family.magCachePresets.first.map { ("magcache \($0.name) ratios", $0.magRatios) }
                // As above: nothing to calibrate in a run of fewer than 2 steps.
                let calibrated = (try? uncached.magRatios.ratios()).map { ("magcache calibrated", $0.ratios) }
                plan += try Self.newPolicyRows(
                    p, blocks: workload.blockCount,
                    teaCache: sets.first.map { ($0.label, $0.preset, $0.preset.defaultThreshold) },
                    magCache: published ?? calibrated,
                    magThreshold: options.magCacheThresholds?.first ?? DemoPolicy.magCache.defaultThresholds?.first ?? 0.06,
                    thresholds: p == .easyCache ? options.easyCacheThresholds : p == .dbCache ? options.dbCacheThresholds : nil)
            }
        }

        // The rounds: round k's uncached wall time is the reference of every cached run of round k.
        var uncachedWalls = [uncached.wallSeconds]
        var cachedWalls = [[Double]](repeating: [], count: plan.count)
        var firstRows = [DemoRow?](repeating: nil, count: plan.count)
        for timed in Self.runOrder(rows: plan.count, repeats: options.repeats) {
            let suffix = timed.round == 0 ? "" : " (\(timed.round + 1)/\(options.repeats))"
            guard let index = timed.row else {
                if timed.round > 0 {   // round 1's uncached run is done above
                    let again = try run("uncached" + suffix, steps: workload.steps, progress: progress) { p throws(DemoError) in
                        try workload.runUncached(inputSeed: nil, progress: p)
                    } wall: { $0.wallSeconds }
                    uncachedWalls.append(again.wallSeconds)
                }
                continue
            }
            let (setLabel, threshold, policy) = plan[index]
            let label = "\(setLabel) δ=\(String(format: "%.3g", threshold))"
            let cached = try run(label + suffix, steps: workload.steps, progress: progress) { p throws(DemoError) in
                try workload.runCached(policy, progress: p)
            } wall: { $0.wallSeconds }
            cachedWalls[index].append(cached.wallSeconds)
            // The decisions and the latent do not depend on the round: the first run gives the row, its chart and trace.
            guard timed.round == 0 else { continue }
            let cmp = try LatentComparison(cached.latent, reference: uncached.latent)
            let s = cached.trace.summary
            var row = DemoRow(coefficients: setLabel, threshold: threshold, computed: s.computed, calls: s.calls,
                              wallSeconds: cached.wallSeconds, uncachedWallSeconds: uncached.wallSeconds,
                              relativeL1: cmp.relativeL1, psnr: cmp.psnr)
            if case .firstBlock = policy, let n = workload.blockCount, n > 0 { row.firstBlockShare = 1 / Double(n) }
            if case .dbCache(let c) = policy, let n = workload.blockCount, n > 0 {
                row.firstBlockShare = Double(min(n, c.frontBlocks + c.backBlocks)) / Double(n)
            }
            firstRows[index] = row
            let stem = slug(setLabel) + "-t" + String(format: "%.3g", threshold)
            let title = "\(family.name): \(setLabel), threshold \(String(format: "%.3g", threshold)) — "
                + "\(s.computed)/\(s.calls) computed"
            files.append(try write(Data(TraceChart.svg(trace: cached.trace, threshold: threshold, title: title).utf8),
                                   to: folder.appendingPathComponent(stem + ".svg")))
            let trace: Data
            do { trace = try cached.trace.jsonData() } catch { throw DemoError.wrap(error) }
            files.append(try write(trace, to: folder.appendingPathComponent(stem + ".trace.json")))
        }
        let fastestUncached = uncachedWalls.min() ?? uncached.wallSeconds
        let rows = plan.indices.compactMap { i -> DemoRow? in
            guard var row = firstRows[i] else { return nil }
            row.wallSeconds = cachedWalls[i].min() ?? row.wallSeconds
            row.uncachedWallSeconds = fastestUncached
            row.wallSamples = cachedWalls[i]
            row.uncachedWallSamples = uncachedWalls
            return row
        }

        let overhead = try workload.measureDecisionOverhead(
            overheadConfiguration, repeats: options.overheadRepeats,
            forwardSeconds: DemoStatistics.median(uncached.forwardSeconds))
        let report = DemoReport(summary: workload.summary, steps: workload.steps, calls: calls,
                                uncachedWallSeconds: fastestUncached, calibration: fit, calibrationProblem: problem,
                                overhead: overhead, rows: rows, files: files, repeats: options.repeats,
                                othersCPUShare: load.othersShare(), uncachedWallSamples: uncachedWalls)
        files.append(try write(Data((report.render() + "\n").utf8), to: folder.appendingPathComponent("demo-report.txt")))
        var final = report
        final.files = files
        return final
    }

    /// One timed run of the demo: the uncached run (`row == nil`) or cached row `row` of the plan, in
    /// round `round` (0-based).
    struct TimedRun: Equatable, Sendable {
        var round: Int
        var row: Int?
    }

    /// The order of the timed runs: `repeats` rounds, each one uncached run followed by every cached row
    /// once — in plan order in even rounds, reversed in odd ones.
    ///
    /// Why this order: machine load drifts (other processes start and stop), and the old order — every
    /// uncached run first, every cached run after — let a busy spell land on one side of the ratio only.
    /// Here each cached run's reference is the uncached run of its own round, at most one round earlier,
    /// so a drift slower than a round slows both sides alike, and ``DemoRow/measuredSpeedup`` takes the
    /// median of these same-round ratios. One uncached run per round, not one per cached run, keeps the
    /// demo at `repeats × (1 + rows)` runs (an uncached run before each row would nearly double it).
    /// Reversing odd rounds puts every row, on average over two rounds, equally far from its reference,
    /// so no row is always the one measured longest after the uncached run.
    static func runOrder(rows: Int, repeats: Int) -> [TimedRun] {
        (0..<max(repeats, 0)).flatMap { round in
            let order = round % 2 == 0 ? Array(0..<max(rows, 0)) : Array((0..<max(rows, 0)).reversed())
            return [TimedRun(round: round, row: nil)] + order.map { TimedRun(round: round, row: $0) }
        }
    }

    /// Runs `body` with a progress bar labelled `label`.
    static func run<R>(_ label: String, steps: Int, progress: ProgressFactory,
                       _ body: (@escaping StepProgress) throws(DemoError) -> R, wall: (R) -> Double) throws(DemoError) -> R {
        let bar = progress(label)
        let result = try body { bar.update(step: $0, total: $1, elapsed: $2) }
        bar.finish(steps: steps, wallSeconds: wall(result))
        return result
    }

    /// A file-name-safe version of a label.
    static func slug(_ s: String) -> String {
        String(s.lowercased().map { $0.isLetter || $0.isNumber || $0 == "." ? $0 : "-" })
    }

    static func encode(_ samples: [CalibrationSample]) throws(DemoError) -> Data {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        e.nonConformingFloatEncodingStrategy = .convertToString(positiveInfinity: "inf", negativeInfinity: "-inf", nan: "nan")
        do { return try e.encode(samples) } catch { throw .io("cannot encode calibration pairs: \(error)") }
    }

    /// Writes `data` atomically (``AtomicFile``) and returns the path.
    static func write(_ data: Data, to url: URL) throws(DemoError) -> String {
        try AtomicFile.write(data, to: url)
        return url.path
    }
}

extension DemoRunner {
    /// The runs of the TaylorSeer, EasyCache, DBCache and forecast rows: (label, threshold column, policy).
    /// DBCache (one front block) has no rows on a single-block model, whose middle would be empty.
    static func newPolicyRows(
        _ p: DemoPolicy, blocks: Int?, teaCache: (label: String, preset: TeaCachePreset, threshold: Double)?,
        magCache: (label: String, ratios: [Double])?, magThreshold: Double, thresholds: [Double]? = nil
    ) throws(DemoError) -> [(label: String, threshold: Double, policy: CachePolicy)] {
        do {
            switch p {
            case .taylorSeer:
                return try (p.defaultThresholds ?? []).flatMap { interval throws(CacheError) in
                    try [1, 2].map { order throws(CacheError) in
                        ("taylorseer order \(order) (threshold = interval)", interval,
                         CachePolicy.taylorSeer(try TaylorSeerConfiguration(cacheInterval: Int(interval), disableBeforeStep: 1,
                                                                            maxOrder: order)))
                    }
                }
            case .easyCache:
                return try (thresholds ?? p.defaultThresholds ?? []).map { t throws(CacheError) in
                    ("easycache", t, CachePolicy.easyCache(try EasyCacheConfiguration(threshold: t)))
                }
            case .dbCache:
                guard let blocks else { throw DemoError.invalidOption("--policy dbcache needs a model that runs block by block") }
                // One front block and nothing in the middle: computing and reusing would be the same work.
                guard blocks >= 2 else { return [] }
                return try (thresholds ?? p.defaultThresholds ?? []).map { t throws(CacheError) in
                    ("dbcache F1B0", t, CachePolicy.dbCache(try DBCacheConfiguration(frontBlocks: 1, backBlocks: 0, threshold: t,
                                                                                      warmupSteps: 1)))
                }
            case .forecast:
                var bases: [(String, Double, CachePolicy)] = []
                if let teaCache {
                    bases.append(("teacache \(teaCache.label)", teaCache.threshold, .teaCache(try .faithful(teaCache.preset, threshold: teaCache.threshold))))
                }
                if let magCache {
                    bases.append((magCache.label, magThreshold, .magCache(try MagCacheConfiguration(magRatios: magCache.ratios, threshold: magThreshold))))
                }
                var out: [(label: String, threshold: Double, policy: CachePolicy)] = []
                for (label, t, base) in bases {
                    out.append(("\(label) stale", t, base))
                    for order in [1, 2] { out.append(("\(label) +forecast\(order)", t, .forecasting(base, try ResidualForecast(order: order)))) }
                }
                return out
            case .teaCache, .firstBlock, .magCache:
                return []
            }
        } catch let e as DemoError {
            throw e
        } catch {
            throw DemoError.wrap(error)
        }
    }
}

/// How long a demo will take at most: every run computing every call at the warm-up's forward time.
public struct RunEstimate: Sendable, Equatable {
    /// Seconds of one forward (measured in the warm-up).
    public var forwardSeconds: Double
    /// Sampling steps per run.
    public var steps: Int
    /// Model calls per step (2 with CFG).
    public var callsPerStep: Int
    /// Sampling runs (uncached and cached, times the repeats).
    public var runs: Int

    /// Model calls in all.
    public var calls: Double { Double(steps) * Double(callsPerStep) * Double(runs) }
    /// Seconds if no call were skipped.
    public var upperBoundSeconds: Double { calls * forwardSeconds }

    /// "estimate: 14 runs × 28 steps × 1 call = 392 forwards of 0.42 s: at most 2.7 min (cached runs skip
    /// some); press Ctrl-C to stop, or lower --steps or --repeats".
    public var sentence: String {
        let call = callsPerStep == 1 ? "1 call" : "\(callsPerStep) calls"
        return "estimate: \(runs) runs × \(steps) steps × \(call) = \(Self.count(calls)) forwards of "
            + String(format: "%.3g s", forwardSeconds) + ": at most \(Self.duration(upperBoundSeconds)) "
            + "(cached runs skip some); press Ctrl-C to stop, or lower --steps or --repeats"
    }

    /// A count with thousands separators.
    static func count(_ x: Double) -> String {
        guard x < 1e15 else { return String(format: "%.3g", x) }
        let digits = String(Int(x.rounded()))
        var out = ""
        for (i, c) in digits.reversed().enumerated() {
            if i > 0, i % 3 == 0 { out.append(",") }
            out.append(c)
        }
        return String(out.reversed())
    }

    /// Seconds in the largest fitting unit: "45 s", "2.7 min", "3.1 h", "87 days".
    public static func duration(_ seconds: Double) -> String {
        switch seconds {
        case ..<60: return String(format: "%.0f s", seconds)
        case ..<3600: return String(format: "%.2g min", seconds / 60)
        case ..<172_800: return String(format: "%.2g h", seconds / 3600)
        default: return String(format: "%.0f days", seconds / 86_400)
        }
    }
}
