import Tensors

/// TeaCache as a ``StepCachePolicy``: the modulated input's relative L1 change, rescaled by a polynomial and
/// accumulated against a threshold; a skip adds the stored block-stack residual of every stream.
///
/// One policy covers one sampling run of `steps` steps. It keeps, per ``TeaCacheSlot`` (branch, and
/// batch element in per-sample mode), the accumulator, the current skip streak and the last action, and per
/// branch the previous modulated input (updated on every call, computed or skipped). The decision rule can
/// also be driven without tensors through ``decide(step:slot:distance:)``.
///
/// ``decide(step:slot:distance:)`` follows the reference exactly (FORMAT.md §3):
/// a forced step computes and zeroes the accumulator; otherwise `acc += P(d)` in Double (no clamping),
/// skip iff `acc < threshold` (strict), else compute and zero the accumulator.
public struct TeaCachePolicy: Sendable {
    private struct SlotState: Sendable {
        var accumulator = 0.0
        var skipStreak = 0
    }

    /// The configuration being applied.
    public let configuration: TeaCacheConfiguration
    /// The number of steps per branch in this run.
    public let steps: Int
    private var slots: [TeaCacheSlot: SlotState] = [:]
    /// The previous modulated input per branch.
    private var previous: [BranchKey: Tensor] = [:]
    /// With a ``TeaCacheSchedule/sharedCounter``: its value and the run's first branch.
    private var shared: (counter: Int, first: BranchKey?) = (0, nil)

    /// A fresh policy (all accumulators 0) for a run of `steps` steps.
    /// - Throws: ``CacheError/invalidStepCount(_:)`` when `steps < 1`;
    ///   ``CacheError/replayMismatch(_:)`` when a replayed schedule has another step count.
    public init(configuration: TeaCacheConfiguration, steps: Int) throws(CacheError) {
        guard steps >= 1 else { throw .invalidStepCount(steps) }
        if let replay = configuration.replay, replay.steps != steps {
            throw .replayMismatch("the schedule was recorded for \(replay.steps) steps, the run announces \(steps)")
        }
        self.configuration = configuration
        self.steps = steps
    }

    /// The accumulator of `slot` (0 for a slot never seen).
    public func accumulator(for slot: TeaCacheSlot) -> Double { slots[slot]?.accumulator ?? 0 }

    /// The value of the schedule's ``TeaCacheSchedule/sharedCounter`` the next call sees, or nil without one.
    public var sharedCounter: Int? { configuration.schedule.sharedCounter == nil ? nil : shared.counter }

    /// Forgets the state of `slot` (used when its cached tensors become invalid).
    public mutating func reset(_ slot: TeaCacheSlot) { slots[slot] = nil }

    /// Decides one call of a branch (whole-batch mode).
    public mutating func decide(
        step: Int, branch: BranchKey, sample: Int? = nil, distance: Double?
    ) throws(CacheError) -> CacheDecision {
        try decide(step: step, slot: TeaCacheSlot(branch: branch, sample: sample), distance: distance)
    }

    /// Decides one call for `slot` at per-branch `step`.
    ///
    /// With a ``TeaCacheSchedule/sharedCounter`` the forced-step rules read that counter instead of
    /// `step` (which then only has to be non-negative: several branches may share one slot), and every
    /// call advances it.
    ///
    /// - Parameters:
    ///   - step: the per-branch step, `0 ..< steps`.
    ///   - slot: the branch (and batch element in per-sample mode) being decided.
    ///   - distance: the relative L1 distance to the slot's previous modulated input, or nil
    ///     when there is none (which forces a compute).
    /// - Throws: ``CacheError/stepOutOfRange(branch:step:steps:)`` when `step` is outside `0 ..< steps`;
    ///   ``CacheError/replayMismatch(_:)`` when replaying and the schedule has no entry for the call.
    public mutating func decide(
        step: Int, slot: TeaCacheSlot, distance: Double?
    ) throws(CacheError) -> CacheDecision {
        try decide(step: step, slot: slot, distance: distance, mustCompute: false)
    }

    private mutating func decide(
        step: Int, slot: TeaCacheSlot, distance: Double?, mustCompute: Bool
    ) throws(CacheError) -> CacheDecision {
        let counterRule = configuration.schedule.sharedCounter
        guard step >= 0, step < steps || counterRule != nil else {
            throw .stepOutOfRange(branch: slot.branch, step: step, steps: steps)
        }
        var state = slots[slot] ?? SlotState()
        let decision: CacheDecision
        if let replay = configuration.replay {
            guard let entry = replay.entry(for: slot, step: step) else {
                throw .replayMismatch("the schedule has no decision for \(slot) at step \(step)")
            }
            decision = Self.replayed(entry, distance: distance, polynomial: configuration.polynomial, state: &state)
        } else {
            decision = decideAdaptively(step: counterRule == nil ? step : shared.counter, distance: distance,
                                        mustCompute: mustCompute, state: &state)
        }
        slots[slot] = state
        if let counterRule {
            let first = shared.first ?? slot.branch
            shared = (counterRule.advanced(shared.counter, after: slot.branch, first: first, steps: steps), first)
        }
        return decision
    }

