/// Everything that determines TeaCache's decisions: polynomial, threshold, schedule, guards, and mode.
///
/// The initialiser validates; decoding from JSON validates too. Use ``faithful(coefficients:threshold:schedule:)``
/// to reproduce the reference repository exactly, ``guarded(coefficients:threshold:schedule:calibratedRange:)``
/// for the same with safety guards, and ``replaying(_:basedOn:)`` to follow an exported schedule.
public struct TeaCacheConfiguration: Codable, Sendable, Equatable {
    /// The rescaling polynomial (validated: five finite coefficients, highest power first).
    public private(set) var polynomial: RescalingPolynomial
    /// The accumulated-distance threshold δ: skip iff the accumulator is strictly below it.
    /// 0 turns caching off (every call computed, even where the polynomial is negative).
    public private(set) var threshold: Double
    /// Forced-compute steps.
    public private(set) var schedule: TeaCacheSchedule
    /// Optional guards (off in faithful mode).
    public private(set) var guards: TeaCacheGuards
    /// One decision per batch element instead of one per call (not in the reference; needs a
    /// ``BatchSelectableState``).
    public private(set) var perSample: Bool
    /// When set, decisions are read from this schedule instead of the accumulator.
    public private(set) var replay: TeaCacheReplaySchedule?

    /// The coefficients, highest power first.
    public var coefficients: [Double] { polynomial.coefficients }

    /// A validated configuration.
    /// - Throws: ``CacheError/invalidCoefficients(_:)``, ``CacheError/invalidThreshold(_:)`` or
    ///   ``CacheError/invalidSchedule(_:)``.
    public init(
        coefficients: [Double], threshold: Double, schedule: TeaCacheSchedule = .standard,
        guards: TeaCacheGuards = .off, perSample: Bool = false, replay: TeaCacheReplaySchedule? = nil
    ) throws(CacheError) {
        self.polynomial = try RescalingPolynomial(coefficients: coefficients)
        self.threshold = threshold
        self.schedule = schedule
        self.guards = guards
        self.perSample = perSample
        self.replay = replay
        try validate()
    }

    /// Re-checks threshold, schedule and guards.
    public func validate() throws(CacheError) {
        guard threshold.isFinite, threshold >= 0 else { throw .invalidThreshold(threshold) }
        try schedule.validate()
        if perSample && schedule.sharedCounter != nil {
            throw .invalidSchedule("a shared counter (\(schedule.sharedCounter!.rawValue)) counts calls: use whole-batch decisions")
        }
        if let r = guards.calibratedRange, !(r.lowerBound.isFinite && r.upperBound.isFinite) {
            throw .invalidSchedule("calibratedRange \(r) must have finite bounds")
        }
    }

    /// The reference algorithm, bit for bit: no guards, whole-batch decisions.
    public static func faithful(
        coefficients: [Double], threshold: Double, schedule: TeaCacheSchedule = .standard
    ) throws(CacheError) -> TeaCacheConfiguration {
        try TeaCacheConfiguration(coefficients: coefficients, threshold: threshold, schedule: schedule)
    }

    /// The reference algorithm from a preset (its recommended schedule; its default threshold unless given).
    public static func faithful(
        _ preset: TeaCachePreset, threshold: Double? = nil
    ) throws(CacheError) -> TeaCacheConfiguration {
        try TeaCacheConfiguration(coefficients: preset.coefficients, threshold: threshold ?? preset.defaultThreshold,
                                  schedule: preset.schedule)
    }

    /// The reference algorithm plus guards: non-finite distances compute, and (when given) distances
    /// outside the calibrated range compute.
    public static func guarded(
        coefficients: [Double], threshold: Double, schedule: TeaCacheSchedule = .standard,
        calibratedRange: ClosedRange<Double>? = nil
    ) throws(CacheError) -> TeaCacheConfiguration {
        try TeaCacheConfiguration(
            coefficients: coefficients, threshold: threshold, schedule: schedule,
            guards: TeaCacheGuards(nonFiniteDistanceComputes: true, calibratedRange: calibratedRange))
    }

    /// Follows `schedule` exactly; the polynomial of `base` (if any) is still evaluated for the trace.
    public static func replaying(
        _ schedule: TeaCacheReplaySchedule, basedOn base: TeaCacheConfiguration? = nil
    ) throws(CacheError) -> TeaCacheConfiguration {
        try TeaCacheConfiguration(
            coefficients: base?.coefficients ?? [0, 0, 0, 0, 0], threshold: base?.threshold ?? 0,
            schedule: base?.schedule ?? .standard, guards: base?.guards ?? .off,
            perSample: schedule.isPerSample, replay: schedule)
    }

    /// A copy with another threshold (validated).
    public func withThreshold(_ threshold: Double) throws(CacheError) -> TeaCacheConfiguration {
        var c = self
        c.threshold = threshold
        try c.validate()
        return c
    }

    /// A copy with per-sample decisions switched on or off.
    public func withPerSample(_ on: Bool) -> TeaCacheConfiguration {
        var c = self
        c.perSample = on
        return c
    }

    private enum CodingKeys: String, CodingKey {
        case coefficients, threshold, schedule, guards, perSample, replay
    }

    /// Decodes and validates; invalid values become `DecodingError.dataCorrupted` with the reason.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let coefficients = try c.decode([Double].self, forKey: .coefficients)
        let threshold = try c.decode(Double.self, forKey: .threshold)
        let schedule = try c.decodeIfPresent(TeaCacheSchedule.self, forKey: .schedule) ?? .standard
        let guards = try c.decodeIfPresent(TeaCacheGuards.self, forKey: .guards) ?? .off
        let perSample = try c.decodeIfPresent(Bool.self, forKey: .perSample) ?? false
        let replay = try c.decodeIfPresent(TeaCacheReplaySchedule.self, forKey: .replay)
        do {
            try self.init(coefficients: coefficients, threshold: threshold, schedule: schedule,
                          guards: guards, perSample: perSample, replay: replay)
        } catch {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: error.description))
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(coefficients, forKey: .coefficients)
        try c.encode(threshold, forKey: .threshold)
        try c.encode(schedule, forKey: .schedule)
        try c.encode(guards, forKey: .guards)
        try c.encode(perSample, forKey: .perSample)
        try c.encodeIfPresent(replay, forKey: .replay)
    }
}
