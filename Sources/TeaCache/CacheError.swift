import Tensors

/// Errors raised by the TeaCache module and its cache policies. Every case says what went wrong and what to change.
public enum CacheError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The rescaling coefficients are unusable (wrong count, NaN or infinite values).
    case invalidCoefficients(String)
    /// The threshold is negative or NaN.
    case invalidThreshold(Double)
    /// A schedule or guard setting is out of range.
    case invalidSchedule(String)
    /// The step count given to `beginRun(steps:)` (or a policy) is not positive.
    case invalidStepCount(Int)
    /// A cached model was called before `beginRun(steps:)`.
    case runNotStarted
    /// A branch was called more times than the number of steps announced for the run.
    case stepOutOfRange(branch: BranchKey, step: Int, steps: Int)
    /// Tensor shapes do not agree with what the cache holds or what the model contract requires.
    case shapeMismatch(String)
    /// A replayed schedule does not fit the run (step count, branch, sample, or a skip with nothing cached).
    case replayMismatch(String)
    /// Per-sample mode was requested but the model's state cannot select batch elements.
    case perSampleUnsupported(String)
    /// The cache policy cannot run with this model (First-Block Cache needs a blockwise model).
    case policyUnsupported(String)
    /// Calibration was given too few (input, output) pairs to fit the polynomial.
    case insufficientCalibrationSamples(count: Int, needed: Int)
    /// A calibration sample holds a NaN or infinite distance.
    case nonFiniteCalibrationSample(index: Int)
    /// The least-squares fit explains too little of the output variation.
    case poorCalibrationFit(rSquared: Double, minimum: Double)
    /// LAPACK reported an error (negative `info`: bad argument; positive: rank-deficient design matrix).
    case lapackFailure(routine: String, info: Int)
    /// A preset file or value is malformed.
    case invalidPreset(String)
    /// A trace or preset file could not be read or written.
    case io(String)
    /// The sampler configuration is invalid (step count, guidance scale, channel selection...).
    case invalidSampler(String)
    /// The progress callback asked the sampler to stop.
    case cancelled(completedSteps: Int, totalSteps: Int)
    /// A tensor operation failed.
    case tensor(TensorError)

    public var description: String {
        switch self {
        case let .invalidCoefficients(reason):
            return "invalid rescaling coefficients: \(reason)"
        case let .invalidThreshold(t):
            return "invalid threshold \(t): use a finite value >= 0 (0 disables skipping)"
        case let .invalidSchedule(reason):
            return "invalid TeaCache schedule: \(reason)"
        case let .invalidStepCount(n):
            return "invalid step count \(n): the number of sampling steps must be at least 1"
        case .runNotStarted:
            return "the cached transformer was called before beginRun(steps:); announce the step count first"
        case let .stepOutOfRange(branch, step, steps):
            return "branch '\(branch)' was called for step \(step) but the run announced \(steps) steps; "
                + "call beginRun(steps:) with the right count before starting a new run"
        case let .shapeMismatch(reason):
            return "shape mismatch: \(reason)"
        case let .replayMismatch(reason):
            return "the replayed schedule does not match this run: \(reason)"
        case let .policyUnsupported(reason):
            return "unsupported cache policy for this model: \(reason)"
        case let .perSampleUnsupported(reason):
            return "per-sample decisions are unavailable: \(reason)"
        case let .insufficientCalibrationSamples(count, needed):
            return "calibration needs at least \(needed) (input, output) distance pairs, got \(count); record more steps or prompts"
        case let .nonFiniteCalibrationSample(index):
            return "calibration sample \(index) has a NaN or infinite distance; drop it or fix the recording"
        case let .poorCalibrationFit(r2, minimum):
            return "the polynomial fit has R² = \(r2), below the required \(minimum); record more data or pass force: true"
        case let .lapackFailure(routine, info):
            return "LAPACK \(routine) failed with info = \(info)"
                + (info > 0 ? " (the design matrix is rank deficient: the inputs need more distinct values)" : " (invalid argument)")
        case let .invalidPreset(reason):
            return "invalid TeaCache preset: \(reason)"
        case let .io(reason):
            return "I/O error: \(reason)"
        case let .invalidSampler(reason):
            return "invalid sampler setting: \(reason)"
        case let .cancelled(done, total):
            return "sampling was cancelled after \(done) of \(total) steps"
        case let .tensor(e):
            return "tensor error: \(e)"
        }
    }
}

/// The former name of ``CacheError``.
@available(*, deprecated, renamed: "CacheError")
public typealias TeaCacheError = CacheError
