import Foundation
import TeaCache
import Tensors

// MARK: Model

/// Cosmos-1.0 Diffusion (diffusers `CosmosTransformer3DModel`; Text2World and Video2World) in the
/// registry: loading, sampling conventions (timestep = 0.25·ln(sigma), v = −output, CFG 8 in the demo),
/// presets, the benchmark shape and the fixture plug-in.
///
/// Fixture arguments are diffusers' forward arguments: `hidden_states`, `timestep`,
/// `encoder_hidden_states`, the optional `attention_mask`, `condition_mask` and `padding_mask`
/// tensors, and the non-tensor `fps`. Sampling records of kind `cosmos` (TeaCache4Cosmos' counter over
/// both CFG branches) run with one TeaCache state per branch.
public enum CosmosFamily: DiTFamilyHarness {
    public typealias Configuration = CosmosConfiguration
    public typealias Model = CosmosTransformer

    public static let name = "cosmos"
    public static let summary = "Cosmos-1.0-shaped video DiT (CosmosTransformer3DModel), timestep = 0.25·ln(sigma), v = -output, CFG 8"

    public static func makeModel(_ configuration: CosmosConfiguration, weights: WeightScope) throws(ModelLoadError) -> CosmosTransformer {
        CosmosTransformer(configuration: configuration, weights: weights)
    }

    // No randomWeightAdjustment: FORMAT.md §6 leaves Cosmos' time embedding untapered (it is not a
    // diffusers TimestepEmbedding, and its sinusoids move little per step on the 0.25·ln(sigma) scale).

    // MARK: Sampling conventions and presets

    public static let timestepConvention = TimestepConvention.quarterLogSigma
    /// The EDM denoiser's output points from the flow direction's end to its start: v = −output.
    public static func velocity(_ configuration: CosmosConfiguration) -> VelocityConvention { .negated }
    /// Cosmos' `cond + 7·(cond − uncond)`, written as guidance 8 (FORMAT.md §2).
    public static let guidanceScale: Float? = 8
    /// Text2World, then Video2World (same coefficients, different default thresholds).
    public static var presets: [TeaCachePreset] { [.cosmosT2V, .cosmosI2V] }
}

/// The reference repository's Cosmos coefficients (ali-vilab/TeaCache @ 7c10efc, TeaCache4Cosmos,
/// copied character for character from teacache-spec.md §2.2; both scripts use the same list).
extension TeaCachePreset {
    static let cosmosCoefficients = [2.71156237e+02, -9.19775607e+01, 2.24437250e+00, 2.08355751e+00, 1.41776330e-01]
    static let cosmosModulatedInput =
        "transformer_blocks[0].norm1(h_in, embedded_timestep, temb)[0] (LayerNorm(h_in)·(1+scale)+shift, adaLN-LoRA "
        + "projection + temb; h_in before the learnable position embedding)"
    /// Speedups of the TeaCache4Cosmos README ("0.3 (1.4x speedup), and 0.4(2.0x speedup)"), both models.
    static let cosmosSpeedups: [(threshold: Double, speedup: Double)] = [(0.3, 1.4), (0.4, 2.0)]
    /// The per-branch rule: TeaCache4Cosmos counts both CFG branches on one counter (cond even, uncond
    /// odd) and forces each branch's first evaluation and the sampler's final clean-sample evaluation,
    /// i.e. its first and last call: the standard schedule per branch.
    static let cosmosSchedule = TeaCacheSchedule.standard

    /// Cosmos-1.0 Diffusion Text2World (7B/14B). Default δ 0.3 (`--rel_l1_thresh` default of the T2V script).
    public static let cosmosT2V = TeaCachePreset(
        reference: "cosmos_t2v", cosmosCoefficients, defaultThreshold: 0.3, speedups: cosmosSpeedups,
        modulatedInput: cosmosModulatedInput,
        provenance: "TeaCache4Cosmos/teacache_sample_video_t2v.py (teacache_forward); speedups from its README",
        schedule: cosmosSchedule)

