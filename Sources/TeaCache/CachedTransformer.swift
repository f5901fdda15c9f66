import Tensors

/// A ``DiffusionTransformer`` wrapped with a step cache: any ``StepCachePolicy`` — the built-in ones chosen by
/// ``CachePolicy`` (TeaCache, First-Block Cache, MagCache, TaylorSeer, EasyCache) or one of your own.
///
/// A final class because it is stateful across calls (previous modulated inputs, residuals,
/// accumulators) and is meant to be shared by reference between a sampler's closure and the code
/// that reads its ``trace``. It holds no global or static state: two instances never interact. It is
/// not thread-safe and not `Sendable`; use one instance per concurrent generation, each wrapping the
/// same shared (`Sendable`) model (<doc:ThreadSafety>).
///
/// Lifecycle: ``beginRun(steps:)`` announces the number of steps of a sampling run and resets every
/// cache (so runs with different step counts, shapes or branch sets start from scratch); then each
/// branch (``BranchKey``, e.g. `.cond` and `.uncond`) is called once per step; calling a branch more
/// than `steps` times throws ``CacheError/stepOutOfRange(branch:step:steps:)``. If the shapes of
/// a branch change within a run, that branch's cache is reset automatically (its next call computes).
///
/// One call: `prepare` → (modulated input `m`, when the policy reads it) → the policy's head blocks → the
/// policy's decision → either the region (storing `residual = out − in` per stream) or `in + residual` per
/// stream → tail blocks → `outputHead`; or, when the policy forecasts the output, that forecast. The policy
/// owns everything it compares (TeaCache the previous modulated input, First-Block Cache block 0's residual);
/// the wrapper owns the stored residuals, which one compute path writes and one apply path reads for every
/// policy. An optional ``stepMask`` makes given steps compute whatever the policy decides.
///
/// In per-sample mode (``StepCachePolicy/decidesPerSample``, e.g. ``TeaCacheConfiguration/perSample``; the state must be a
/// ``BatchSelectableState``), each batch element gets its own distance and decision; only the
/// elements that compute are gathered and run through the blocks, the others reuse their own
/// residual rows.
public final class CachedTransformer<Model: DiffusionTransformer> {
    private struct BranchCache {
        /// The residuals of the branch's last computed call (the streams ``StepCachePolicy/storedStreams`` names).
        var residuals: [Tensor]?
        var streamShapes: [[Int]]?
        var modulatedShape: [Int]?
        var nextStep = 0
    }

    /// Block-by-block access to a ``BlockwiseDiffusionTransformer`` model, opened once.
    private struct BlockRunner {
        var count: (Model.State) throws -> Int
        var run: (Int, inout Model.State) throws -> Void
        var finish: (inout Model.State) throws -> Void
    }

    private struct Run {
        var policy: any StepCachePolicy
        var split: CacheBlockSplit
        var runner: BlockRunner?
        var steps: Int
        var mask: CacheStepMask?
        var branches: [BranchKey: BranchCache] = [:]
        var trace: CacheTrace
        var calls = 0
        var blockStackRuns = 0
    }

    /// The wrapped model.
    public let model: Model
    /// The built-in cache policy; a new one takes effect at the next ``beginRun(steps:)`` and replaces
    /// ``customPolicy``. While ``customPolicy`` is set, this value is not used.
    public var policy: CachePolicy {
        didSet { customPolicy = nil }
    }
    /// A policy of your own; when set it is used instead of ``policy`` from the next ``beginRun(steps:)`` on
    /// (each run starts from a copy of this value, after ``StepCachePolicy/beginRun(steps:)``).
    public var customPolicy: (any StepCachePolicy)?
    /// Steps that compute whatever the policy decides; takes effect at the next ``beginRun(steps:)``.
    public var stepMask: CacheStepMask?
    /// The TeaCache configuration, when the policy is ``CachePolicy/teaCache(_:)``.
    public var configuration: TeaCacheConfiguration? {
        if customPolicy == nil, case .teaCache(let c) = policy { return c }
        return nil
    }
    /// When set, every call records a (modulated-input distance, output distance) pair per branch.
    public var calibrationRecorder: CalibrationRecorder?
    /// When set, every computed call records stream 0's block-stack residual (MagCache ratio calibration).
    public var magRatioRecorder: MagRatioRecorder?
    private var run: Run?

