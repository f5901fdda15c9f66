import Foundation
import TeaCache
import Tensors

// MARK: Model

/// HiDream-I1 (diffusers `HiDreamImageTransformer2DModel`) in the registry: loading, sampling conventions
/// (timestep = sigma·1000, velocity = −out as `HiDreamImagePipeline` negates the prediction, one call per
/// step), the Full, Dev and Fast presets, the benchmark shape and the fixture plug-in.
///
/// TeaCache (TeaCache4HiDream-I1): the modulated input is the timestep embedding alone, the cached
/// residual covers the image tokens across both block stacks, and the first 10% of the steps are
/// computed, the last one is not forced (`TeaCacheSchedule.hiDreamI1Reference`).
///
/// Fixture arguments are diffusers' forward arguments: `hidden_states`, `timesteps`,
/// `encoder_hidden_states_t5`, `encoder_hidden_states_llama3` and `pooled_embeds`.
public enum HiDreamI1Family: DiTFamilyHarness {
    public typealias Configuration = HiDreamI1Configuration
    public typealias Model = HiDreamI1Transformer

    public static let name = "hidream_i1"
    public static let summary = "HiDream-I1-shaped DiT with MoE feed-forwards (HiDreamImageTransformer2DModel), timestep = sigma·1000, v = −out"

    public static func makeModel(_ configuration: HiDreamI1Configuration, weights: WeightScope) throws(ModelLoadError) -> HiDreamI1Transformer {
        HiDreamI1Transformer(configuration: configuration, weights: weights)
    }

    /// The §6 taper of `t_embedder.timestep_embedder.linear_1.weight` in its stronger HiDream form
    /// (`u = 2000 / steps`, floor 0.002): the modulated input is the timestep embedding itself, and the
    /// Full polynomial turns negative above a distance of about 0.068.
    public static func randomWeightAdjustment(_ configuration: HiDreamI1Configuration, steps: Int) -> WeightAdjustment? {
        let frequencies = sinusoidalColumnFrequencies(dim: HiDreamI1Configuration.timestepChannels, downscaleFreqShift: 0)
        let u = 2000 / Double(steps)
        return { name, t in
            if name == "t_embedder.timestep_embedder.linear_1.weight" {
                taperTimestepColumns(&t, frequencies: frequencies, stepSize: u, floor: 0.002)
            }
        }
    }

    // MARK: Sampling conventions and presets

    public static let timestepConvention = TimestepConvention.sigmaTimes1000
    /// `HiDreamImagePipeline` negates the model output.
    public static func velocity(_ c: HiDreamI1Configuration) -> VelocityConvention { .negated }
    /// Full (TeaCache4HiDream-I1), then Dev and Fast (ComfyUI-TeaCache).
    public static var presets: [TeaCachePreset] { [.hiDreamI1Full, .hiDreamI1Dev, .hiDreamI1Fast] }
}

extension TeaCacheSchedule {
    /// TeaCache4HiDream-I1's counter: calls with `counter < ret_steps = 0.1·N` are computed (the first
    /// 10% of the steps: counters 0 and 1 of 12, 0 … 4 of 50), the last step is not forced.
    public static let hiDreamI1Reference = TeaCacheSchedule(retainFirstSteps: 1, forceLastStep: false, startFraction: 0.1)
}

/// HiDream-I1's TeaCache presets. Full: the reference repository's coefficients (ali-vilab/TeaCache
/// @ 7c10efc, TeaCache4HiDream-I1/teacache_hidream_i1.py line 298, copied character for character from
/// teacache-spec.md §2.2) with its published thresholds. Dev and Fast: the reference has none; these are
/// welltop-cn/ComfyUI-TeaCache's `SUPPORTED_MODELS_COEFFICIENTS` (nodes.py), with the thresholds and
/// step windows of its example workflows (examples/hidream_i1_dev.json: δ 1.0 over the whole run;
/// examples/hidream_i1_fast.json: δ 1.5, end 0.9). ComfyUI-TeaCache computes the first call and the
/// calls outside its window and forces no last step.
extension TeaCachePreset {
    /// The distances are measured on the timestep embedding alone.
    static let hiDreamI1ModulatedInput = "t_embedder(timesteps) (pure timestep embedding)"

