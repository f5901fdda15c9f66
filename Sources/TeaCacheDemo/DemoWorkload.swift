import Dispatch
import DiTModels
import TeaCache
import Tensors

/// The result of an uncached sampling run.
public struct UncachedRun: Sendable {
    /// The final latent.
    public var latent: Tensor
    /// Wall seconds of the run (the sampler loop with plain forwards; the time spent copying out the
    /// modulated inputs for calibration is measured and subtracted).
    public var wallSeconds: Double
    /// Wall seconds of each model call (prepare → blocks → head), in call order.
    public var forwardSeconds: [Double]
    /// Calibration pairs recorded from the run (consecutive calls of each branch).
    public var samples: [CalibrationSample]
    /// MagCache magnitude ratios recorded from the run (stream 0's block-stack residual of every call).
    public var magRatios: MagRatioRecorder
}

/// The result of a sampling run through `CachedTransformer`.
public struct CachedRun: Sendable {
    /// The final latent.
    public var latent: Tensor
    /// Wall seconds of the run.
    public var wallSeconds: Double
    /// Every decision.
    public var trace: CacheTrace
}

/// What a skipped call costs beyond `prepare` and the output head: the modulated input, the relative
/// L1 distance, the policy update and adding the cached residual, against one full forward.
public struct DecisionOverhead: Sendable {
    /// Median seconds of the skip-path extra work.
    public var decisionSeconds: Double
    /// Median seconds of one forward.
    public var forwardSeconds: Double
    /// Median seconds of `prepare` (runs on every call, computed or skipped).
    public var prepareSeconds: Double
    /// Median seconds of the output head (runs on every call).
    public var headSeconds: Double
    /// `decisionSeconds / forwardSeconds`.
    public var fraction: Double { forwardSeconds > 0 ? decisionSeconds / forwardSeconds : 0 }
    /// What a skipped call costs relative to a computed one: `(prepare + decision + head) / forward`.
    public var skippedCallFraction: Double {
        forwardSeconds > 0 ? (prepareSeconds + decisionSeconds + headSeconds) / forwardSeconds : 0
    }

    /// The speedup to expect when `skipped` of `calls` calls skip, charging each skipped call
    /// ``skippedCallFraction`` of a forward.
    public func expectedSpeedup(calls: Int, computed: Int) -> Double {
        let cost = Double(computed) + Double(calls - computed) * skippedCallFraction
        return cost > 0 ? Double(calls) / cost : 1
    }
}

/// Called after every sampling step: completed steps, total steps, seconds elapsed.
public typealias StepProgress = (_ step: Int, _ total: Int, _ elapsed: Double) -> Void

/// A model with its inputs and sampler, ready to run uncached, cached, and to time the decision.
public protocol DemoWorkload {
    /// A description of the model and shapes.
    var summary: String { get }
    /// The number of sampling steps.
    var steps: Int { get }
    /// Runs the sampler with plain forwards, recording calibration pairs. `inputSeed` replaces the
    /// seed of the random latent and conditioning (for calibration over several inputs).
    func runUncached(inputSeed: UInt64?, progress: StepProgress?) throws(DemoError) -> UncachedRun
    /// Runs the sampler through a `CachedTransformer` with `policy`.
    func runCached(_ policy: CachePolicy, progress: StepProgress?) throws(DemoError) -> CachedRun
    /// The number of blocks a First-Block Cache run can skip beyond block 0 (nil when the model is not a
    /// `BlockwiseDiffusionTransformer`).
    var blockCount: Int? { get }
    /// Times the skip-path extra work (median of `repeats`) against `forwardSeconds` (or, when nil,
    /// the median of `repeats` forwards).
    func measureDecisionOverhead(
        _ configuration: TeaCacheConfiguration, repeats: Int, forwardSeconds: Double?
    ) throws(DemoError) -> DecisionOverhead
}

/// A ``DemoWorkload`` for any `DiffusionTransformer`: a family supplies the model, the sampler and
/// a factory of seeded inputs.
public struct SampledWorkload<Model: DiffusionTransformer>: DemoWorkload {
    /// The model.
    public let model: Model
    /// The sampler (steps, timestep convention, CFG).
    public let sampler: FlowMatchEulerSampler
    /// The seed of the default inputs.
    public let inputSeed: UInt64
    /// Builds the inputs of a run from a seed.
    public let inputs: (UInt64) throws -> SamplingInputs<Model.Input>
    /// A description of the model and shapes.
    public let summary: String

    /// A workload.
    public init(model: Model, sampler: FlowMatchEulerSampler, inputSeed: UInt64, summary: String,
                inputs: @escaping (UInt64) throws -> SamplingInputs<Model.Input>) {
        self.model = model
        self.sampler = sampler
        self.inputSeed = inputSeed
        self.summary = summary
        self.inputs = inputs
    }

    public var steps: Int { sampler.steps }