    /// Wraps `model` with TeaCache. Call ``beginRun(steps:)`` before the first call.
    public init(model: Model, configuration: TeaCacheConfiguration) {
        self.model = model
        self.policy = .teaCache(configuration)
    }

    /// Wraps `model` with any built-in policy. Call ``beginRun(steps:)`` before the first call.
    public init(model: Model, policy: CachePolicy) {
        self.model = model
        self.policy = policy
    }

    /// Wraps `model` with a policy of your own. Call ``beginRun(steps:)`` before the first call.
    public init(model: Model, custom: some StepCachePolicy) {
        self.model = model
        self.policy = .firstBlock(.diffusersDefault)
        self.customPolicy = custom
    }

    /// Starts a run of `steps` steps per branch and clears every cache, accumulator and the trace.
    /// If it throws, no run is active afterwards (calls throw ``CacheError/runNotStarted``).
    /// - Throws: ``CacheError/invalidStepCount(_:)``, ``CacheError/replayMismatch(_:)`` when
    ///   replaying a schedule recorded for another step count, ``CacheError/policyUnsupported(_:)`` for
    ///   a policy that runs blocks on their own (First-Block Cache) on a model that is not a
    ///   ``BlockwiseDiffusionTransformer``, ``CacheError/invalidSchedule(_:)`` for a ``stepMask`` step outside the run.
    public func beginRun(steps: Int) throws(CacheError) {
        // A failed start must not leave the previous run active: end it first.
        run = nil
        var stepPolicy: any StepCachePolicy
        if var custom = customPolicy {
            guard steps >= 1 else { throw .invalidStepCount(steps) }
            try custom.beginRun(steps: steps)
            stepPolicy = custom
        } else {
            try policy.validate()
            guard steps >= 1 else { throw .invalidStepCount(steps) }
            stepPolicy = try policy.makeStepPolicy(steps: steps)
        }
        if let bad = stepMask?.computeSteps.first(where: { $0 >= steps }) {
            throw .invalidSchedule("step mask step \(bad) is outside the run's \(steps) steps")
        }
        let split = stepPolicy.blockSplit
        var runner: BlockRunner?
        if split != .wholeStack {
            guard split.head >= 0, split.tail >= 0 else {
                throw .policyUnsupported("\(stepPolicy.name) asks for \(split.head) head and \(split.tail) tail blocks; use 0 or more")
            }
            guard let blockwise = model as? any BlockwiseDiffusionTransformer, let r = Self.runner(blockwise) else {
                throw .policyUnsupported("\(stepPolicy.name) runs blocks on their own: \(Model.self) must conform to "
                                         + "BlockwiseDiffusionTransformer (blockCount and runBlock)")
            }
            runner = r
        }
        run = Run(policy: stepPolicy, split: split, runner: runner, steps: steps, mask: stepMask,
                  trace: CacheTrace(steps: steps))
        calibrationRecorder?.beginRun()
        magRatioRecorder?.beginRun()
    }

    /// The block runner of a blockwise model whose dynamic type is `Model`.
    private static func runner<B: BlockwiseDiffusionTransformer>(_ b: B) -> BlockRunner? {
        guard Model.State.self == B.State.self else { return nil }
        func cast<T, U>(_ x: T, _: U.Type) throws -> U {
            guard let y = x as? U else { throw CacheError.policyUnsupported("state type \(T.self) is not \(U.self)") }
            return y
        }
        return BlockRunner(
            count: { s in b.blockCount(try cast(s, B.State.self)) },
            run: { i, s in
                var t = try cast(s, B.State.self)
                try b.runBlock(i, &t)
                s = try cast(t, Model.State.self)
            },
            finish: { s in
                var t = try cast(s, B.State.self)
                try b.finishBlocks(&t)
                s = try cast(t, Model.State.self)
            })
    }

    /// Ends the run, frees the cached tensors and returns its trace (nil when no run was active).
    @discardableResult
    public func endRun() -> CacheTrace? {
        defer { run = nil }
        return run?.trace
    }

    /// The decisions of the current (or last unfinished) run.
    public var trace: CacheTrace? { run?.trace }

    /// How many times the block stack ran in the current run (a per-sample partial batch counts once).
    public var blockStackRuns: Int { run?.blockStackRuns ?? 0 }

    /// The next per-branch step `branch` will be called with (0 before its first call).
    public func nextStep(for branch: BranchKey) -> Int { run?.branches[branch]?.nextStep ?? 0 }