    /// Cosmos-1.0 Diffusion Video2World (7B/14B). Default δ 0.4 (`--rel_l1_thresh` default of the I2V script).
    public static let cosmosI2V = TeaCachePreset(
        reference: "cosmos_i2v", cosmosCoefficients, defaultThreshold: 0.4, speedups: cosmosSpeedups,
        modulatedInput: cosmosModulatedInput,
        provenance: "TeaCache4Cosmos/teacache_sample_video_i2v.py (teacache_v2v_forward → teacache_forward); speedups from its README",
        schedule: cosmosSchedule)
}

// MARK: TeaCache adapter

extension CosmosState: BatchSelectableState {
    /// `[video tokens]`: the only stream TeaCache caches for Cosmos (the text enters through
    /// cross-attention and is recomputed on every call). The state has exactly one stream:
    /// `CachedTransformer` only assigns arrays of the count and shapes it read.
    public var streams: [Tensor] {
        get { [tokens] }
        set { tokens = newValue.soleStream(of: "Cosmos") }
    }

    /// The batch size.
    public var batchSize: Int { tokens.shape[0] }

    /// The state of the batch elements `indices` (rotary and position tables are shared).
    public func selecting(batch indices: [Int]) throws -> CosmosState {
        var s = self
        s.tokens = try tokens.gatheringRows(indices)
        s.blocks.temb = try blocks.temb.gatheringRows(indices)
        s.blocks.embeddedTimestep = try blocks.embeddedTimestep.gatheringRows(indices)
        s.blocks.context = try blocks.context.gatheringRows(indices)
        s.blocks.attentionMask = try blocks.attentionMask.map { t throws(TensorError) in try t.gatheringRows(indices) }
        return s
    }
}

/// ``CosmosTransformer`` as a TeaCache ``DiffusionTransformer``.
///
/// - streams: `[video tokens after the patch embedding]`; residual = tokens after the last block minus
///   tokens after the patch embedding (before `norm_out`), as TeaCache4Cosmos caches over all blocks.
/// - modulated input: block 0's self-attention adaLN of h_in (``CosmosTransformer/firstBlockModulation(_:)``).
/// - CFG: the reference keys its two states on the parity of a shared call counter (cond = even,
///   uncond = odd). Here each branch is a ``BranchKey`` of ``CachedTransformer`` (`.cond`, `.uncond`)
///   with its own previous input, accumulator, residual and step counter, which gives the same
///   decisions for the cond-then-uncond call order without depending on it.
extension CosmosTransformer: DiffusionTransformer {
    public typealias Input = CosmosInput
    public typealias State = CosmosState

    /// `LayerNorm(h_in)·(1 + scale) + shift` of block 0's `norm1` `[B, S, D]`.
    public func modulatedInput(_ state: CosmosState) throws -> Tensor {
        try firstBlockModulation(state)
    }
}

/// Cosmos block by block (First-Block Cache): ``CosmosTransformer/runBlock(_:_:)``, the loop body of
/// ``CosmosTransformer/runBlocks(_:)``.
extension CosmosTransformer: BlockwiseDiffusionTransformer {
    /// `num_layers`.
    public func blockCount(_ state: CosmosState) -> Int { depth }
}

extension CosmosTransformer: MemoryBudgeted {}

// MARK: Harness

extension CosmosFamily {
    /// The two presets' default thresholds (T2V 0.3, I2V 0.4) and a sparser one.
    public static let demoThresholds = [0.3, 0.4, 0.6]

    public static let benchmarkFileName = "cosmos-bench.json"

    /// `Benchmarks/configs/cosmos-bench.json`: the Text2World layout 512 wide, 4 blocks; latent
    /// 16×4×32×32 with 1×2×2 patches = 1024 video tokens, 128 text tokens, batch 1.
    public static var benchmarkDefault: BenchmarkShape<CosmosConfiguration> {
        BenchmarkShape(
            configuration: CosmosConfiguration(
                inChannels: 16, outChannels: 16, numAttentionHeads: 8, attentionHeadDim: 64, numLayers: 4, mlpRatio: 4,
                textEmbedDim: 512, adalnLoraDim: 256, maxSize: [128, 240, 240], patchSize: [1, 2, 2],
                ropeScale: [2, 1, 1], concatPaddingMask: true, extraPosEmbedType: "learnable"),
            inputs: BenchmarkInputs(["batch": 1, "latent_frames": 4, "latent_height": 32, "latent_width": 32,
                                     "text_tokens": 128]))
    }