    /// HiDream-I1-Full: first 10% of the steps retained, last step not forced. Default δ 0.3
    /// (0.17 → 1.5×, 0.25 → 1.7×, 0.3 → 2.0×, 0.45 → 2.6×).
    public static let hiDreamI1Full = TeaCachePreset(
        reference: "hidream_i1",
        [-3.13605009e+04, -7.12425503e+02, 4.91363285e+01, 8.26515490e+00, 1.08053901e-01],
        defaultThreshold: 0.3, speedups: [(0.17, 1.5), (0.25, 1.7), (0.3, 2.0), (0.45, 2.6)],
        modulatedInput: hiDreamI1ModulatedInput,
        provenance: "TeaCache4HiDream-I1/teacache_hidream_i1.py",
        schedule: .hiDreamI1Reference)

    /// HiDream-I1-Dev (28 steps, no CFG). Default δ 1.0, every call after the first eligible.
    public static let hiDreamI1Dev = TeaCachePreset(
        reference: "hidream_i1_dev", [1.39997273, -4.30130469, 5.01534416, -2.20504164, 0.93942874],
        defaultThreshold: 1.0, modulatedInput: hiDreamI1ModulatedInput,
        provenance: "welltop-cn/ComfyUI-TeaCache nodes.py (hidream_i1_dev), examples/hidream_i1_dev.json",
        schedule: TeaCacheSchedule(retainFirstSteps: 1, forceLastStep: false))

    /// HiDream-I1-Fast (16 steps, no CFG). Default δ 1.5, the last 10% of the steps computed.
    public static let hiDreamI1Fast = TeaCachePreset(
        reference: "hidream_i1_fast", [2.26509623, -6.88864563, 7.61123826, -3.10849353, 0.99927602],
        defaultThreshold: 1.5, modulatedInput: hiDreamI1ModulatedInput,
        provenance: "welltop-cn/ComfyUI-TeaCache nodes.py (hidream_i1_fast), examples/hidream_i1_fast.json",
        schedule: TeaCacheSchedule(retainFirstSteps: 1, forceLastStep: false, endFraction: 0.9))
}

// MARK: TeaCache adapter

/// HiDream-I1's TeaCache state: the image tokens are the one cached stream; the text tokens, llama
/// states, conditioning and rotary tables ride along uncached (the output head only reads the image).
extension HiDreamI1State: BatchSelectableState {
    /// `[image tokens]`, current after every block (``HiDreamI1State/image``).
    ///
    /// The state has exactly one stream: `CachedTransformer` only assigns arrays of the count and shapes
    /// it read.
    public var streams: [Tensor] {
        get { [image] }
        set { image = newValue.soleStream(of: "HiDream-I1") }
    }

    /// The batch size.
    public var batchSize: Int { image.shape[0] }

    /// The state of the batch elements `indices` (image, text, llama and conditioning rows; the rotary
    /// tables are shared by the batch).
    public func selecting(batch indices: [Int]) throws -> HiDreamI1State {
        HiDreamI1State(image: try image.gatheringRows(indices), text: try text.gatheringRows(indices),
                       llama: try llama.map { try $0.gatheringRows(indices) },
                       timestepEmbedding: try timestepEmbedding.gatheringRows(indices),
                       temb: try temb.gatheringRows(indices), rope: rope, latentSize: latentSize,
                       keyMask: try keyMask?.gatheringRows(indices))
    }
}

/// HiDream-I1 as a TeaCache ``DiffusionTransformer``: `prepare` patchifies and embeds, the modulated input
/// is `t_embedder(timesteps)`, `runBlocks` runs both block stacks (so the cached residual is the
/// image-token change across all of them), `outputHead` applies `final_layer` and unpatchifies.
extension HiDreamI1Transformer: DiffusionTransformer {
    public typealias Input = HiDreamI1Input
    public typealias State = HiDreamI1State
}

