import Tensors

/// A ``DiffusionTransformer`` wrapped with a step cache: TeaCache, First-Block Cache or MagCache
/// (``CachePolicy``).
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
/// than `steps` times throws ``TeaCacheError/stepOutOfRange(branch:step:steps:)``. If the shapes of
/// a branch change within a run, that branch's cache is reset automatically (its next call computes).
///
/// One TeaCache call: `prepare` → modulated input `m` → decision → either `runBlocks` (storing
/// `residual = out − in` per stream) or `in + residual` per stream → `outputHead`. The previous
/// modulated input of the branch is updated on every call, computed or skipped. First-Block Cache runs
/// block 0 first and decides from its residual (``FirstBlockCacheConfiguration``); MagCache decides from
/// the step's calibrated ratio (``MagCacheConfiguration``).
///
/// In per-sample mode (``TeaCacheConfiguration/perSample``; the state must be a
/// ``BatchSelectableState``), each batch element gets its own distance and decision; only the
/// elements that compute are gathered and run through the blocks, the others reuse their own
/// residual rows.
public final class CachedTransformer<Model: DiffusionTransformer> {
    private struct BranchCache {
        var previousModulated: Tensor?
        /// TeaCache: the block-stack residual per stream; First-Block Cache: the residual of blocks 1… per
        /// stream; MagCache: `[stream 0's block-stack residual]`.
        var residuals: [Tensor]?
        /// First-Block Cache: block 0's residual of stream 0 at the last computed call.
        var headResidual: Tensor?
        var streamShapes: [[Int]]?
        var nextStep = 0
    }

    private enum Engine {
        case teaCache(TeaCachePolicy)
        case firstBlock(FirstBlockCacheConfiguration, BlockRunner)
        case magCache(MagCachePolicy)
    }

    /// Block-by-block access to a ``BlockwiseDiffusionTransformer`` model, opened once.
    private struct BlockRunner {
        var count: (Model.State) throws -> Int
        var run: (Int, inout Model.State) throws -> Void
        var finish: (inout Model.State) throws -> Void
    }

    private struct Run {
        var engine: Engine
        var steps: Int
        var branches: [BranchKey: BranchCache] = [:]
        var trace: TeaCacheTrace
        var calls = 0
        var blockStackRuns = 0
    }

