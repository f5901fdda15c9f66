import Tensors

/// A ``DiffusionTransformer`` wrapped with TeaCache.
///
/// A final class because it is stateful across calls (previous modulated inputs, residuals,
/// accumulators) and is meant to be shared by reference between a sampler's closure and the code
/// that reads its ``trace``. It holds no global or static state: two instances never interact. It is
/// not thread-safe; use one instance per concurrent generation.
///
/// Lifecycle: ``beginRun(steps:)`` announces the number of steps of a sampling run and resets every
/// cache (so runs with different step counts, shapes or branch sets start from scratch); then each
/// branch (``BranchKey``, e.g. `.cond` and `.uncond`) is called once per step; calling a branch more
/// than `steps` times throws ``TeaCacheError/stepOutOfRange(branch:step:steps:)``. If the shapes of
/// a branch change within a run, that branch's cache is reset automatically (its next call computes).
///
/// One call: `prepare` → modulated input `m` → decision → either `runBlocks` (storing
/// `residual = out − in` per stream) or `in + residual` per stream → `outputHead`. The previous
/// modulated input of the branch is updated on every call, computed or skipped.
///
/// In per-sample mode (``TeaCacheConfiguration/perSample``; the state must be a
/// ``BatchSelectableState``), each batch element gets its own distance and decision; only the
/// elements that compute are gathered and run through the blocks, the others reuse their own
/// residual rows.
public final class CachedTransformer<Model: DiffusionTransformer> {
    private struct BranchCache {
        var previousModulated: Tensor?
        var residuals: [Tensor]?
        var streamShapes: [[Int]]?
        var nextStep = 0
    }

    private struct Run {
        var policy: TeaCachePolicy
        var branches: [BranchKey: BranchCache] = [:]
        var trace: TeaCacheTrace
        var calls = 0
        var blockStackRuns = 0
    }

    /// The wrapped model.
    public let model: Model
    /// The configuration; a new one takes effect at the next ``beginRun(steps:)``.
    public var configuration: TeaCacheConfiguration
    /// When set, every call records a (modulated-input distance, output distance) pair per branch.
    public var calibrationRecorder: CalibrationRecorder?
    private var run: Run?

    /// Wraps `model`. Call ``beginRun(steps:)`` before the first call.
    public init(model: Model, configuration: TeaCacheConfiguration) {
        self.model = model
        self.configuration = configuration
    }

    /// Starts a run of `steps` steps per branch and clears every cache, accumulator and the trace.
    /// If it throws, no run is active afterwards (calls throw ``TeaCacheError/runNotStarted``).
    /// - Throws: ``TeaCacheError/invalidStepCount(_:)``, or ``TeaCacheError/replayMismatch(_:)`` when
    ///   replaying a schedule recorded for another step count.
    public func beginRun(steps: Int) throws(TeaCacheError) {
        // A failed start must not leave the previous run active: end it first.
        run = nil
        try configuration.validate()
        let policy = try TeaCachePolicy(configuration: configuration, steps: steps)
        run = Run(policy: policy, trace: TeaCacheTrace(steps: steps))
        calibrationRecorder?.beginRun()
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
        guard step < run.policy.steps || run.policy.configuration.schedule.sharedCounter != nil else {
            throw TeaCacheError.stepOutOfRange(branch: branch, step: step, steps: run.policy.steps)
        }
        let m = try model.modulatedInput(state)
        let shapes = state.streams.map(\.shape)
        guard !shapes.isEmpty else { throw TeaCacheError.shapeMismatch("the model state has no streams to cache") }

        if let previous = cache.previousModulated, previous.shape != m.shape || cache.streamShapes != shapes {
            // Shapes changed within the run: this branch's cached tensors no longer apply.
            let oldBatch = cache.streamShapes?.first?.first ?? 0
            run.policy.reset(TeaCacheSlot(branch: branch))
            for b in 0..<oldBatch { run.policy.reset(TeaCacheSlot(branch: branch, sample: b)) }
            cache.previousModulated = nil
            cache.residuals = nil
        }

        let decisions: [(sample: Int?, decision: TeaCacheDecision)]
        if run.policy.configuration.perSample {
            decisions = try perSampleStep(&state, m: m, shapes: shapes, step: step, branch: branch,
                                          cache: &cache, run: &run)
        } else {
            decisions = try wholeBatchStep(&state, m: m, shapes: shapes, step: step, branch: branch,
                                           cache: &cache, run: &run)
        }
        let output = try model.outputHead(state)
        try calibrationRecorder?.record(branch: branch, modulatedInput: m, output: output)

        cache.previousModulated = m
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

    // MARK: - Whole-batch decisions (the reference behaviour)

    private func wholeBatchStep(
        _ state: inout Model.State, m: Tensor, shapes: [[Int]], step: Int, branch: BranchKey,
        cache: inout BranchCache, run: inout Run
    ) throws -> [(sample: Int?, decision: TeaCacheDecision)] {
        let distance = try cache.previousModulated.map { p throws(TeaCacheError) in try RelativeL1.distance(m, previous: p) }
        let decision = try run.policy.decide(step: step, branch: branch, distance: distance)
        if decision.skips {
            guard let residuals = cache.residuals else {
                throw TeaCacheError.replayMismatch("branch '\(branch)' is told to skip step \(step) but has no cached residual")
            }
            state.streams = try Self.adding(residuals, to: state.streams)
        } else {
            let inputs = state.streams
            try model.runBlocks(&state)
            run.blockStackRuns += 1
            try Self.checkStreams(state.streams, expected: shapes)
            cache.residuals = try Self.subtracting(inputs, from: state.streams)
        }
        return [(nil, decision)]
    }

    // MARK: - Per-sample decisions

    private func perSampleStep(
        _ state: inout Model.State, m: Tensor, shapes: [[Int]], step: Int, branch: BranchKey,
        cache: inout BranchCache, run: inout Run
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
            decisions.append((b, try run.policy.decide(step: step, slot: TeaCacheSlot(branch: branch, sample: b),
                                                       distance: distances[b])))
        }
        let computing = decisions.compactMap { $0.decision.skips ? nil : $0.sample }
        if computing.count < batch && cache.residuals == nil {
            throw TeaCacheError.replayMismatch("branch '\(branch)' is told to skip at step \(step) but has no cached residual")
        }

        if computing.count == batch {
            let inputs = state.streams
            try model.runBlocks(&state)
            run.blockStackRuns += 1
            try Self.checkStreams(state.streams, expected: shapes)
            cache.residuals = try Self.subtracting(inputs, from: state.streams)
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
