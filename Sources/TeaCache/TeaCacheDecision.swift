/// The outcome of one TeaCache decision, with the numbers that led to it.
public struct TeaCacheDecision: Codable, Sendable, Equatable {
    /// Run the block stack, or reuse the cached residual.
    public enum Action: String, Codable, Sendable {
        /// The blocks ran and a new residual was stored.
        case compute = "computed"
        /// The blocks were skipped; the stored residual was added to the block input.
        case skip = "skipped"
    }

    /// Why the decision was taken.
    public enum Reason: String, Codable, Sendable {
        /// The accumulator was compared with the threshold.
        case threshold
        /// A step inside `retainFirstSteps`.
        case retainedStep
        /// The last step with `forceLastStep`.
        case lastStep
        /// A step at or after `cutoffStep`.
        case cutoff
        /// A step outside the `startFraction ..< endFraction` window.
        case outsideWindow
        /// The slot had no previous modulated input (its first call, or its cache was reset).
        case noPreviousInput
        /// Threshold 0: caching is off and every call is computed.
        case cacheDisabled
        /// The slot reached `maxConsecutiveSkips`.
        case maxConsecutiveSkips
        /// The distance was NaN or infinite and the guard is on.
        case nonFiniteDistance
        /// The distance was outside the calibrated range and the guard is on.
        case outsideCalibratedRange
        /// The action was read from a replayed schedule.
        case replayed
    }

    /// Compute or skip.
    public var action: Action
    /// True when the call was computed without comparing the accumulator with the threshold.
    public var forced: Bool
    /// Why.
    public var reason: Reason
    /// The raw relative L1 distance, when one was available.
    public var distance: Double?
    /// `P(distance)`, when the accumulator was updated.
    public var rescaled: Double?
    /// The accumulator right after adding `rescaled` (the value compared with the threshold).
    public var accumulated: Double?
    /// The accumulator when the decision returns (0 after a compute).
    public var accumulatorAfter: Double

    /// A decision value.
    public init(action: Action, forced: Bool, reason: Reason, distance: Double?, rescaled: Double?,
                accumulated: Double?, accumulatorAfter: Double) {
        self.action = action
        self.forced = forced
        self.reason = reason
        self.distance = distance
        self.rescaled = rescaled
        self.accumulated = accumulated
        self.accumulatorAfter = accumulatorAfter
    }

    /// True for ``Action/skip``.
    public var skips: Bool { action == .skip }
}