/// HiDream-I1 block by block (First-Block Cache): the double-stream blocks, then the single-stream
/// blocks (``HiDreamI1Transformer/runBlock(_:_:)``, the loop body of ``HiDreamI1Transformer/runBlocks(_:)``).
extension HiDreamI1Transformer: BlockwiseDiffusionTransformer {
    /// `num_layers + num_single_layers`.
    public func blockCount(_ state: HiDreamI1State) -> Int { depth }
}

extension HiDreamI1Transformer: MemoryBudgeted {}

// MARK: Harness

extension HiDreamI1Family {
    /// Measured on the default model (28 steps, seed 0): every step moves the timestep embedding by a
    /// distance of ≈ 0.024, which the Full polynomial rescales to ≈ 0.31, so δ 0.5, 0.7 and 1.0 skip one,
    /// two and three calls after each computed one (0.2 and 0.3 skip nothing): the preset computes 15 of
    /// 28 calls at 0.5. For the same reason `teacache calibrate --model hidream_i1` needs `--force` on this
    /// random model: its distances span only 0.023–0.025, too narrow a range for a fit (R² ≈ 0.2).
    public static let demoThresholds = [0.5, 0.7, 1.0]

    public static let benchmarkFileName = "hidream-i1-bench.json"

    /// `Benchmarks/configs/hidream-i1-bench.json`: 512 wide (8 heads of 64), 2 double + 2 single blocks,
    /// 4 routed experts (2 active), a 64×64 latent in 2×2 patches (1024 image tokens), 64 T5 and 64 llama
    /// tokens, batch 1 — the size of the other families' bench shapes.
    public static var benchmarkDefault: BenchmarkShape<HiDreamI1Configuration> {
        var c = HiDreamI1Configuration()
        c.patchSize = 2
        c.inChannels = 16
        c.numLayers = 2
        c.numSingleLayers = 2
        c.attentionHeadDim = 64
        c.numAttentionHeads = 8
        c.captionChannels = [512, 512]
        c.textEmbDim = 512
        c.numRoutedExperts = 4
        c.numActivatedExperts = 2
        c.axesDimsRope = [16, 24, 24]
        c.maxResolution = [64, 64]
        c.llamaLayers = [0, 1, 2, 3]
        return BenchmarkShape(configuration: c, inputs: BenchmarkInputs(
            ["batch": 1, "latent_height": 64, "latent_width": 64, "t5_tokens": 64, "llama_tokens": 64,
             "llama_layers": 4]))
    }

    /// `batch`, `latent_height` and `latent_width` (multiples of the patch), `t5_tokens`, `llama_tokens`
    /// and `llama_layers` (the stacked llama states, default: one more than the largest index read).
    public static func randomInputs(_ c: HiDreamI1Configuration, sizes: BenchmarkInputs, seed: UInt64) throws -> SamplingInputs<HiDreamI1Input> {
        let b = try sizes.positive("batch")
        let h = try sizes.positive("latent_height"), w = try sizes.positive("latent_width")
        guard h % c.patch == 0, w % c.patch == 0 else {
            throw ModelLoadError.malformedConfig(reason: "latent_height and latent_width must be multiples of patch_size = \(c.patch)")
        }
        let deepest = c.llamaLayers.map { $0 < 0 ? -$0 - 1 : $0 }.max() ?? 0
        let n = try sizes.positive("llama_layers", default: deepest + 1)
        let l5 = try sizes.positive("t5_tokens"), ll = try sizes.positive("llama_tokens")
        try SizeLimits.checkInputElements("hidden_states", [b, c.inChannels, h, w])
        try SizeLimits.checkInputElements("encoder_hidden_states_t5", [b, l5, c.captionChannels[0]])
        try SizeLimits.checkInputElements("encoder_hidden_states_llama3", [n, b, ll, c.captionChannels[1]])
        var g = SeededGenerator(seed: seed)
        let base = HiDreamI1Input(
            hiddenStates: try .randomNormal(shape: [b, c.inChannels, h, w], using: &g),
            timestep: try Tensor(shape: [b], repeating: 500),
            encoderHiddenStatesT5: try .randomNormal(shape: [b, l5, c.captionChannels[0]], using: &g),
            encoderHiddenStatesLlama3: try .randomNormal(shape: [n, b, ll, c.captionChannels[1]], using: &g),
            pooledEmbeds: try .randomNormal(shape: [b, c.textEmbDim], using: &g))
        return SamplingInputs(cond: base, batch: b)
    }

