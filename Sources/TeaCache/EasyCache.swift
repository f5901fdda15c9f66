import Tensors

/// EasyCache (Zhou et al., 2025; also in stable-diffusion.cpp): no calibrated coefficients. The block stack's
/// own output/input transformation rate, measured between computed calls, turns the input's change into an
/// estimate of the output's relative change; while the accumulated estimate stays under the threshold, the
/// stored residual (stack output minus stack input) stands in.
///
/// Per cache entry, with `x` the block-stack input (stream 0) and `v` its output, means of absolute values
/// over all elements (`|·|` below, Float32 means as ``RelativeL1``):
/// - the first ``warmupSteps(forSteps:)`` steps compute, and so does a call without a stored residual,
///   without a previous input or before a rate was measured (two computed calls);
/// - otherwise `E += k · |x − x_prev| / |v_c|` (`x_prev` the previous call's input, computed or skipped;
///   `v_c` the output of the last computed call; `k` the rate) and the call skips iff `E < threshold`
///   (strict) and fewer than ``maxConsecutiveSkips`` skips precede it; a compute resets `E` to 0;
/// - a computed call measures `k = |v − v_c| / |x − x_c|` against the previous computed call (`x_c`, `v_c`)
///   and keeps its own `x`, `v` and residual `v − x` of every stream.
public struct EasyCacheConfiguration: Codable, Sendable, Equatable {
    /// The accumulated relative output change below which a call skips (default 0.05: 5 %).
    public private(set) var threshold: Double
    /// The fraction of initial steps that always compute (default 0.2).
    public private(set) var warmupRatio: Double
    /// The most consecutive skips (nil: no limit).
    public private(set) var maxConsecutiveSkips: Int?

    /// A validated configuration.
    /// - Throws: ``CacheError/invalidThreshold(_:)`` or ``CacheError/invalidSchedule(_:)``.
    public init(threshold: Double = 0.05, warmupRatio: Double = 0.2, maxConsecutiveSkips: Int? = nil) throws(CacheError) {
        self.threshold = threshold
        self.warmupRatio = warmupRatio
        self.maxConsecutiveSkips = maxConsecutiveSkips
        try validate()
    }

    /// Re-checks every field.
    public func validate() throws(CacheError) {
        guard threshold.isFinite, threshold >= 0 else { throw .invalidThreshold(threshold) }
        guard warmupRatio.isFinite, (0...1).contains(warmupRatio) else {
            throw .invalidSchedule("EasyCache warmupRatio is \(warmupRatio); use a value from 0 to 1")
        }
        if let m = maxConsecutiveSkips, m < 1 { throw .invalidSchedule("EasyCache maxConsecutiveSkips is \(m); use 1 or more, or nil") }
    }

    /// A copy with another threshold (validated).
    public func withThreshold(_ threshold: Double) throws(CacheError) -> EasyCacheConfiguration {
        try EasyCacheConfiguration(threshold: threshold, warmupRatio: warmupRatio, maxConsecutiveSkips: maxConsecutiveSkips)
    }

    /// The steps that always compute in an `n`-step run: `Int(warmupRatio·n + 0.5)`.
    public func warmupSteps(forSteps n: Int) -> Int { Int(warmupRatio * Double(n) + 0.5) }

    private enum CodingKeys: String, CodingKey { case threshold, warmupRatio, maxConsecutiveSkips }

    /// Decodes (missing fields take the defaults) and validates.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        do {
            try self.init(threshold: try c.decodeIfPresent(Double.self, forKey: .threshold) ?? 0.05,
                          warmupRatio: try c.decodeIfPresent(Double.self, forKey: .warmupRatio) ?? 0.2,
                          maxConsecutiveSkips: try c.decodeIfPresent(Int.self, forKey: .maxConsecutiveSkips))
        } catch let e as CacheError {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: e.description))
        }
    }
}

/// EasyCache as a ``StepCachePolicy`` (see ``EasyCacheConfiguration``); a skip adds the stored residual of
/// every stream.
public struct EasyCachePolicy: StepCachePolicy {
    private struct BranchState: Sendable {
        var previousInput: Tensor?
        var computedInput: Tensor?
        var computedOutput: Tensor?
        var rate: Double?
        var accumulated = 0.0
        var skipStreak = 0
    }

