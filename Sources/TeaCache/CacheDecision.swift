/// The outcome of one cache-policy decision (any ``StepCachePolicy``), with the numbers that led to it.
///
/// What every policy shares — compute or reuse, forced or not, why, and the measured relative change when
/// the policy measures one — is stored directly; what only one policy computes is in ``details``.
public struct CacheDecision: Codable, Sendable, Equatable {
    /// Run the blocks, or reuse what the policy keeps.
    public enum Action: String, Codable, Sendable {
        /// The blocks ran and a new residual (or output) was stored.
        case compute = "computed"
        /// The blocks were skipped; the policy's reuse (stored residual, forecast residual or forecast
        /// output) stood in.
        case skip = "skipped"
    }

    /// Why the decision was taken.
    public enum Reason: String, Codable, Sendable {
        /// The policy's measure was compared with its threshold.
        case threshold
        /// A step inside `retainFirstSteps` (TeaCache) or the warm-up of MagCache, TaylorSeer or EasyCache.
        case retainedStep
        /// The last step with `forceLastStep`.
        case lastStep
        /// A step at or after `cutoffStep` (TeaCache) or `disableAfterStep` (TaylorSeer).
        case cutoff
        /// A step outside the `startFraction ..< endFraction` window.
        case outsideWindow
        /// The slot had no previous input or stored residual (its first call, or its cache was reset).
        case noPreviousInput
        /// Threshold 0: caching is off and every call is computed.
        case cacheDisabled
        /// The slot reached its limit of consecutive skips.
        case maxConsecutiveSkips
        /// The distance was NaN or infinite and the guard is on.
        case nonFiniteDistance
        /// The distance was outside the calibrated range and the guard is on.
        case outsideCalibratedRange
        /// The action was read from a replayed schedule.
        case replayed
        /// A fixed interval chose the call (TaylorSeer).
        case interval
        /// The step is in the run's ``CacheStepMask`` of steps that must compute.
        case stepMask
        /// The slot reached its limit of cached steps in the run (DBCache).
        case maxCachedSteps
    }

    /// What one policy measured beyond the shared fields.
    public enum Details: Codable, Sendable, Equatable {
        /// TeaCache: `P(distance)` and the accumulator (nil when not accumulated), and the accumulator kept
        /// after the decision (0 after a compute).
        case teaCache(rescaled: Double?, accumulated: Double?, accumulatorAfter: Double)
        /// First-Block Cache: nothing beyond ``CacheDecision/distance`` (block 0's residual change).
        case firstBlock
        /// MagCache: the step's magnitude ratio (nil inside the retained steps), the accumulated error compared
        /// with the threshold (nil when not compared) and the error kept after the decision.
        case magCache(ratio: Double?, accumulatedError: Double?, errorAfter: Double)
        /// TaylorSeer: the number of Taylor factors held after the call and the distance in steps from the
        /// last computed call that a forecast extrapolated over (0 on a compute).
        case taylorSeer(factors: Int, stepsSinceUpdate: Int)
        /// EasyCache: the transformation rate used (nil before two computed calls), the accumulated
        /// estimate compared with the threshold (nil when not compared) and the estimate kept after the call.
        case easyCache(rate: Double?, accumulated: Double?, accumulatedAfter: Double)
        /// DBCache: the branch's cached steps so far and in a row, before the decision (the front blocks'
        /// residual change is ``CacheDecision/distance``).
        case dbCache(cachedSteps: Int, consecutiveCached: Int)
        /// A policy outside this module: its own numbers, by name.
        case custom([String: Double])
    }

    /// Compute or skip.
    public var action: Action
    /// True when the call was computed without comparing the policy's measure with its threshold.
    public var forced: Bool
    /// Why.
    public var reason: Reason
    /// The relative change the policy measured (TeaCache: the modulated input's relative L1; First-Block
    /// Cache: block 0's residual's), when one was available.
    public var distance: Double?
    /// The policy's own numbers.
    public var details: Details

    /// A decision value.
    public init(action: Action, forced: Bool, reason: Reason, distance: Double? = nil, details: Details) {
        self.action = action
        self.forced = forced
        self.reason = reason
        self.distance = distance
        self.details = details
    }

    /// A TeaCache decision value.
    public init(action: Action, forced: Bool, reason: Reason, distance: Double?, rescaled: Double?,
                accumulated: Double?, accumulatorAfter: Double) {
        self.init(action: action, forced: forced, reason: reason, distance: distance,
                  details: .teaCache(rescaled: rescaled, accumulated: accumulated, accumulatorAfter: accumulatorAfter))
    }

    /// A forced compute of a policy without numbers of its own.
    static func forcedCompute(_ reason: Reason, details: Details) -> CacheDecision {
        CacheDecision(action: .compute, forced: true, reason: reason, details: details)
    }

    /// True for ``Action/skip``.
    public var skips: Bool { action == .skip }

    /// The term added to an accumulating policy's accumulator: TeaCache's `P(distance)`, MagCache's ratio.
    /// Nil for the other policies.
    public var rescaled: Double? {
        switch details {
        case let .teaCache(r, _, _): return r
        case let .magCache(r, _, _): return r
        default: return nil
        }
    }

    /// The accumulator compared with the threshold: TeaCache's accumulator, MagCache's accumulated error,
    /// EasyCache's accumulated estimate. Nil for the other policies and when nothing was compared.
    public var accumulated: Double? {
        switch details {
        case let .teaCache(_, a, _): return a
        case let .magCache(_, a, _): return a
        case let .easyCache(_, a, _): return a
        default: return nil
        }
    }

    /// The accumulator kept after the decision (0 for policies without one).
    public var accumulatorAfter: Double {
        switch details {
        case let .teaCache(_, _, a): return a
        case let .magCache(_, _, a): return a
        case let .easyCache(_, _, a): return a
        default: return 0
        }
    }
}

/// The former name of ``CacheDecision``.
@available(*, deprecated, renamed: "CacheDecision")
public typealias TeaCacheDecision = CacheDecision