    /// One model call of `branch` through the policy (the cache entry is the model's
    /// ``DiffusionTransformer/cacheKey(for:branch:)`` for it: `branch` itself unless the model says otherwise).
    ///
    /// If the call throws, the cache state is left as it was before the call.
    /// - Throws: ``CacheError/runNotStarted``, ``CacheError/stepOutOfRange(branch:step:steps:)``,
    ///   ``CacheError/shapeMismatch(_:)``, ``CacheError/replayMismatch(_:)``,
    ///   ``CacheError/perSampleUnsupported(_:)``, or whatever the model throws.
    public func callAsFunction(_ input: Model.Input, branch requested: BranchKey = .cond) throws -> Tensor {
        guard var run else { throw CacheError.runNotStarted }
        var state = try model.prepare(input)
        let branch = try model.cacheKey(for: state, branch: requested)
        var cache = run.branches[branch] ?? BranchCache()
        let step = cache.nextStep
        // A shared counter (TeaCacheSchedule.sharedCounter) wraps like the reference's, and branches may
        // share an entry then: only per-entry steps bound the calls.
        guard step < run.steps || run.policy.callsMayExceedSteps else {
            throw CacheError.stepOutOfRange(branch: branch, step: step, steps: run.steps)
        }
        let m = run.policy.needsModulatedInput || calibrationRecorder != nil ? try model.modulatedInput(state) : nil
        let shapes = state.streams.map(\.shape)
        guard !shapes.isEmpty else { throw CacheError.shapeMismatch("the model state has no streams to cache") }

        if cache.streamShapes != nil, cache.streamShapes != shapes || (m != nil && cache.modulatedShape != m?.shape) {
            // Shapes changed within the run: this branch's cached tensors no longer apply.
            run.policy.reset(branch, batch: cache.streamShapes?.first?.first ?? 0)
            cache.residuals = nil
        }

        let blocks = try run.runner.map { r in try r.count(state) }
        if let blocks, blocks < run.split.head + run.split.tail {
            throw CacheError.policyUnsupported(
                "\(run.policy.name) runs \(run.split.head) head and \(run.split.tail) tail blocks; the model has \(blocks)")
        }
        let stackInput = state.streams
        for i in 0..<run.split.head { try run.runner?.run(i, &state) }
        if run.split.head > 0 { try Self.checkStreams(state.streams, expected: shapes) }
        let headResidual = run.split.head > 0 ? try state.streams[0] - stackInput[0] : nil
        let call = CacheCall(step: step, branch: branch, steps: run.steps, modulatedInput: m, regionInput: state.streams,
                             headResidual: headResidual,
                             hasStoredResidual: cache.residuals != nil, mustCompute: run.mask?.contains(step) ?? false)

        let decisions: [(sample: Int?, decision: CacheDecision)]
        let output: Tensor
        if run.policy.decidesPerSample {
            decisions = try perSampleStep(&state, call: call, shapes: shapes, cache: &cache, run: &run)
            output = try model.outputHead(state)
            if decisions.contains(where: { !$0.decision.skips }), let residuals = cache.residuals {
                try run.policy.didCompute(call, residuals: residuals, output: output)
            }
        } else {
            let decision: CacheDecision
            (decision, output) = try wholeBatchStep(&state, call: call, stackInput: stackInput, blocks: blocks, shapes: shapes,
                                                    cache: &cache, run: &run)
            decisions = [(nil, decision)]
        }
        if let m { try calibrationRecorder?.record(branch: branch, modulatedInput: m, output: output) }

        cache.modulatedShape = m?.shape
        cache.streamShapes = shapes
        cache.nextStep = step + 1
        for (sample, d) in decisions {
            run.trace.entries.append(CacheTrace.Entry(call: run.calls, step: step, branch: branch, sample: sample, decision: d))
        }
        run.calls += 1
        run.branches[branch] = cache
        self.run = run
        return output
    }

