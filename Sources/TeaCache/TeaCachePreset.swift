import Foundation

/// A named, documented set of TeaCache coefficients: what to compare, how to rescale, and what
/// thresholds buy. Built-in presets carry the reference repository's values (see
/// `TeaCachePreset+BuiltIn.swift`); calibration produces new ones (``Calibration/preset(named:from:defaultThreshold:modulatedInput:provenance:schedule:)``).
public struct TeaCachePreset: Codable, Sendable, Equatable {
    /// One published (threshold, speedup) pair.
    public struct ThresholdSpeedup: Codable, Sendable, Equatable {
        /// The threshold δ.
        public var threshold: Double
        /// The end-to-end speedup reported for it.
        public var speedup: Double

        /// A pair.
        public init(threshold: Double, speedup: Double) {
            self.threshold = threshold
            self.speedup = speedup
        }
    }

    /// A short identifier, e.g. `"my-model"`.
    public var name: String
    /// Rescaling coefficients, highest power first (five values).
    public var coefficients: [Double]
    /// The threshold the reference script uses by default.
    public var defaultThreshold: Double
    /// Published threshold → speedup pairs (may be empty).
    public var speedups: [ThresholdSpeedup]
    /// The range of input distances the polynomial was fitted on, when known.
    public var calibratedRange: ClosedRange<Double>?
    /// Which tensor the distances are measured on (e.g. "transformer_blocks[0].norm1(h_in, temb)[0]").
    public var modulatedInput: String
    /// Where the numbers come from (repository file, calibration run...).
    public var provenance: String
    /// Forced-compute steps recommended with these coefficients.
    public var schedule: TeaCacheSchedule

    /// A validated preset.
    /// - Throws: ``CacheError/invalidPreset(_:)`` for bad coefficients, threshold, speedups or range.
    public init(
        name: String, coefficients: [Double], defaultThreshold: Double, speedups: [ThresholdSpeedup] = [],
        calibratedRange: ClosedRange<Double>? = nil, modulatedInput: String, provenance: String,
        schedule: TeaCacheSchedule = .standard
    ) throws(CacheError) {
        self.name = name
        self.coefficients = coefficients
        self.defaultThreshold = defaultThreshold
        self.speedups = speedups
        self.calibratedRange = calibratedRange
        self.modulatedInput = modulatedInput
        self.provenance = provenance
        self.schedule = schedule
        try validate()
    }

    /// Checks every field.
    public func validate() throws(CacheError) {
        guard !name.isEmpty else { throw .invalidPreset("the name is empty") }
        do { try RescalingPolynomial.validate(coefficients) } catch { throw .invalidPreset("\(name): \(error)") }
        guard defaultThreshold.isFinite, defaultThreshold >= 0 else {
            throw .invalidPreset("\(name): default threshold \(defaultThreshold) must be finite and >= 0")
        }
        for s in speedups where !(s.threshold.isFinite && s.threshold >= 0 && s.speedup.isFinite && s.speedup > 0) {
            throw .invalidPreset("\(name): speedup entry \(s.threshold) → \(s.speedup) must be finite, threshold >= 0, speedup > 0")
        }
        if let r = calibratedRange, !(r.lowerBound.isFinite && r.upperBound.isFinite) {
            throw .invalidPreset("\(name): calibrated range \(r) must be finite")
        }
        do { try schedule.validate() } catch { throw .invalidPreset("\(name): \(error)") }
    }

    /// A configuration using this preset (faithful: no guards). Pass `guarded: true` to compute when
    /// the distance is non-finite or outside ``calibratedRange``.
    public func configuration(threshold: Double? = nil, guarded: Bool = false) throws(CacheError) -> TeaCacheConfiguration {
        try TeaCacheConfiguration(
            coefficients: coefficients, threshold: threshold ?? defaultThreshold, schedule: schedule,
            guards: guarded ? TeaCacheGuards(nonFiniteDistanceComputes: true, calibratedRange: calibratedRange) : .off)
    }

    /// The preset as pretty-printed JSON.
    public func jsonData() throws(CacheError) -> Data {
        let e = JSONEncoder()
        e.outputFormatting = [.prettyPrinted, .sortedKeys]
        do { return try e.encode(self) } catch { throw .io("could not encode preset \(name): \(error)") }
    }

    /// Reads and validates a preset from JSON.
    public init(jsonData: Data) throws(CacheError) {
        do { self = try JSONDecoder().decode(TeaCachePreset.self, from: jsonData) } catch let e as CacheError {
            throw e
        } catch {
            throw .invalidPreset("not a valid preset JSON: \(error)")
        }
        try validate()
    }

    /// Writes the preset to `url`.
    public func save(to url: URL) throws(CacheError) {
        let data = try jsonData()
        do { try data.write(to: url, options: .atomic) } catch { throw .io("could not write \(url.path): \(error)") }
    }

    /// Loads and validates a preset from `url`.
    public static func load(from url: URL) throws(CacheError) -> TeaCachePreset {
        let data: Data
        do { data = try Data(contentsOf: url) } catch { throw .io("could not read \(url.path): \(error)") }
        return try TeaCachePreset(jsonData: data)
    }
}