    public static func cost(_ c: HiDreamI1Configuration, sizes: BenchmarkInputs) throws -> ForwardCost {
        let b = try sizes.positive("batch"), l5 = try sizes.positive("t5_tokens"), ll = try sizes.positive("llama_tokens")
        let h = try sizes.positive("latent_height"), w = try sizes.positive("latent_width")
        try SizeLimits.checkInputElements("hidden_states", [b, c.inChannels, h, w])
        let s = h == w ? (h / c.patch) * (w / c.patch) : c.maxSequence
        let experts = c.usesExperts ? "\(c.numRoutedExperts) experts (\(c.numActivatedExperts) active)" : "no experts"
        return ForwardCost(
            summary: "HiDream-I1 \(c.innerDim)-wide, \(c.numLayers) double + \(c.numSingleLayers) single blocks, "
                + "\(experts), \(s) image + \(l5) T5 + \(ll) llama tokens, batch \(b)",
            flops: c.forwardFLOPs(batch: b, imageTokens: s, t5Tokens: l5, llamaTokens: ll),
            activationBytes: c.activationBytesEstimate(batch: b, imageTokens: s, t5Tokens: l5, llamaTokens: ll))
    }

    // MARK: Fixtures

    public static func forwardInput(_ a: FixtureArguments, configuration: HiDreamI1Configuration) throws -> HiDreamI1Input {
        try inputs(hiddenStates: a.tensor("hidden_states"), timestep: a.tensor("timesteps"), a)
    }

    public static func samplingInput(latent: Tensor, timestep: Float, conditioning a: FixtureArguments,
                                     configuration: HiDreamI1Configuration) throws -> HiDreamI1Input {
        try inputs(hiddenStates: latent, timestep: a.timestep(timestep, batchOf: latent), a)
    }

    private static func inputs(hiddenStates: Tensor, timestep: Tensor, _ a: FixtureArguments) throws -> HiDreamI1Input {
        HiDreamI1Input(hiddenStates: hiddenStates, timestep: timestep,
                       encoderHiddenStatesT5: try a.tensor("encoder_hidden_states_t5"),
                       encoderHiddenStatesLlama3: try a.tensor("encoder_hidden_states_llama3"),
                       pooledEmbeds: try a.tensor("pooled_embeds"))
    }

    /// One residual: the image tokens.
    public static var residualNames: [String] { ["teacache.residual"] }

    /// `hidream_i1` records: TeaCache4HiDream-I1's counter (`counter < ret_steps = 0.1·N` forced, no
    /// last-step forcing), `TeaCacheSchedule.hiDreamI1Reference`; `standard` records: the standard counter.
    public static func teaCacheConfiguration(record: SamplingRecord, steps: Int) throws -> TeaCacheConfiguration {
        let state = record.teacacheState
        if let period = state["counter_period"], period.integer != steps {
            throw VerifyError.unsupported("record \(record.name): counter period \(period) differs from \(steps) steps")
        }
        switch record.counterKind {
        case "hidream_i1":
            guard let ret = state["ret_steps"]?.number, ret == 0.1 * Double(steps) else {
                throw VerifyError.unsupported("record \(record.name): ret_steps must be 0.1 × \(steps) steps, got \(state)")
            }
            return try .faithful(coefficients: record.coefficients, threshold: record.threshold, schedule: .hiDreamI1Reference)
        case "standard":
            return try .faithful(coefficients: record.coefficients, threshold: record.threshold, schedule: .standard)
        default:
            throw VerifyError.unsupported("record \(record.name): counter kind \(record.counterKind ?? "none")")
        }
    }
}