    /// One decision for the whole batch: the policy's reuse (through the one apply path) or the one compute
    /// path, then the tail blocks and the output head (unless the policy forecast the output).
    private func wholeBatchStep(
        _ state: inout Model.State, call: CacheCall, stackInput: [Tensor], blocks: Int?, shapes: [[Int]],
        cache: inout BranchCache, run: inout Run
    ) throws -> (CacheDecision, Tensor) {
        let decision = try Self.single(try run.policy.decide(call), call: call, policy: run.policy)
        if decision.skips {
            let reuse = try run.policy.reuse(call)
            if case .output(let forecast) = reuse { return (decision, forecast) }
            state.streams = try Self.applying(reuse, stored: cache.residuals, to: call, policy: run.policy)
            try finishStack(&state, blocks: blocks, shapes: shapes, run: run)
            return (decision, try model.outputHead(state))
        }
        let residuals = try computeRegion(&state, shapes: shapes, blocks: blocks, run: &run)
        cache.residuals = Self.stored(residuals, run.policy.storedStreams)
        try finishStack(&state, blocks: blocks, shapes: shapes, run: run)
        try magRatioRecorder?.record(branch: call.branch, residual: run.split == .wholeStack
                                     ? residuals[0] : try state.streams[0] - stackInput[0])
        let output = try model.outputHead(state)
        try run.policy.didCompute(call, residuals: residuals, output: output)
        return (decision, output)
    }

    /// The one decision of a whole-batch call, with the step mask enforced.
    private static func single(_ decisions: [CacheDecision], call: CacheCall, policy: any StepCachePolicy) throws(CacheError) -> CacheDecision {
        guard decisions.count == 1, let d = decisions.first else {
            throw .policyUnsupported("\(policy.name) returned \(decisions.count) decisions for one whole-batch call")
        }
        return masked(d, call)
    }

    /// `decision`, turned into a forced compute when the step mask requires one.
    private static func masked(_ decision: CacheDecision, _ call: CacheCall) -> CacheDecision {
        guard call.mustCompute, decision.skips else { return decision }
        var d = decision
        d.action = .compute
        d.forced = true
        d.reason = .stepMask
        return d
    }

    /// The one compute path: runs the policy's region (the whole stack, or the blocks between its head and
    /// tail blocks), checks the shapes and returns every stream's residual `out − in`.
    private func computeRegion(_ state: inout Model.State, shapes: [[Int]], blocks: Int?, run: inout Run) throws -> [Tensor] {
        let inputs = state.streams
        if let blocks, let runner = run.runner {
            for i in run.split.head..<(blocks - run.split.tail) { try runner.run(i, &state) }
        } else {
            try model.runBlocks(&state)
        }
        run.blockStackRuns += 1
        try Self.checkStreams(state.streams, expected: shapes)
        return try Self.subtracting(inputs, from: state.streams)
    }

    /// The tail blocks and the stack's final work, for a policy with its own block split.
    private func finishStack(_ state: inout Model.State, blocks: Int?, shapes: [[Int]], run: Run) throws {
        guard let blocks, let runner = run.runner else { return }
        for i in (blocks - run.split.tail)..<blocks { try runner.run(i, &state) }
        try runner.finish(&state)
        try Self.checkStreams(state.streams, expected: shapes)
    }

    /// The residuals a policy keeps.
    private static func stored(_ residuals: [Tensor], _ streams: CacheStoredStreams) -> [Tensor]? {
        switch streams {
        case .all: return residuals
        case .first: return [residuals[0]]
        case .none: return nil
        }
    }

    /// The one residual-apply path: the region's input plus the stored or supplied residual (for the streams
    /// it covers; the others pass unchanged).
    private static func applying(
        _ reuse: CacheReuse, stored: [Tensor]?, to call: CacheCall, policy: any StepCachePolicy
    ) throws -> [Tensor] {
        let residuals: [Tensor]
        switch reuse {
        case .storedResidual:
            guard let stored else {
                throw CacheError.replayMismatch("branch '\(call.branch)' is told to skip step \(call.step) but has no cached residual")
            }
            residuals = stored
        case .residual(let r): residuals = r
        case .output: throw CacheError.policyUnsupported("\(policy.name): an output forecast is not a residual")
        }
        return try adding(residuals, to: call.regionInput)
    }

    // MARK: - Per-sample decisions