    /// `batch`, `latent_frames`, `latent_height`, `latent_width`, `text_tokens` and, for Video2World-shaped
    /// configurations, `condition_channels` (default 0: every input channel is latent); the `.uncond`
    /// branch gets another text embedding.
    public static func randomInputs(_ c: CosmosConfiguration, sizes: BenchmarkInputs, seed: UInt64) throws -> SamplingInputs<CosmosInput> {
        let b = try sizes.positive("batch")
        let conditionChannels = sizes.values["condition_channels"] ?? 0
        func inputs(_ s: UInt64) throws -> CosmosInput {
            try randomInputs(configuration: c, batch: b, frames: sizes.positive("latent_frames"),
                             height: sizes.positive("latent_height"), width: sizes.positive("latent_width"),
                             textTokens: sizes.positive("text_tokens"), conditionChannels: conditionChannels, seed: s)
        }
        let cond = try inputs(seed)
        let uncond = try inputs(seed &+ 0x5EED)  // a different "negative prompt" embedding
        return SamplingInputs(cond: cond, uncond: uncond, batch: b)
    }

    public static func cost(_ c: CosmosConfiguration, sizes: BenchmarkInputs) throws -> ForwardCost {
        let b = try sizes.positive("batch"), f = try sizes.positive("latent_frames")
        let h = try sizes.positive("latent_height"), w = try sizes.positive("latent_width")
        let l = try sizes.positive("text_tokens")
        // Bounded before the estimates multiply them further.
        try SizeLimits.checkInputElements("hidden_states", [b, c.patchInChannels, f, h, w])
        try SizeLimits.checkInputElements("encoder_hidden_states", [b, l, max(c.encoderInputDim, c.innerDim)])
        let p = c.patch
        guard f % p.t == 0, h % p.h == 0, w % p.w == 0 else {
            throw ModelLoadError.malformedConfig(reason: "latent \(f)×\(h)×\(w) must be divisible by patch_size \(c.patchSize)")
        }
        let s = (f / p.t) * (h / p.h) * (w / p.w)
        return ForwardCost(
            summary: "Cosmos \(c.innerDim)-wide, \(c.numLayers) blocks, \(s) video + \(l) text tokens, batch \(b)",
            flops: c.forwardFLOPs(batch: b, videoTokens: s, textTokens: l),
            activationBytes: c.activationBytesEstimate(batch: b, videoTokens: s, textTokens: l))
    }

    /// Random inputs of a Cosmos pipeline shape: latent `[B, in_channels − conditionChannels, F, H, W]`,
    /// `textTokens` text features, timestep 0.25·ln(0.5) (sigma 0.5), fps 30, a zero padding mask
    /// `[1, 1, H, W]` when the configuration concatenates one, and for `conditionChannels` > 0 a
    /// condition mask that marks the first latent frame (Video2World).
    public static func randomInputs(
        configuration c: CosmosConfiguration, batch b: Int, frames f: Int, height h: Int, width w: Int,
        textTokens l: Int, conditionChannels m: Int = 0, seed: UInt64
    ) throws(ModelLoadError) -> CosmosInput {
        for (field, v) in [("batch", b), ("latent_frames", f), ("latent_height", h), ("latent_width", w), ("text_tokens", l)] {
            try SizeLimits.checkInput(field, v)
        }
        guard m >= 0, m < c.inChannels else {
            throw .malformedConfig(reason: "condition_channels = \(m) must be between 0 and in_channels − 1 = \(c.inChannels - 1)")
        }
        try SizeLimits.checkInputElements("hidden_states", [b, c.patchInChannels, f, h, w])
        try SizeLimits.checkInputElements("encoder_hidden_states", [b, l, c.encoderInputDim])
        let p = c.patch
        guard f % p.t == 0, h % p.h == 0, w % p.w == 0 else {
            throw .malformedConfig(reason: "latent \(f)×\(h)×\(w) must be divisible by patch_size \(c.patchSize)")
        }
        var g = SeededGenerator(seed: seed)
        do {
            var conditionMask: Tensor? = nil
            if m > 0 {
                var v = [Float](repeating: 0, count: b * m * f * h * w)
                for i in 0..<(b * m) { for j in 0..<(h * w) { v[i * f * h * w + j] = 1 } }  // frame 0 of each channel
                conditionMask = try Tensor(shape: [b, m, f, h, w], scalars: v)
            }
            return CosmosInput(
                hiddenStates: try .randomNormal(shape: [b, c.inChannels - m, f, h, w], using: &g),
                timestep: try Tensor(shape: [b], repeating: TimestepConvention.quarterLogSigma.timestep(sigma: 0.5)),
                encoderHiddenStates: try .randomNormal(shape: [b, l, c.encoderInputDim], using: &g),
                fps: 30, conditionMask: conditionMask,
                paddingMask: c.concatPaddingMask ? try Tensor(shape: [1, 1, h, w], repeating: 0) : nil)
        } catch {
            throw .tensor(error)
        }
    }

