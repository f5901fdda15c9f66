/// Which steps are always computed, independent of the distance.
///
/// Steps are counted **per branch**: with sequential CFG each branch has its own step counter, so
/// "retain the first 5 steps" forces the first 5 conditional and the first 5 unconditional calls.
///
/// The reference's standard counter is ``standard`` (first and last step computed); a retention rule
/// is `TeaCacheSchedule(retainFirstSteps: 5, forceLastStep: false)`; a reference whose counter runs over
/// both CFG branches expresses its bounds here divided by the number of branches. Model families
/// declare their own schedules next to their presets.
public struct TeaCacheSchedule: Codable, Sendable, Equatable {
    /// Steps `0 ..< retainFirstSteps` are always computed.
    public var retainFirstSteps: Int
    /// When true the last step (`steps − 1`) is always computed.
    public var forceLastStep: Bool
    /// Steps `>= cutoffStep` are always computed (nil: no cutoff).
    public var cutoffStep: Int?
    /// Steps before `startFraction × steps` are always computed (0: no restriction).
    public var startFraction: Double
    /// Steps at or after `endFraction × steps` are always computed (1: no restriction).
    public var endFraction: Double
    /// After this many consecutive skips of a slot the next call is computed (nil: unlimited).
    /// Not part of the reference algorithm; a quality guard.
    public var maxConsecutiveSkips: Int?
    /// When set, the rules above apply to one counter shared by every branch instead of each branch's
    /// own step (nil: per-branch steps, the default). See ``TeaCacheSharedCounter``; needs whole-batch
    /// decisions.
    public var sharedCounter: TeaCacheSharedCounter?

    /// A schedule; the defaults are the reference's standard rule (first and last step computed).
    public init(
        retainFirstSteps: Int = 1, forceLastStep: Bool = true, cutoffStep: Int? = nil,
        startFraction: Double = 0, endFraction: Double = 1, maxConsecutiveSkips: Int? = nil,
        sharedCounter: TeaCacheSharedCounter? = nil
    ) {
        self.retainFirstSteps = retainFirstSteps
        self.forceLastStep = forceLastStep
        self.cutoffStep = cutoffStep
        self.startFraction = startFraction
        self.endFraction = endFraction
        self.maxConsecutiveSkips = maxConsecutiveSkips
        self.sharedCounter = sharedCounter
    }

    /// The reference's standard rule: first and last step computed.
    public static let standard = TeaCacheSchedule()

    /// Checks every field.
    /// - Throws: ``CacheError/invalidSchedule(_:)`` naming the bad field.
    public func validate() throws(CacheError) {
        guard retainFirstSteps >= 0 else { throw .invalidSchedule("retainFirstSteps is \(retainFirstSteps); use 0 or more") }
        if let cutoffStep, cutoffStep < 0 { throw .invalidSchedule("cutoffStep is \(cutoffStep); use 0 or more, or nil") }
        guard startFraction.isFinite, endFraction.isFinite,
              0 <= startFraction, startFraction <= endFraction, endFraction <= 1 else {
            throw .invalidSchedule("need 0 <= startFraction <= endFraction <= 1, got \(startFraction) and \(endFraction)")
        }
        if let maxConsecutiveSkips, maxConsecutiveSkips < 0 {
            throw .invalidSchedule("maxConsecutiveSkips is \(maxConsecutiveSkips); use 0 or more, or nil")
        }
    }

    /// Why `step` of a `steps`-step run must be computed, or nil when it is eligible for skipping.
    public func forcedReason(step: Int, steps: Int) -> CacheDecision.Reason? {
        if step < retainFirstSteps { return .retainedStep }
        if forceLastStep && step == steps - 1 { return .lastStep }
        if let cutoffStep, step >= cutoffStep { return .cutoff }
        if Double(step) < startFraction * Double(steps) || Double(step) >= endFraction * Double(steps) {
            return .outsideWindow
        }
        return nil
    }
}

/// Optional safety checks that force a compute. Both are OFF in faithful mode.
public struct TeaCacheGuards: Codable, Sendable, Equatable {
    /// Compute when the distance is NaN or infinite (e.g. a zero previous input).
    public var nonFiniteDistanceComputes: Bool
    /// Compute when the distance lies outside the range the polynomial was fitted on, where the
    /// polynomial extrapolates wildly (spec §1.3). Nil: no range check.
    public var calibratedRange: ClosedRange<Double>?

    /// Guards; both off by default (faithful).
    public init(nonFiniteDistanceComputes: Bool = false, calibratedRange: ClosedRange<Double>? = nil) {
        self.nonFiniteDistanceComputes = nonFiniteDistanceComputes
        self.calibratedRange = calibratedRange
    }

    /// No guards: the reference behaviour.
    public static let off = TeaCacheGuards()
}
