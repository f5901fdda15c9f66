import Tensors

/// A step-cache policy: it observes what it needs of each model call, decides whether the blocks run or
/// something stored or forecast stands in, and says what that is.
///
/// ``CachedTransformer`` does everything else, the same way for every policy: the run lifecycle, one
/// cache entry per branch (``BranchKey``), resets when shapes change, the ``CacheTrace``, per-sample
/// gathering, running the blocks and storing their residual, and adding a residual on a skip. A policy is a
/// value: the wrapper works on a copy during a call and keeps it only when the call succeeds, so a call that
/// throws leaves the policy as it was.
///
/// One call, in order:
/// 1. the wrapper runs ``blockSplit``'s head blocks (none by default) and builds a ``CacheCall``;
/// 2. ``decide(_:)`` returns one ``CacheDecision`` (one per batch element when ``decidesPerSample``);
/// 3. on a compute the region between head and tail blocks runs, its residual (`out − in` per stream) is
///    stored per branch (``storedStreams``), the tail blocks and the output head run, and
///    ``didCompute(_:residuals:output:)`` sees the residuals and the output;
///    on a skip ``reuse(_:)`` says what stands in: the stored residual, a residual the policy forecasts, or a
///    forecast of the whole output (then neither the tail blocks nor the output head run).
///
/// Built-in policies: ``TeaCachePolicy``, ``FirstBlockCachePolicy``, ``MagCachePolicy``, ``TaylorSeerPolicy``
/// and ``EasyCachePolicy``, chosen with ``CachePolicy``; pass any other conforming value to
/// ``CachedTransformer/init(model:custom:)``.
public protocol StepCachePolicy: Sendable {
    /// A short name for traces, tables and error messages.
    var name: String { get }
    /// True when ``decide(_:)`` reads ``CacheCall/modulatedInput`` (the model's ``DiffusionTransformer/modulatedInput(_:)``).
    var needsModulatedInput: Bool { get }
    /// The blocks that run on every call before the decision and after the region a skip replaces.
    /// Anything but ``CacheBlockSplit/wholeStack`` needs a ``BlockwiseDiffusionTransformer``.
    var blockSplit: CacheBlockSplit { get }
    /// Which streams' residuals the wrapper stores on a compute (and a stored-residual reuse adds).
    var storedStreams: CacheStoredStreams { get }
    /// True when ``decide(_:)`` returns one decision per batch element (the state must be a
    /// ``BatchSelectableState``; only the computing elements run, the others reuse their stored residual rows).
    var decidesPerSample: Bool { get }
    /// True when a branch may be called more often than the run's steps (TeaCache's shared counter).
    var callsMayExceedSteps: Bool { get }

    /// Starts a run of `steps` calls per branch from an empty state.
    mutating func beginRun(steps: Int) throws(CacheError)
    /// Decides one call: one decision, or one per batch element with ``decidesPerSample``. When
    /// ``CacheCall/mustCompute`` is true the step is in the run's ``CacheStepMask``: the policy should
    /// compute (and update its state as for a forced compute); the wrapper computes in any case.
    mutating func decide(_ call: CacheCall) throws(CacheError) -> [CacheDecision]
    /// What stands in for the skipped region on a whole-batch skip (called right after ``decide(_:)``).
    mutating func reuse(_ call: CacheCall) throws(CacheError) -> CacheReuse
    /// Sees a computed call's region residuals (every stream; per-sample: the rows of every element, computed
    /// or reused) and the model output.
    mutating func didCompute(_ call: CacheCall, residuals: [Tensor], output: Tensor) throws(CacheError)
    /// Forgets what the policy holds for `branch` (its shapes changed; `batch` is the old batch size).
    mutating func reset(_ branch: BranchKey, batch: Int)
}

extension StepCachePolicy {
    /// No modulated input.
    public var needsModulatedInput: Bool { false }
    /// The whole block stack is one region.
    public var blockSplit: CacheBlockSplit { .wholeStack }
    /// Every stream.
    public var storedStreams: CacheStoredStreams { .all }
    /// One decision per call.
    public var decidesPerSample: Bool { false }
    /// At most `steps` calls per branch.
    public var callsMayExceedSteps: Bool { false }
    /// The stored residual.
    public mutating func reuse(_ call: CacheCall) throws(CacheError) -> CacheReuse { .storedResidual }
    /// Nothing.
    public mutating func didCompute(_ call: CacheCall, residuals: [Tensor], output: Tensor) throws(CacheError) {}
}