    private func decideAdaptively(step: Int, distance: Double?, mustCompute: Bool, state: inout SlotState) -> CacheDecision {
        func forced(_ reason: CacheDecision.Reason) -> CacheDecision {
            state.accumulator = 0
            state.skipStreak = 0
            return CacheDecision(action: .compute, forced: true, reason: reason, distance: distance,
                                    rescaled: nil, accumulated: nil, accumulatorAfter: 0)
        }
        let c = configuration
        if let reason = c.schedule.forcedReason(step: step, steps: steps) { return forced(reason) }
        if mustCompute { return forced(.stepMask) }
        if c.threshold == 0 { return forced(.cacheDisabled) }
        guard let d = distance else { return forced(.noPreviousInput) }
        if c.guards.nonFiniteDistanceComputes && !d.isFinite { return forced(.nonFiniteDistance) }
        if let range = c.guards.calibratedRange, !range.contains(d) { return forced(.outsideCalibratedRange) }
        if let cap = c.schedule.maxConsecutiveSkips, state.skipStreak >= cap { return forced(.maxConsecutiveSkips) }

        let rescaled = c.polynomial(d)
        let accumulated = state.accumulator + rescaled
        if accumulated < c.threshold {
            state.accumulator = accumulated
            state.skipStreak += 1
            return CacheDecision(action: .skip, forced: false, reason: .threshold, distance: d,
                                    rescaled: rescaled, accumulated: accumulated, accumulatorAfter: accumulated)
        }
        state.accumulator = 0
        state.skipStreak = 0
        return CacheDecision(action: .compute, forced: false, reason: .threshold, distance: d,
                                rescaled: rescaled, accumulated: accumulated, accumulatorAfter: 0)
    }

    /// Follows a recorded entry; the accumulator is still tracked so the trace shows the same numbers.
    private static func replayed(
        _ entry: TeaCacheReplaySchedule.Entry, distance: Double?, polynomial: RescalingPolynomial,
        state: inout SlotState
    ) -> CacheDecision {
        var rescaled: Double?, accumulated: Double?
        if !entry.forced, let d = distance {
            let r = polynomial(d)
            rescaled = r
            accumulated = state.accumulator + r
        }
        if entry.action == .compute {
            state.accumulator = 0
            state.skipStreak = 0
        } else {
            state.accumulator = accumulated ?? state.accumulator
            state.skipStreak += 1
        }
        return CacheDecision(action: entry.action, forced: entry.forced, reason: .replayed, distance: distance,
                                rescaled: rescaled, accumulated: accumulated, accumulatorAfter: state.accumulator)
    }
}

extension TeaCachePolicy: StepCachePolicy {
    /// `teacache`.
    public var name: String { "teacache" }
    /// True: TeaCache compares modulated inputs.
    public var needsModulatedInput: Bool { true }
    /// ``TeaCacheConfiguration/perSample``.
    public var decidesPerSample: Bool { configuration.perSample }
    /// True with a ``TeaCacheSchedule/sharedCounter`` (branches may share one entry then).
    public var callsMayExceedSteps: Bool { configuration.schedule.sharedCounter != nil }

    /// A fresh state for `steps` steps.
    public mutating func beginRun(steps: Int) throws(CacheError) {
        self = try TeaCachePolicy(configuration: configuration, steps: steps)
    }

    /// The distance to the branch's previous modulated input (per batch element in per-sample mode), then
    /// ``decide(step:slot:distance:)``; the modulated input becomes the previous one.
    public mutating func decide(_ call: CacheCall) throws(CacheError) -> [CacheDecision] {
        guard let m = call.modulatedInput else { throw .shapeMismatch("TeaCache needs the model's modulated input") }
        let p = previous[call.branch]
        var decisions: [CacheDecision] = []
        if configuration.perSample {
            guard m.rank >= 1 else { throw .shapeMismatch("per-sample mode needs a batch axis in the modulated input \(m.shape)") }
            let distances: [Double?] = try p.map { p throws(CacheError) in
                try RelativeL1.perSample(m, previous: p).map { Optional($0) }
            } ?? Array(repeating: nil, count: m.shape[0])
            for (b, d) in distances.enumerated() {
                decisions.append(try decide(step: call.step, slot: TeaCacheSlot(branch: call.branch, sample: b), distance: d,
                                            mustCompute: call.mustCompute))
            }
        } else {
            let d = try p.map { p throws(CacheError) in try RelativeL1.distance(m, previous: p) }
            decisions = [try decide(step: call.step, slot: TeaCacheSlot(branch: call.branch), distance: d,
                                    mustCompute: call.mustCompute)]
        }
        previous[call.branch] = m
        return decisions
    }

    /// Forgets the branch's previous input and the accumulators of its slots.
    public mutating func reset(_ branch: BranchKey, batch: Int) {
        previous[branch] = nil
        reset(TeaCacheSlot(branch: branch))
        for b in 0..<batch { reset(TeaCacheSlot(branch: branch, sample: b)) }
    }
}