    // MARK: Fixtures

    /// `fps` of the non-tensor arguments: nil when absent or null (diffusers' default: image positions).
    static func fps(_ a: FixtureArguments) throws -> Int? {
        guard let v = a.nonTensor["fps"], v != .null else { return nil }
        return try a.integer("fps")
    }

    public static func forwardInput(_ a: FixtureArguments, configuration: CosmosConfiguration) throws -> CosmosInput {
        CosmosInput(hiddenStates: try a.tensor("hidden_states"), timestep: try a.tensor("timestep"),
                    encoderHiddenStates: try a.tensor("encoder_hidden_states"),
                    attentionMask: a.optionalTensor("attention_mask"), fps: try fps(a),
                    conditionMask: a.optionalTensor("condition_mask"), paddingMask: a.optionalTensor("padding_mask"))
    }

    public static func samplingInput(latent: Tensor, timestep: Float, conditioning a: FixtureArguments,
                                     configuration: CosmosConfiguration) throws -> CosmosInput {
        CosmosInput(hiddenStates: latent, timestep: try a.timestep(timestep, batchOf: latent),
                    encoderHiddenStates: try a.tensor("encoder_hidden_states"),
                    attentionMask: a.optionalTensor("attention_mask"), fps: try fps(a),
                    conditionMask: a.optionalTensor("condition_mask"), paddingMask: a.optionalTensor("padding_mask"))
    }

    /// The record's counter (`cosmos`: one counter over both CFG branches, even = cond, forced at
    /// `repo_num_steps` R: even counters 0 and R, odd 1 and R + 1, period R + 2) as a per-branch
    /// schedule: forced steps 0 and R/2. With R = 2N − 2 (the fixtures) that is the first and the last
    /// step; with R ≥ 2N (the reference's own sampler, one extra clean-sample evaluation) the last forced
    /// call lies beyond the run, so only the first step is forced.
    public static func teaCacheConfiguration(record: SamplingRecord, steps n: Int) throws -> TeaCacheConfiguration {
        guard record.counterKind == "cosmos" else {
            throw VerifyError.unsupported("record \(record.name): counter kind \(record.counterKind ?? "none") is not cosmos")
        }
        let state = record.teacacheState
        guard let r = state["repo_num_steps"]?.integer, r >= 0, r % 2 == 0,
              state["counter_period"]?.integer == r + 2 else {
            throw VerifyError.unsupported("record \(record.name): cosmos counter needs an even repo_num_steps R and period R + 2, got \(state)")
        }
        for (key, expected) in [("forced_even_counters", [0, r]), ("forced_odd_counters", [1, r + 1])] {
            if let listed = state[key], listed != .array(expected.map { .number(Double($0)) }) {
                throw VerifyError.unsupported("record \(record.name): \(key) \(listed) differs from \(expected) (R = \(r))")
            }
        }
        let schedule: TeaCacheSchedule
        if r / 2 == n - 1 {
            schedule = .standard
        } else if r / 2 >= n {
            schedule = TeaCacheSchedule(retainFirstSteps: 1, forceLastStep: false)
        } else {
            throw VerifyError.unsupported("record \(record.name): repo_num_steps \(r) wraps the counter inside a \(n)-step run")
        }
        return try .faithful(coefficients: record.coefficients, threshold: record.threshold, schedule: schedule)
    }
}