    private func perSampleStep(
        _ state: inout Model.State, call: CacheCall, shapes: [[Int]], cache: inout BranchCache, run: inout Run
    ) throws -> [(sample: Int?, decision: CacheDecision)] {
        guard run.split == .wholeStack, run.policy.storedStreams == .all else {
            throw CacheError.perSampleUnsupported("\(run.policy.name) keeps per-sample decisions only over the whole stack and every stream")
        }
        guard let selectable = state as? any BatchSelectableState else {
            throw CacheError.perSampleUnsupported("\(Model.State.self) does not conform to BatchSelectableState")
        }
        let batch = selectable.batchSize
        let m = call.modulatedInput
        guard batch >= 1, m.map({ $0.rank >= 1 && $0.shape[0] == batch }) ?? true, shapes.allSatisfy({ $0.first == batch }) else {
            throw CacheError.shapeMismatch(
                "per-sample mode needs axis 0 = batch (\(batch)) in the modulated input \(m?.shape ?? []) and every stream \(shapes)")
        }
        let raw = try run.policy.decide(call)
        guard raw.count == batch else {
            throw CacheError.policyUnsupported("\(run.policy.name) returned \(raw.count) decisions for a batch of \(batch)")
        }
        let decisions: [(sample: Int?, decision: CacheDecision)] = raw.enumerated().map { ($0.offset, Self.masked($0.element, call)) }
        let computing = decisions.compactMap { $0.decision.skips ? nil : $0.sample }
        if computing.count < batch && cache.residuals == nil {
            throw CacheError.replayMismatch("branch '\(call.branch)' is told to skip at step \(call.step) but has no cached residual")
        }

        if computing.count == batch {
            cache.residuals = try computeRegion(&state, shapes: shapes, blocks: nil, run: &run)
        } else if computing.isEmpty {
            state.streams = try Self.applying(.storedResidual, stored: cache.residuals, to: call, policy: run.policy)
            return decisions
        } else if let residuals = cache.residuals {
            var sub = try Self.select(selectable, computing)
            let subResiduals = try computeRegion(&sub, shapes: shapes.map { [computing.count] + $0.dropFirst() },
                                                 blocks: nil, run: &run)
            var position = [Int: Int]()
            for (j, b) in computing.enumerated() { position[b] = j }
            var streams: [Tensor] = [], newResiduals: [Tensor] = []
            for k in shapes.indices {
                var outRows: [Tensor] = [], resRows: [Tensor] = []
                for b in 0..<batch {
                    if let j = position[b] {
                        outRows.append(try sub.streams[k].slice(axis: 0, j..<(j + 1)))
                        resRows.append(try subResiduals[k].slice(axis: 0, j..<(j + 1)))
                    } else {
                        let r = try residuals[k].slice(axis: 0, b..<(b + 1))
                        outRows.append(try state.streams[k].slice(axis: 0, b..<(b + 1)) + r)
                        resRows.append(r)
                    }
                }
                streams.append(try Tensor.concatenate(outRows, axis: 0))
                newResiduals.append(try Tensor.concatenate(resRows, axis: 0))
            }
            state.streams = streams
            cache.residuals = newResiduals
        }
        if let residuals = cache.residuals { try magRatioRecorder?.record(branch: call.branch, residual: residuals[0]) }
        return decisions
    }

    private static func select<S: BatchSelectableState>(_ state: S, _ indices: [Int]) throws -> Model.State {
        guard let selected = try state.selecting(batch: indices) as? Model.State else {
            throw CacheError.perSampleUnsupported("selecting(batch:) of \(S.self) did not return the model's state type")
        }
        return selected
    }

    // MARK: - Stream arithmetic

    private static func checkStreams(_ streams: [Tensor], expected: [[Int]]) throws(CacheError) {
        let got = streams.map(\.shape)
        guard got == expected else {
            throw .shapeMismatch("runBlocks must keep the stream count and shapes: expected \(expected), got \(got)")
        }
    }

    private static func subtracting(_ inputs: [Tensor], from outputs: [Tensor]) throws -> [Tensor] {
        try zip(outputs, inputs).map { try $0 - $1 }
    }

    /// `streams` with `residuals` added to the first `residuals.count` of them.
    private static func adding(_ residuals: [Tensor], to streams: [Tensor]) throws -> [Tensor] {
        guard residuals.count <= streams.count, zip(residuals, streams).allSatisfy({ $0.shape == $1.shape }) else {
            throw CacheError.shapeMismatch(
                "cached residuals \(residuals.map(\.shape)) do not match the streams \(streams.map(\.shape))")
        }
        var out = streams
        for k in residuals.indices { out[k] = try streams[k] + residuals[k] }
        return out
    }
}

/// Not `Sendable`: an instance holds one generation's mutable cache state (<doc:ThreadSafety>).
@available(*, unavailable, message: "a CachedTransformer holds one generation's cache state; make one per generation around a shared model")
extension CachedTransformer: Sendable {}