    public var blockCount: Int? {
        // nil when the model is not blockwise, or its inputs cannot be built: the run builds them again
        // and reports that error, typed.
        guard let blockwise = model as? any BlockwiseDiffusionTransformer, let x = try? inputs(inputSeed),
              let input = try? x.makeInput(x.latent, sampler.timesteps[0], .cond) else { return nil }
        return Self.count(blockwise, input)
    }

    private static func count<B: BlockwiseDiffusionTransformer>(_ b: B, _ input: Model.Input) -> Int? {
        guard let i = input as? B.Input, let s = try? b.prepare(i) else { return nil }  // as above: the run reports it
        return b.blockCount(s)
    }

    public func runUncached(inputSeed seed: UInt64?, progress: StepProgress?) throws(DemoError) -> UncachedRun {
        do {
            let x = try inputs(seed ?? inputSeed)
            var forwardSeconds: [Double] = []
            var excluded: UInt64 = 0
            // Pairs are recorded on the fly (only the previous call per branch is kept), so the run's
            // memory stays flat; computing m and recording are timed and excluded from the wall.
            var recorder = CalibrationRecorder()
            var magRatios = MagRatioRecorder()
            let start = DispatchTime.now().uptimeNanoseconds
            let latent = try sampler.sample(from: x.latent, model: { latent, t, branch, _ in
                let input = try x.makeInput(latent, t, branch)
                let c0 = DispatchTime.now().uptimeNanoseconds
                var state = try model.prepare(input)
                let m0 = DispatchTime.now().uptimeNanoseconds
                let m = try model.modulatedInput(state)
                let h0 = state.streams[0]
                let m1 = DispatchTime.now().uptimeNanoseconds
                try model.runBlocks(&state)
                let out = try model.outputHead(state)
                let c1 = DispatchTime.now().uptimeNanoseconds
                try recorder.record(branch: branch, modulatedInput: m, output: out)
                try magRatios.record(branch: branch, residual: state.streams[0] - h0)
                let c2 = DispatchTime.now().uptimeNanoseconds
                excluded += (m1 - m0) + (c2 - c1)
                forwardSeconds.append(Double(c1 - c0 - (m1 - m0)) / 1e9)
                return out
            }, progress: progress.map { p in { p($0.step, $0.total, $0.elapsed); return .proceed } })
            let wall = Double(DispatchTime.now().uptimeNanoseconds - start - excluded) / 1e9
            return UncachedRun(latent: latent, wallSeconds: wall, forwardSeconds: forwardSeconds, samples: recorder.samples,
                               magRatios: magRatios)
        } catch { throw DemoError.wrap(error) }
    }

    public func runCached(_ policy: CachePolicy, progress: StepProgress?) throws(DemoError) -> CachedRun {
        do {
            let x = try inputs(inputSeed)
            let cached = CachedTransformer(model: model, policy: policy)
            try cached.beginRun(steps: sampler.steps)
            let start = DispatchTime.now().uptimeNanoseconds
            let latent = try sampler.sample(from: x.latent, model: { latent, t, branch, _ in
                try cached(x.makeInput(latent, t, branch), branch: branch)
            }, progress: progress.map { p in { p($0.step, $0.total, $0.elapsed); return .proceed } })
            let wall = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            guard let trace = cached.endRun() else { throw DemoError.model("the cached run produced no trace") }
            return CachedRun(latent: latent, wallSeconds: wall, trace: trace)
        } catch { throw DemoError.wrap(error) }
    }

    public func measureDecisionOverhead(
        _ configuration: TeaCacheConfiguration, repeats: Int, forwardSeconds: Double?
    ) throws(DemoError) -> DecisionOverhead {
        guard repeats >= 1 else { throw .invalidOption("overhead repeats is \(repeats); use at least 1") }
        do {
            let x = try inputs(inputSeed)
            let t = sampler.timesteps
            let current = try x.makeInput(x.latent, t[min(1, t.count - 1)], .cond)
            let previous = try x.makeInput(x.latent, t[0], .cond)
            let probe = try DecisionOverheadProbe(model: model, current: current, previous: previous,
                                                  configuration: configuration, steps: sampler.steps)
            _ = try probe.skippedCallExtra()  // warm-up
            let decision = try Self.median(repeats) { _ = try probe.skippedCallExtra() }
            let prepare = try Self.median(repeats) { _ = try model.prepare(current) }
            let state = try model.prepare(current)
            let head = try Self.median(repeats) { _ = try model.outputHead(state) }
            let forward = try forwardSeconds ?? Self.median(repeats) { _ = try model.forward(current) }
            return DecisionOverhead(decisionSeconds: decision, forwardSeconds: forward, prepareSeconds: prepare,
                                    headSeconds: head)
        } catch { throw DemoError.wrap(error) }
    }

    static func median(_ repeats: Int, _ body: () throws -> Void) throws -> Double {
        var times: [Double] = []
        for _ in 0..<repeats {
            let s = DispatchTime.now().uptimeNanoseconds
            try body()
            times.append(Double(DispatchTime.now().uptimeNanoseconds - s) / 1e9)
        }
        return DemoStatistics.median(times)
    }
}