    /// The configuration.
    public let configuration: EasyCacheConfiguration
    private var steps = 1
    private var branches: [BranchKey: BranchState] = [:]

    /// A fresh policy.
    public init(configuration: EasyCacheConfiguration) { self.configuration = configuration }

    /// `easycache`.
    public var name: String { "easycache" }

    /// Forgets every branch.
    public mutating func beginRun(steps: Int) throws(CacheError) {
        guard steps >= 1 else { throw .invalidStepCount(steps) }
        try configuration.validate()
        self.steps = steps
        branches = [:]
    }

    /// Accumulates the rate-scaled input change and compares it with the threshold.
    public mutating func decide(_ call: CacheCall) throws(CacheError) -> [CacheDecision] {
        guard let x = call.regionInput.first else { throw .shapeMismatch("EasyCache needs the block-stack input") }
        var s = branches[call.branch] ?? BranchState()
        let previous = s.previousInput
        s.previousInput = x
        func compute(_ reason: CacheDecision.Reason, forced: Bool, compared: Double? = nil) -> [CacheDecision] {
            s.accumulated = 0
            s.skipStreak = 0
            branches[call.branch] = s
            return [CacheDecision(action: .compute, forced: forced, reason: reason,
                                  details: .easyCache(rate: s.rate, accumulated: compared, accumulatedAfter: 0))]
        }
        if call.step < configuration.warmupSteps(forSteps: steps) { return compute(.retainedStep, forced: true) }
        if call.mustCompute { return compute(.stepMask, forced: true) }
        if configuration.threshold == 0 { return compute(.cacheDisabled, forced: true) }
        guard call.hasStoredResidual, let previous, let rate = s.rate, let output = s.computedOutput else {
            return compute(.noPreviousInput, forced: true)
        }
        if let cap = configuration.maxConsecutiveSkips, s.skipStreak >= cap { return compute(.maxConsecutiveSkips, forced: true) }
        let change = Self.ratio(try Self.meanAbsoluteDifference(x, previous), output.meanAbsolute())
        let accumulated = s.accumulated + rate * change
        guard accumulated < configuration.threshold else { return compute(.threshold, forced: false, compared: accumulated) }
        s.accumulated = accumulated
        s.skipStreak += 1
        branches[call.branch] = s
        return [CacheDecision(action: .skip, forced: false, reason: .threshold,
                              details: .easyCache(rate: rate, accumulated: accumulated, accumulatedAfter: accumulated))]
    }

    /// Measures the rate against the previous computed call and keeps this call's input and output.
    public mutating func didCompute(_ call: CacheCall, residuals: [Tensor], output: Tensor) throws(CacheError) {
        guard let x = call.regionInput.first, let r = residuals.first else { return }
        var s = branches[call.branch] ?? BranchState()
        let v: Tensor
        do { v = try x + r } catch { throw .tensor(error) }
        if let xc = s.computedInput, let vc = s.computedOutput {
            let dx = try Self.meanAbsoluteDifference(x, xc)
            if dx > 0 { s.rate = Self.ratio(try Self.meanAbsoluteDifference(v, vc), dx) }
        }
        s.computedInput = x
        s.computedOutput = v
        branches[call.branch] = s
    }

    /// Forgets the branch.
    public mutating func reset(_ branch: BranchKey, batch: Int) { branches[branch] = nil }

    private static func meanAbsoluteDifference(_ a: Tensor, _ b: Tensor) throws(CacheError) -> Double {
        guard a.shape == b.shape else { throw .shapeMismatch("EasyCache: input \(a.shape) differs from the stored \(b.shape)") }
        do { return try Tensor.meanAbsoluteDifference(a, b) } catch { throw .tensor(error) }
    }

    /// `a / b` as Float32 means give it (∞ for a zero denominator).
    private static func ratio(_ a: Double, _ b: Double) -> Double {
        Double(Float(a) / Float(b))
    }
}
