import Tensors

/// MagCache (Ma et al.; diffusers `MagCacheConfig`): per-step magnitude ratios of the block-stack residual,
/// calibrated once per model, decide when the residual of the last computed step can stand in.
///
/// Per call and cache entry at per-branch step `i` (diffusers 0.42.1 `MagCacheHeadHook`): with the ratios
/// interpolated to the run's step count (``ratios(forSteps:)``) and `retention = Int(retentionRatio·N + 0.5)`,
/// steps `i < retention` compute; later ones multiply the accumulated ratio by `ratio[i]`, count a step and
/// add `|1 − ratio|` to the accumulated error, and skip iff a residual is cached, the error is `≤ threshold`
/// and at most ``maxSkipSteps`` steps were accumulated; a compute resets the accumulators. The accumulators are
/// Float32, as the reference's tensor arithmetic. A skip adds the cached residual to stream 0 only; the
/// residual is stream 0's block-stack output minus its input.
public struct MagCacheConfiguration: Codable, Sendable, Equatable {
    /// The accumulated-error threshold (diffusers' default 0.06).
    public private(set) var threshold: Double
    /// The most consecutive accumulated steps a skip may have (diffusers' default 3).
    public private(set) var maxSkipSteps: Int
    /// The fraction of initial steps that always compute (diffusers' default 0.2).
    public private(set) var retentionRatio: Double
    /// The calibrated magnitude ratios, one per step of the calibration run (the first is 1).
    public private(set) var magRatios: [Double]
    /// Which calls advance the step index that picks the ratio (default ``StepIndexRule/everyCall``).
    public var stepIndex: StepIndexRule = .everyCall

    /// Which calls advance MagCache's step index.
    public enum StepIndexRule: String, Codable, Sendable {
        /// Every call: the index is the per-branch step (diffusers on a model with two or more blocks).
        case everyCall
        /// Computed calls only: during a run of skips the same ratio is multiplied in again. This is what
        /// diffusers 0.42.1's hook does on a model with a single block (its head and tail hooks sit on the same
        /// block and a skip returns before the tail hook advances the index).
        case computedCallsOnly
    }

    /// A validated configuration.
    /// - Throws: ``CacheError/invalidThreshold(_:)`` or ``CacheError/invalidSchedule(_:)``.
    public init(magRatios: [Double], threshold: Double = 0.06, maxSkipSteps: Int = 3,
                retentionRatio: Double = 0.2) throws(CacheError) {
        self.magRatios = magRatios
        self.threshold = threshold
        self.maxSkipSteps = maxSkipSteps
        self.retentionRatio = retentionRatio
        try validate()
    }

    /// Re-checks every field.
    public func validate() throws(CacheError) {
        guard threshold.isFinite, threshold >= 0 else { throw .invalidThreshold(threshold) }
        guard maxSkipSteps >= 0 else { throw .invalidSchedule("maxSkipSteps is \(maxSkipSteps); use 0 or more") }
        guard retentionRatio.isFinite, (0...1).contains(retentionRatio) else {
            throw .invalidSchedule("retentionRatio is \(retentionRatio); use a value from 0 to 1")
        }
        guard !magRatios.isEmpty, magRatios.count <= FlowMatchEulerSampler.maximumSteps,
              magRatios.allSatisfy({ $0.isFinite && $0 > 0 }) else {
            throw .invalidSchedule("magRatios needs 1 to \(FlowMatchEulerSampler.maximumSteps) finite positive values, got \(magRatios.count)")
        }
    }

    /// A copy with another threshold (validated).
    public func withThreshold(_ threshold: Double) throws(CacheError) -> MagCacheConfiguration {
        var c = try MagCacheConfiguration(magRatios: magRatios, threshold: threshold, maxSkipSteps: maxSkipSteps,
                                          retentionRatio: retentionRatio)
        c.stepIndex = stepIndex
        return c
    }

    /// The ratios for an `n`-step run: the calibrated ones, or their nearest-neighbour interpolation
    /// when the run has another step count (diffusers' `nearest_interp`: index `round(i·(L−1)/(n−1))` in
    /// Float32, halves to even; the last ratio for `n = 1`), as Float32 values.
    public func ratios(forSteps n: Int) -> [Float] {
        let src = magRatios.map(Float.init)
        guard n != src.count else { return src }
        guard n > 1 else { return [src[src.count - 1]] }
        let scale = Float(Double(src.count - 1) / Double(n - 1))
        return (0..<n).map { i in src[min(Int((Float(i) * scale).rounded(.toNearestOrEven)), src.count - 1)] }
    }

    /// The first step that may skip in an `n`-step run.
    public func retentionSteps(forSteps n: Int) -> Int { Int(retentionRatio * Double(n) + 0.5) }

    private enum CodingKeys: String, CodingKey { case threshold, maxSkipSteps, retentionRatio, magRatios, stepIndex }