    /// The wrapped model.
    public let model: Model
    /// The cache policy; a new one takes effect at the next ``beginRun(steps:)``.
    public var policy: CachePolicy
    /// The TeaCache configuration, when the policy is ``CachePolicy/teaCache(_:)``.
    public var configuration: TeaCacheConfiguration? {
        if case .teaCache(let c) = policy { return c }
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

    /// Wraps `model` with any policy. Call ``beginRun(steps:)`` before the first call.
    public init(model: Model, policy: CachePolicy) {
        self.model = model
        self.policy = policy
    }

    /// Starts a run of `steps` steps per branch and clears every cache, accumulator and the trace.
    /// If it throws, no run is active afterwards (calls throw ``TeaCacheError/runNotStarted``).
    /// - Throws: ``TeaCacheError/invalidStepCount(_:)``, ``TeaCacheError/replayMismatch(_:)`` when
    ///   replaying a schedule recorded for another step count, ``TeaCacheError/policyUnsupported(_:)`` for
    ///   First-Block Cache on a model that is not a ``BlockwiseDiffusionTransformer``.
    public func beginRun(steps: Int) throws(TeaCacheError) {
        // A failed start must not leave the previous run active: end it first.
        run = nil
        try policy.validate()
        guard steps >= 1 else { throw .invalidStepCount(steps) }
        let engine: Engine
        switch policy {
        case .teaCache(let c): engine = .teaCache(try TeaCachePolicy(configuration: c, steps: steps))
        case .magCache(let c): engine = .magCache(try MagCachePolicy(configuration: c, steps: steps))
        case .firstBlock(let c):
            guard let blockwise = model as? any BlockwiseDiffusionTransformer, let runner = Self.runner(blockwise) else {
                throw .policyUnsupported("First-Block Cache runs block 0 on its own: \(Model.self) must conform to "
                                         + "BlockwiseDiffusionTransformer (blockCount and runBlock)")
            }
            engine = .firstBlock(c, runner)
        }
        run = Run(engine: engine, steps: steps, trace: TeaCacheTrace(steps: steps))
        calibrationRecorder?.beginRun()
        magRatioRecorder?.beginRun()
    }

    /// The block runner of a blockwise model whose dynamic type is `Model`.
    private static func runner<B: BlockwiseDiffusionTransformer>(_ b: B) -> BlockRunner? {
        guard Model.State.self == B.State.self else { return nil }
        func cast<T, U>(_ x: T, _: U.Type) throws -> U {
            guard let y = x as? U else { throw TeaCacheError.policyUnsupported("state type \(T.self) is not \(U.self)") }
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
    public func endRun() -> TeaCacheTrace? {
        defer { run = nil }
        return run?.trace
    }

    /// The decisions of the current (or last unfinished) run.
    public var trace: TeaCacheTrace? { run?.trace }

    /// How many times the block stack ran in the current run (a per-sample partial batch counts once).
    public var blockStackRuns: Int { run?.blockStackRuns ?? 0 }

    /// The next per-branch step `branch` will be called with (0 before its first call).
    public func nextStep(for branch: BranchKey) -> Int { run?.branches[branch]?.nextStep ?? 0 }

    /// One model call of `branch` with TeaCache (the cache entry is the model's
    /// ``DiffusionTransformer/cacheKey(for:branch:)`` for it: `branch` itself unless the model says otherwise).
    ///
    /// If the call throws, the cache state is left as it was before the call.
    /// - Throws: ``TeaCacheError/runNotStarted``, ``TeaCacheError/stepOutOfRange(branch:step:steps:)``,
    ///   ``TeaCacheError/shapeMismatch(_:)``, ``TeaCacheError/replayMismatch(_:)``,
    ///   ``TeaCacheError/perSampleUnsupported(_:)``, or whatever the model throws.
    public func callAsFunction(_ input: Model.Input, branch requested: BranchKey = .cond) throws -> Tensor {
        guard var run else { throw TeaCacheError.runNotStarted }
        var state = try model.prepare(input)
        let branch = try model.cacheKey(for: state, branch: requested)
        var cache = run.branches[branch] ?? BranchCache()
        let step = cache.nextStep
        // A shared counter (TeaCacheSchedule.sharedCounter) wraps like the reference's, and branches may
        // share an entry then: only per-entry steps bound the calls.
        var sharesCounter = false
        if case .teaCache(let p) = run.engine, p.configuration.schedule.sharedCounter != nil { sharesCounter = true }
        guard step < run.steps || sharesCounter else {
            throw TeaCacheError.stepOutOfRange(branch: branch, step: step, steps: run.steps)
        }
        let needsModulated: Bool
        if case .teaCache = run.engine { needsModulated = true } else { needsModulated = calibrationRecorder != nil }
        let m = needsModulated ? try model.modulatedInput(state) : nil
        let shapes = state.streams.map(\.shape)
        guard !shapes.isEmpty else { throw TeaCacheError.shapeMismatch("the model state has no streams to cache") }

        if cache.streamShapes != nil, cache.streamShapes != shapes || (m != nil && cache.previousModulated?.shape != m?.shape) {
            // Shapes changed within the run: this branch's cached tensors no longer apply.
            let oldBatch = cache.streamShapes?.first?.first ?? 0
            switch run.engine {
            case .teaCache(var policy):
                policy.reset(TeaCacheSlot(branch: branch))
                for b in 0..<oldBatch { policy.reset(TeaCacheSlot(branch: branch, sample: b)) }
                run.engine = .teaCache(policy)
            case .magCache(var policy):
                policy.reset(branch)
                run.engine = .magCache(policy)
            case .firstBlock: break
            }
            cache.previousModulated = nil
            cache.residuals = nil
            cache.headResidual = nil
        }

        let decisions: [(sample: Int?, decision: TeaCacheDecision)]
        switch run.engine {
        case .teaCache(var policy):
            guard let m else { throw TeaCacheError.shapeMismatch("no modulated input") }
            if policy.configuration.perSample {
                decisions = try perSampleStep(&state, m: m, shapes: shapes, step: step, branch: branch,
                                              cache: &cache, policy: &policy, run: &run)
            } else {
                decisions = try wholeBatchStep(&state, m: m, shapes: shapes, step: step, branch: branch,
                                               cache: &cache, policy: &policy, run: &run)
            }
            run.engine = .teaCache(policy)
        case .firstBlock(let configuration, let runner):
            decisions = [(nil, try firstBlockStep(&state, shapes: shapes, branch: branch, cache: &cache,
                                                  configuration: configuration, runner: runner, run: &run))]
        case .magCache(var policy):
            decisions = [(nil, try magCacheStep(&state, shapes: shapes, step: step, branch: branch, cache: &cache,
                                                policy: &policy, run: &run))]
            run.engine = .magCache(policy)
        }
        let output = try model.outputHead(state)
        if let m { try calibrationRecorder?.record(branch: branch, modulatedInput: m, output: output) }

        if let m { cache.previousModulated = m }
        cache.streamShapes = shapes
        cache.nextStep = step + 1
        for (sample, d) in decisions {
            run.trace.entries.append(TeaCacheTrace.Entry(call: run.calls, step: step, branch: branch, sample: sample, decision: d))
        }
        run.calls += 1
        run.branches[branch] = cache
        self.run = run
        return output
    }

    /// Runs the whole stack, records stream 0's residual for MagCache calibration, and returns every
    /// stream's residual.
    private func computeStack(_ state: inout Model.State, shapes: [[Int]], branch: BranchKey, run: inout Run) throws -> [Tensor] {
        let inputs = state.streams
        try model.runBlocks(&state)
        run.blockStackRuns += 1
        try Self.checkStreams(state.streams, expected: shapes)
        let residuals = try Self.subtracting(inputs, from: state.streams)
        try magRatioRecorder?.record(branch: branch, residual: residuals[0])
        return residuals
    }

    // MARK: - First-Block Cache

    private func firstBlockStep(
        _ state: inout Model.State, shapes: [[Int]], branch: BranchKey, cache: inout BranchCache,
        configuration: FirstBlockCacheConfiguration, runner: BlockRunner, run: inout Run
    ) throws -> TeaCacheDecision {
        let n = try runner.count(state)
        guard n >= 1 else { throw TeaCacheError.policyUnsupported("First-Block Cache needs at least one block") }
        let inputs = state.streams
        try runner.run(0, &state)
        let head = state.streams
        try Self.checkStreams(head, expected: shapes)
        let headResidual = try head[0] - inputs[0]
        let distance = try cache.headResidual.map { p throws(TeaCacheError) in try RelativeL1.distance(headResidual, previous: p) }
        let decision = configuration.decide(distance: cache.residuals == nil ? nil : distance)
        if decision.skips, let tail = cache.residuals {
            state.streams = try Self.adding(tail, to: head)
            try runner.finish(&state)
        } else {
            for i in 1..<n { try runner.run(i, &state) }
            run.blockStackRuns += 1
            try Self.checkStreams(state.streams, expected: shapes)
            cache.residuals = try Self.subtracting(head, from: state.streams)
            cache.headResidual = headResidual
            try runner.finish(&state)
            try Self.checkStreams(state.streams, expected: shapes)
            try magRatioRecorder?.record(branch: branch, residual: try state.streams[0] - inputs[0])
        }
        return decision
    }

    // MARK: - MagCache

    private func magCacheStep(
        _ state: inout Model.State, shapes: [[Int]], step: Int, branch: BranchKey, cache: inout BranchCache,
        policy: inout MagCachePolicy, run: inout Run
    ) throws -> TeaCacheDecision {
        let decision = try policy.decide(step: step, branch: branch, hasResidual: cache.residuals != nil)
        if decision.skips, let residual = cache.residuals?.first {
            var streams = state.streams
            guard streams[0].shape == residual.shape else {
                throw TeaCacheError.shapeMismatch("cached residual \(residual.shape) does not match stream 0 \(streams[0].shape)")
            }
            streams[0] = try streams[0] + residual
            state.streams = streams
        } else {
            cache.residuals = [try computeStack(&state, shapes: shapes, branch: branch, run: &run)[0]]
        }
        return decision
    }

    // MARK: - Whole-batch decisions (the reference behaviour)

    private func wholeBatchStep(
        _ state: inout Model.State, m: Tensor, shapes: [[Int]], step: Int, branch: BranchKey,
        cache: inout BranchCache, policy: inout TeaCachePolicy, run: inout Run
    ) throws -> [(sample: Int?, decision: TeaCacheDecision)] {
        let distance = try cache.previousModulated.map { p throws(TeaCacheError) in try RelativeL1.distance(m, previous: p) }
        let decision = try policy.decide(step: step, branch: branch, distance: distance)
        if decision.skips {
            guard let residuals = cache.residuals else {
                throw TeaCacheError.replayMismatch("branch '\(branch)' is told to skip step \(step) but has no cached residual")
            }
            state.streams = try Self.adding(residuals, to: state.streams)
        } else {
            cache.residuals = try computeStack(&state, shapes: shapes, branch: branch, run: &run)
        }
        return [(nil, decision)]
    }

    // MARK: - Per-sample decisions

    private func perSampleStep(
        _ state: inout Model.State, m: Tensor, shapes: [[Int]], step: Int, branch: BranchKey,
        cache: inout BranchCache, policy: inout TeaCachePolicy, run: inout Run
    ) throws -> [(sample: Int?, decision: TeaCacheDecision)] {
        guard let selectable = state as? any BatchSelectableState else {
            throw TeaCacheError.perSampleUnsupported("\(Model.State.self) does not conform to BatchSelectableState")
        }
        let batch = selectable.batchSize
        guard batch >= 1, m.rank >= 1, m.shape[0] == batch, shapes.allSatisfy({ $0.first == batch }) else {
            throw TeaCacheError.shapeMismatch(
                "per-sample mode needs axis 0 = batch (\(batch)) in the modulated input \(m.shape) and every stream \(shapes)")
        }
        let distances: [Double?] = try cache.previousModulated.map { p throws(TeaCacheError) in
            try RelativeL1.perSample(m, previous: p).map { Optional($0) }
        } ?? Array(repeating: nil, count: batch)
        var decisions: [(sample: Int?, decision: TeaCacheDecision)] = []
        for b in 0..<batch {
            decisions.append((b, try policy.decide(step: step, slot: TeaCacheSlot(branch: branch, sample: b),
                                                   distance: distances[b])))
        }
        let computing = decisions.compactMap { $0.decision.skips ? nil : $0.sample }
        if computing.count < batch && cache.residuals == nil {
            throw TeaCacheError.replayMismatch("branch '\(branch)' is told to skip at step \(step) but has no cached residual")
        }

        if computing.count == batch {
            cache.residuals = try computeStack(&state, shapes: shapes, branch: branch, run: &run)
        } else if let residuals = cache.residuals, computing.isEmpty {
            state.streams = try Self.adding(residuals, to: state.streams)
        } else if let residuals = cache.residuals {
            var sub = try Self.select(selectable, computing)
            let subInputs = sub.streams
            try model.runBlocks(&sub)
            run.blockStackRuns += 1
            try Self.checkStreams(sub.streams, expected: shapes.map { [computing.count] + $0.dropFirst() })
            let subResiduals = try Self.subtracting(subInputs, from: sub.streams)
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
        return decisions
    }

    private static func select<S: BatchSelectableState>(_ state: S, _ indices: [Int]) throws -> Model.State {
        guard let selected = try state.selecting(batch: indices) as? Model.State else {
            throw TeaCacheError.perSampleUnsupported("selecting(batch:) of \(S.self) did not return the model's state type")
        }
        return selected
    }

    // MARK: - Stream arithmetic

    private static func checkStreams(_ streams: [Tensor], expected: [[Int]]) throws(TeaCacheError) {
        let got = streams.map(\.shape)
        guard got == expected else {
            throw .shapeMismatch("runBlocks must keep the stream count and shapes: expected \(expected), got \(got)")
        }
    }

    private static func subtracting(_ inputs: [Tensor], from outputs: [Tensor]) throws -> [Tensor] {
        try zip(outputs, inputs).map { try $0 - $1 }
    }

    private static func adding(_ residuals: [Tensor], to streams: [Tensor]) throws -> [Tensor] {
        guard residuals.map(\.shape) == streams.map(\.shape) else {
            throw TeaCacheError.shapeMismatch(
                "cached residuals \(residuals.map(\.shape)) do not match the streams \(streams.map(\.shape))")
        }
        return try zip(streams, residuals).map { try $0 + $1 }
    }
}

/// Not `Sendable`: an instance holds one generation's mutable cache state (<doc:ThreadSafety>).
@available(*, unavailable, message: "a CachedTransformer holds one generation's cache state; make one per generation around a shared model")
extension CachedTransformer: Sendable {}