/// Where the region a skip replaces lies in a block stack of `n` blocks: blocks `0 ..< head` run before the
/// decision, blocks `head ..< n − tail` are the region, blocks `n − tail ..< n` run after it.
public struct CacheBlockSplit: Sendable, Equatable, Hashable {
    /// Blocks run on every call before the decision (First-Block Cache: 1).
    public var head: Int
    /// Blocks run on every call after the region.
    public var tail: Int

    /// A split with `head` leading and `tail` trailing blocks.
    public init(head: Int, tail: Int) {
        self.head = head
        self.tail = tail
    }

    /// The whole stack (``DiffusionTransformer/runBlocks(_:)``, final work included) is the region.
    public static let wholeStack = CacheBlockSplit(head: 0, tail: 0)
}

/// The streams whose residuals a policy keeps.
public enum CacheStoredStreams: Sendable, Equatable {
    /// Every stream (TeaCache, First-Block Cache).
    case all
    /// Stream 0 only; the other streams pass a skip unchanged (MagCache).
    case first
    /// None: the policy's reuse never reads a stored residual (TaylorSeer forecasts the output).
    case none
}

/// What stands in for the skipped region.
public enum CacheReuse: Sendable {
    /// The residual stored at the branch's last computed call, added to the region's input.
    case storedResidual
    /// A residual the policy supplies (e.g. a forecast), one per stored stream, added to the region's input.
    case residual([Tensor])
    /// The model output itself (e.g. a Taylor forecast); the tail blocks and the output head do not run.
    case output(Tensor)
}

/// What a policy sees of one model call.
public struct CacheCall: Sendable {
    /// The per-branch step (0-based call count of the cache entry).
    public var step: Int
    /// The cache entry.
    public var branch: BranchKey
    /// The run's steps per branch.
    public var steps: Int
    /// The model's modulated input, when the policy (or a calibration recorder) asked for it.
    public var modulatedInput: Tensor?
    /// The streams entering the region a skip replaces (after the head blocks).
    public var regionInput: [Tensor]
    /// Stream 0's residual of the head blocks (region input − stack input), when the split has head blocks.
    public var headResidual: Tensor?
    /// True when the branch holds a residual from a computed call.
    public var hasStoredResidual: Bool
    /// True when the step is in the run's ``CacheStepMask``.
    public var mustCompute: Bool

    /// A call description.
    public init(step: Int, branch: BranchKey, steps: Int, modulatedInput: Tensor? = nil, regionInput: [Tensor] = [],
                headResidual: Tensor? = nil, hasStoredResidual: Bool = false, mustCompute: Bool = false) {
        self.step = step
        self.branch = branch
        self.steps = steps
        self.modulatedInput = modulatedInput
        self.regionInput = regionInput
        self.headResidual = headResidual
        self.hasStoredResidual = hasStoredResidual
        self.mustCompute = mustCompute
    }
}

/// Steps that must compute whatever the policy would decide — a guard any policy takes
/// (``CachedTransformer/stepMask``), as cache-dit's `steps_computation_mask`.
public struct CacheStepMask: Codable, Sendable, Equatable {
    /// The per-branch steps that compute.
    public private(set) var computeSteps: Set<Int>

    /// A mask of explicit steps.
    /// - Throws: ``CacheError/invalidSchedule(_:)`` for a negative step.
    public init(computing steps: some Sequence<Int>) throws(CacheError) {
        computeSteps = Set(steps)
        if let bad = computeSteps.first(where: { $0 < 0 }) {
            throw .invalidSchedule("step mask step \(bad) is negative; steps count from 0")
        }
    }

    /// The first `first` and the last `last` steps of a `steps`-step run, and every `every`-th step in
    /// between (0: none) — the usual shape: structure early, detail late, an anchor now and then.
    /// - Throws: ``CacheError/invalidSchedule(_:)`` for negative counts or `steps < 1`.
    public static func bookends(first: Int, last: Int, every: Int = 0, steps: Int) throws(CacheError) -> CacheStepMask {
        guard first >= 0, last >= 0, every >= 0, steps >= 1 else {
            throw .invalidSchedule("step mask needs first, last, every >= 0 and steps >= 1; got \(first), \(last), \(every), \(steps)")
        }
        var s = Set(0..<min(first, steps))
        s.formUnion(max(0, steps - last)..<steps)
        if every > 0 { s.formUnion(stride(from: 0, to: steps, by: every)) }
        return try CacheStepMask(computing: s)
    }

    /// True when `step` must compute.
    public func contains(_ step: Int) -> Bool { computeSteps.contains(step) }
}