    /// Encodes every field; ``stepIndex`` only when it is not the default.
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(threshold, forKey: .threshold)
        try c.encode(maxSkipSteps, forKey: .maxSkipSteps)
        try c.encode(retentionRatio, forKey: .retentionRatio)
        try c.encode(magRatios, forKey: .magRatios)
        if stepIndex != .everyCall { try c.encode(stepIndex, forKey: .stepIndex) }
    }

    /// Decodes and validates.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        do {
            try self.init(magRatios: try c.decode([Double].self, forKey: .magRatios),
                          threshold: try c.decodeIfPresent(Double.self, forKey: .threshold) ?? 0.06,
                          maxSkipSteps: try c.decodeIfPresent(Int.self, forKey: .maxSkipSteps) ?? 3,
                          retentionRatio: try c.decodeIfPresent(Double.self, forKey: .retentionRatio) ?? 0.2)
            stepIndex = try c.decodeIfPresent(StepIndexRule.self, forKey: .stepIndex) ?? .everyCall
        } catch let e as CacheError {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: e.description))
        }
    }
}

/// MagCache as a ``StepCachePolicy`` (see ``MagCacheConfiguration``): the decision rule per cache entry, which
/// reads no tensor; a skip adds the stored block-stack residual of stream 0.
public struct MagCachePolicy: StepCachePolicy {
    private struct SlotState: Sendable {
        var ratio: Float = 1
        var error: Float = 0
        var accumulatedSteps = 0
    }

    /// The configuration.
    public let configuration: MagCacheConfiguration
    /// The steps of the run.
    public let steps: Int
    /// The ratios interpolated to ``steps``.
    public let ratios: [Float]
    private var slots: [BranchKey: SlotState] = [:]
    private var computedCalls: [BranchKey: Int] = [:]

    /// A fresh policy for an `steps`-step run.
    /// - Throws: ``CacheError/invalidStepCount(_:)`` when `steps < 1`.
    public init(configuration: MagCacheConfiguration, steps: Int) throws(CacheError) {
        guard steps >= 1 else { throw .invalidStepCount(steps) }
        try configuration.validate()
        self.configuration = configuration
        self.steps = steps
        self.ratios = configuration.ratios(forSteps: steps)
    }

    /// Forgets the accumulators of `branch`.
    public mutating func reset(_ branch: BranchKey) {
        slots[branch] = nil
        computedCalls[branch] = nil
    }

    /// Decides per-branch step `step` of `branch`; `hasResidual` tells whether a residual is cached.
    /// The details: the step's ratio, the accumulated error compared with the threshold, and the error kept
    /// after the decision.
    public mutating func decide(step: Int, branch: BranchKey, hasResidual: Bool) throws(CacheError) -> CacheDecision {
        try decide(step: step, branch: branch, hasResidual: hasResidual, mustCompute: false)
    }

    private mutating func decide(step: Int, branch: BranchKey, hasResidual: Bool, mustCompute: Bool) throws(CacheError) -> CacheDecision {
        guard step >= 0, step < steps else { throw .stepOutOfRange(branch: branch, step: step, steps: steps) }
        let index = configuration.stepIndex == .everyCall ? step : computedCalls[branch, default: 0]
        let decision = decide(index: index, branch: branch, hasResidual: hasResidual, mustCompute: mustCompute)
        if !decision.skips { computedCalls[branch, default: 0] += 1 }
        return decision
    }

    private mutating func decide(index step: Int, branch: BranchKey, hasResidual: Bool, mustCompute: Bool) -> CacheDecision {
        var s = slots[branch] ?? SlotState()
        defer { slots[branch] = s }
        guard step >= configuration.retentionSteps(forSteps: steps) else {
            return .forcedCompute(.retainedStep, details: .magCache(ratio: nil, accumulatedError: nil, errorAfter: Double(s.error)))
        }
        if mustCompute {
            s = SlotState()
            return .forcedCompute(.stepMask, details: .magCache(ratio: nil, accumulatedError: nil, errorAfter: 0))
        }
        let scale = step < ratios.count ? ratios[step] : 1
        s.ratio *= scale
        s.accumulatedSteps += 1
        s.error += abs(1 - s.ratio)
        let compared = Double(s.error)
        if hasResidual && s.error <= Float(configuration.threshold) && s.accumulatedSteps <= configuration.maxSkipSteps {
            return CacheDecision(action: .skip, forced: false, reason: .threshold,
                                 details: .magCache(ratio: Double(scale), accumulatedError: compared, errorAfter: compared))
        }
        let reason: CacheDecision.Reason = !hasResidual ? .noPreviousInput
            : s.accumulatedSteps > configuration.maxSkipSteps && s.error <= Float(configuration.threshold) ? .maxConsecutiveSkips : .threshold
        s = SlotState()
        return CacheDecision(action: .compute, forced: reason != .threshold, reason: reason,
                             details: .magCache(ratio: Double(scale), accumulatedError: compared, errorAfter: 0))
    }

    /// `magcache`.
    public var name: String { "magcache" }
    /// Stream 0's residual only.
    public var storedStreams: CacheStoredStreams { .first }

    /// A fresh state for `steps` steps.
    public mutating func beginRun(steps: Int) throws(CacheError) {
        self = try MagCachePolicy(configuration: configuration, steps: steps)
    }

    /// ``decide(step:branch:hasResidual:)`` for the call.
    public mutating func decide(_ call: CacheCall) throws(CacheError) -> [CacheDecision] {
        [try decide(step: call.step, branch: call.branch, hasResidual: call.hasStoredResidual, mustCompute: call.mustCompute)]
    }

    /// Forgets the accumulators of `branch`.
    public mutating func reset(_ branch: BranchKey, batch: Int) { reset(branch) }
}
