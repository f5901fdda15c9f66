import Tensors

/// DBCache, cache-dit's dual block cache (`DBCacheConfig`, "Fn/Bn"): the first ``frontBlocks`` blocks run on
/// every call and their residual's relative change decides whether the middle blocks run; the last
/// ``backBlocks`` blocks run on every call too; a skip adds the middle blocks' stored residual of every stream.
///
/// Per cache entry at per-branch step `s` (cache-dit 1.5.3 with separate CFG state): `r = h_Fn − h_in` on
/// stream 0; the first line that applies decides —
/// `s < warmupSteps` computes; ``maxCachedSteps`` cached steps so far computes; ``maxConsecutiveCachedSteps``
/// cached steps in a row computes; a threshold `≤ 0` computes; no `r_c` (the `r` of the last computed call)
/// computes; otherwise `d = mean|r_c − r| / mean|r_c|` (Float32 means, as ``RelativeL1``) and the call skips
/// iff `d < threshold` (strict). A compute keeps `r_c = r`; a skip does not update it.
///
/// With one front block and no back blocks this is First-Block Cache's rule with a strict test, a warm-up and
/// the cached-step limits.
public struct DBCacheConfiguration: Codable, Sendable, Equatable {
    /// Fn: blocks that run before the decision (cache-dit's default 8).
    public private(set) var frontBlocks: Int
    /// Bn: blocks that run after the cached middle (cache-dit's default 0).
    public private(set) var backBlocks: Int
    /// The relative change of the front blocks' residual below which the middle is reused (default 0.08).
    public private(set) var threshold: Double
    /// The first steps that always compute (cache-dit's default 8).
    public private(set) var warmupSteps: Int
    /// The most cached steps per branch in a run (nil: no limit).
    public private(set) var maxCachedSteps: Int?
    /// The most cached steps in a row (nil: no limit).
    public private(set) var maxConsecutiveCachedSteps: Int?

    /// A validated configuration.
    /// - Throws: ``CacheError/invalidThreshold(_:)`` or ``CacheError/invalidSchedule(_:)``.
    public init(frontBlocks: Int = 8, backBlocks: Int = 0, threshold: Double = 0.08, warmupSteps: Int = 8,
                maxCachedSteps: Int? = nil, maxConsecutiveCachedSteps: Int? = nil) throws(CacheError) {
        self.frontBlocks = frontBlocks
        self.backBlocks = backBlocks
        self.threshold = threshold
        self.warmupSteps = warmupSteps
        self.maxCachedSteps = maxCachedSteps
        self.maxConsecutiveCachedSteps = maxConsecutiveCachedSteps
        try validate()
    }

    /// Re-checks every field.
    public func validate() throws(CacheError) {
        guard threshold.isFinite else { throw .invalidThreshold(threshold) }
        guard frontBlocks >= 1 else { throw .invalidSchedule("DBCache frontBlocks is \(frontBlocks); the decision needs 1 or more") }
        guard backBlocks >= 0, warmupSteps >= 0 else {
            throw .invalidSchedule("DBCache backBlocks \(backBlocks) and warmupSteps \(warmupSteps) must be 0 or more")
        }
        for (name, v) in [("maxCachedSteps", maxCachedSteps), ("maxConsecutiveCachedSteps", maxConsecutiveCachedSteps)] {
            if let v, v < 0 { throw .invalidSchedule("DBCache \(name) is \(v); use 0 or more, or nil") }
        }
    }

    /// A copy with another threshold (validated).
    public func withThreshold(_ threshold: Double) throws(CacheError) -> DBCacheConfiguration {
        try DBCacheConfiguration(frontBlocks: frontBlocks, backBlocks: backBlocks, threshold: threshold, warmupSteps: warmupSteps,
                                 maxCachedSteps: maxCachedSteps, maxConsecutiveCachedSteps: maxConsecutiveCachedSteps)
    }

    private enum CodingKeys: String, CodingKey {
        case frontBlocks, backBlocks, threshold, warmupSteps, maxCachedSteps, maxConsecutiveCachedSteps
    }

    /// Decodes (missing fields take cache-dit's defaults) and validates.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        do {
            try self.init(frontBlocks: try c.decodeIfPresent(Int.self, forKey: .frontBlocks) ?? 8,
                          backBlocks: try c.decodeIfPresent(Int.self, forKey: .backBlocks) ?? 0,
                          threshold: try c.decodeIfPresent(Double.self, forKey: .threshold) ?? 0.08,
                          warmupSteps: try c.decodeIfPresent(Int.self, forKey: .warmupSteps) ?? 8,
                          maxCachedSteps: try c.decodeIfPresent(Int.self, forKey: .maxCachedSteps),
                          maxConsecutiveCachedSteps: try c.decodeIfPresent(Int.self, forKey: .maxConsecutiveCachedSteps))
        } catch let e as CacheError {
            throw DecodingError.dataCorrupted(.init(codingPath: decoder.codingPath, debugDescription: e.description))
        }
    }
}

/// DBCache as a ``StepCachePolicy`` (see ``DBCacheConfiguration``).
public struct DBCachePolicy: StepCachePolicy {
    private struct BranchState: Sendable {
        var frontResidual: Tensor?
        var cachedSteps = 0
        var consecutive = 0
    }

    /// The configuration.
    public let configuration: DBCacheConfiguration
    private var branches: [BranchKey: BranchState] = [:]

    /// A fresh policy.
    public init(configuration: DBCacheConfiguration) { self.configuration = configuration }

    /// `dbcache`.
    public var name: String { "dbcache" }
    /// Fn blocks before the decision, Bn after the middle.
    public var blockSplit: CacheBlockSplit { CacheBlockSplit(head: configuration.frontBlocks, tail: configuration.backBlocks) }

    /// Forgets every branch.
    public mutating func beginRun(steps: Int) throws(CacheError) {
        guard steps >= 1 else { throw .invalidStepCount(steps) }
        try configuration.validate()
        branches = [:]
    }

    /// The first rule that applies (see ``DBCacheConfiguration``).
    public mutating func decide(_ call: CacheCall) throws(CacheError) -> [CacheDecision] {
        guard let r = call.headResidual else { throw .policyUnsupported("DBCache needs the front blocks' residual") }
        var s = branches[call.branch] ?? BranchState()
        let c = configuration
        let details = CacheDecision.Details.dbCache(cachedSteps: s.cachedSteps, consecutiveCached: s.consecutive)
        func compute(_ reason: CacheDecision.Reason, distance: Double? = nil) -> [CacheDecision] {
            s.consecutive = 0
            branches[call.branch] = s
            return [CacheDecision(action: .compute, forced: reason != .threshold, reason: reason, distance: distance, details: details)]
        }
        if call.step < c.warmupSteps { return compute(.retainedStep) }
        if call.mustCompute { return compute(.stepMask) }
        if let m = c.maxCachedSteps, s.cachedSteps >= m { return compute(.maxCachedSteps) }
        if let m = c.maxConsecutiveCachedSteps, s.consecutive >= m { return compute(.maxConsecutiveSkips) }
        if c.threshold <= 0 { return compute(.cacheDisabled) }
        guard let previous = s.frontResidual, call.hasStoredResidual else { return compute(.noPreviousInput) }
        let d = try RelativeL1.distance(r, previous: previous)
        guard d < c.threshold else { return compute(.threshold, distance: d) }
        s.cachedSteps += 1
        s.consecutive += 1
        branches[call.branch] = s
        return [CacheDecision(action: .skip, forced: false, reason: .threshold, distance: d, details: details)]
    }

    /// Keeps the front blocks' residual of the computed call.
    public mutating func didCompute(_ call: CacheCall, residuals: [Tensor], output: Tensor) throws(CacheError) {
        branches[call.branch, default: BranchState()].frontResidual = call.headResidual
    }

    /// Forgets the branch.
    public mutating func reset(_ branch: BranchKey, batch: Int) { branches[branch] = nil }
}
