import Foundation
import TeaCache
import Tensors

// MARK: Model

/// Mochi (diffusers `MochiTransformer3DModel`) in the registry: loading, sampling conventions
/// (timestep = (1 − σ)·1000, velocity = −output, no CFG in the demo), the TeaCache4Mochi preset, the
/// benchmark shape and the fixture plug-in.
///
/// Fixture arguments are diffusers' forward arguments: `hidden_states`, `encoder_hidden_states`,
/// `timestep` and `encoder_attention_mask`. The forward check compares `output`, the modulated input and
/// the visual-token residual, which includes `norm_out` (TeaCache4Mochi).
public enum MochiFamily: DiTFamilyHarness {
    public typealias Configuration = MochiConfiguration
    public typealias Model = MochiTransformer

    public static let name = "mochi"
    public static let summary = "Mochi-shaped asymmetric video DiT (MochiTransformer3DModel), timestep = (1-sigma)·1000, v = -output"

    public static func makeModel(_ configuration: MochiConfiguration, weights: WeightScope) throws(ModelLoadError) -> MochiTransformer {
        MochiTransformer(configuration: configuration, weights: weights)
    }

    /// The §6 taper of `time_embed.timestep_embedder.linear_1.weight`, `u = 1000 / steps`.
    public static func randomWeightAdjustment(_ c: MochiConfiguration, steps: Int) -> WeightAdjustment? {
        let frequencies = sinusoidalColumnFrequencies(dim: c.timeEmbedDim, downscaleFreqShift: 0)
        let u = 1000 / Double(steps)
        return { name, tensor in
            if name == "time_embed.timestep_embedder.linear_1.weight" {
                taperTimestepColumns(&tensor, frequencies: frequencies, stepSize: u)
            }
        }
    }

    // MARK: Sampling conventions and presets

    public static let timestepConvention = TimestepConvention.oneMinusSigmaTimes1000
    /// Mochi's scheduler inverts sigmas, so the model predicts the negated flow velocity.
    public static func velocity(_ configuration: MochiConfiguration) -> VelocityConvention { .negated }
    public static var presets: [TeaCachePreset] { [.mochi] }
}

/// The reference repository's Mochi (TeaCache4Mochi) coefficients (ali-vilab/TeaCache @ 7c10efc, copied character
/// for character from teacache-spec.md §2.2) and its published thresholds and speedups (§2.1, §3).
extension TeaCachePreset {
    /// Mochi-1-preview. Default δ 0.09. The residual includes the final norm.
    public static let mochi = TeaCachePreset(
        reference: "mochi",
        [-3.51241319e+03, 8.11675948e+02, -6.09400215e+01, 2.42429681e+00, 3.05291719e-03],
        defaultThreshold: 0.09, speedups: [(0.06, 1.5), (0.09, 2.1)],
        modulatedInput: "transformer_blocks[0].norm1(h_in, temb)[0] (RMSNorm(x)·(1+scale_msa))",
        provenance: "TeaCache4Mochi/teacache_mochi.py")
}

// MARK: TeaCache adapter

extension MochiState: BatchSelectableState {
    /// `[visual tokens]`: the one stream TeaCache4Mochi caches. Its residual is `norm_out(blocks(h_in),
    /// temb) − h_in`, so on a skip the output head (`proj_out`) reads `h_in + residual` directly. The
    /// caption tokens are not cached (nothing after the blocks reads them). A new value holds exactly one
    /// tensor (a precondition; `CachedTransformer` only assigns arrays of the count it read).
    public var streams: [Tensor] {
        get { [tokens] }
        set { tokens = newValue.soleStream(of: "Mochi") }
    }

    /// The batch size.
    public var batchSize: Int { tokens.shape[0] }

    /// The state of the batch elements `indices` (visual and caption tokens, conditioning and mask rows;
    /// the rotary tables are shared by the batch).
    public func selecting(batch indices: [Int]) throws -> MochiState {
        var s = self
        s.tokens = try tokens.gatheringRows(indices)
        s.text = try text.gatheringRows(indices)
        s.temb = try temb.gatheringRows(indices)
        s.mask = mask.selecting(batch: indices)
        return s
    }
}

/// ``MochiTransformer`` as a TeaCache ``DiffusionTransformer`` (TeaCache4Mochi):
///
/// - modulated input: `transformer_blocks[0].norm1(h_in, temb)[0]` = `RMSNorm(h_in)·(1 + scale_msa)`;
/// - streams: `[visual tokens]`; `runBlocks` ends after `norm_out`, so the residual includes the final
///   norm and a skip reuses the `temb` of the last computed step for it, as the reference does;
/// - counter: the standard rule (first and last step computed); timestep `(1 − σ)·1000`, `v = −output`.
extension MochiTransformer: DiffusionTransformer {
    public typealias Input = MochiInput
    public typealias State = MochiState
}

/// Mochi block by block (First-Block Cache): the blocks (``MochiTransformer/runBlock(_:_:)``), then
/// `norm_out`, which lies outside the blocks as in diffusers (the span First-Block Cache caches is the
/// blocks' alone).
extension MochiTransformer: BlockwiseDiffusionTransformer {
    public func blockCount(_ state: MochiState) -> Int { blocks.count }
    public func finishBlocks(_ state: inout MochiState) throws { try applyOutputNorm(&state) }
}

extension MochiTransformer: MemoryBudgeted {}

// MARK: Harness

extension MochiFamily {
    /// Measured on the default model (28 steps, seed 0): 15, 10, 8 and 6 of 28 calls computed.
    public static let demoThresholds = [0.06, 0.09, 0.15, 0.25]

    // MARK: Benchmark shape

    public static let benchmarkFileName = "mochi-bench.json"

    /// `Benchmarks/configs/mochi-bench.json`: visual stream 512 wide (8 × 64), text stream 256 wide,
    /// 4 blocks; latent 12×4×32×32 with 2×2 patches = 1024 visual tokens, 128 caption tokens, batch 1.
    public static var benchmarkDefault: BenchmarkShape<MochiConfiguration> {
        BenchmarkShape(
            configuration: MochiConfiguration(
                patchSize: 2, numAttentionHeads: 8, attentionHeadDim: 64, numLayers: 4, pooledProjectionDim: 256,
                inChannels: 12, outChannels: nil, qkNorm: "rms_norm", textEmbedDim: 512, timeEmbedDim: 256,
                activationFn: "swiglu", maxSequenceLength: 128),
            inputs: BenchmarkInputs(["batch": 1, "latent_frames": 4, "latent_height": 32, "latent_width": 32,
                                     "text_tokens": 128]))
    }

    /// `batch`, `latent_frames`, `latent_height`, `latent_width`, `text_tokens`.
    public static func randomInputs(_ c: MochiConfiguration, sizes: BenchmarkInputs, seed: UInt64) throws -> SamplingInputs<MochiInput> {
        let b = try sizes.positive("batch")
        let base = try randomInput(
            configuration: c, batch: b, frames: sizes.positive("latent_frames"), height: sizes.positive("latent_height"),
            width: sizes.positive("latent_width"), textTokens: sizes.positive("text_tokens"), seed: seed)
        return SamplingInputs(cond: base, batch: b)
    }

    public static func cost(_ c: MochiConfiguration, sizes: BenchmarkInputs) throws -> ForwardCost {
        let b = try sizes.positive("batch"), f = try sizes.positive("latent_frames")
        let h = try sizes.positive("latent_height"), w = try sizes.positive("latent_width")
        let l = try sizes.positive("text_tokens")
        guard h % c.patchSize == 0, w % c.patchSize == 0 else {
            throw ModelLoadError.malformedConfig(reason: "latent \(h)×\(w) must be divisible by patch_size \(c.patchSize)")
        }
        // Bounded before the estimates multiply them further.
        try SizeLimits.checkInputElements("hidden_states", [b, c.inChannels, f, h, w])
        try SizeLimits.checkInputElements("encoder_hidden_states", [b, l, max(c.textEmbedDim, c.pooledProjectionDim)])
        let s = f * (h / c.patchSize) * (w / c.patchSize)
        return ForwardCost(
            summary: "Mochi \(c.innerDim)-wide visual / \(c.pooledProjectionDim)-wide text, \(c.numLayers) blocks, "
                + "\(s) video + \(l) text tokens, batch \(b)",
            flops: c.forwardFLOPs(batch: b, visualTokens: s, textTokens: l),
            activationBytes: c.activationBytesEstimate(batch: b, visualTokens: s, textTokens: l))
    }

    // MARK: Fixtures

    /// Mochi caches one stream (the visual tokens, after `norm_out`).
    public static var residualNames: [String] { ["teacache.residual"] }

    public static func forwardInput(_ a: FixtureArguments, configuration: MochiConfiguration) throws -> MochiInput {
        MochiInput(hiddenStates: try a.tensor("hidden_states"), encoderHiddenStates: try a.tensor("encoder_hidden_states"),
                   timestep: try a.tensor("timestep"), encoderAttentionMask: try a.tensor("encoder_attention_mask"))
    }

    public static func samplingInput(latent: Tensor, timestep: Float, conditioning a: FixtureArguments,
                                     configuration: MochiConfiguration) throws -> MochiInput {
        MochiInput(hiddenStates: latent, encoderHiddenStates: try a.tensor("encoder_hidden_states"),
                   timestep: try a.timestep(timestep, batchOf: latent),
                   encoderAttentionMask: try a.tensor("encoder_attention_mask"))
    }

    /// Random inputs of a Mochi pipeline shape: latent `[B, in_channels, F, H, W]`, `textTokens` caption
    /// features with an all-ones mask, timestep 500 (sigma 0.5).
    ///
    /// - Throws: `malformedConfig` for sizes outside ``SizeLimits`` or a latent not divisible by the patch.
    private static func randomInput(
        configuration c: MochiConfiguration, batch b: Int, frames f: Int, height h: Int, width w: Int,
        textTokens l: Int, seed: UInt64
    ) throws(ModelLoadError) -> MochiInput {
        for (field, v) in [("batch", b), ("latent_frames", f), ("latent_height", h), ("latent_width", w),
                           ("text_tokens", l)] {
            try SizeLimits.checkInput(field, v)
        }
        try SizeLimits.checkInputElements("hidden_states", [b, c.inChannels, f, h, w])
        try SizeLimits.checkInputElements("encoder_hidden_states", [b, l, c.textEmbedDim])
        guard h % c.patchSize == 0, w % c.patchSize == 0 else {
            throw .malformedConfig(reason: "latent \(h)×\(w) must be divisible by patch_size \(c.patchSize)")
        }
        var g = SeededGenerator(seed: seed)
        do {
            return MochiInput(hiddenStates: try .randomNormal(shape: [b, c.inChannels, f, h, w], using: &g),
                              encoderHiddenStates: try .randomNormal(shape: [b, l, c.textEmbedDim], using: &g),
                              timestep: try Tensor(shape: [b], repeating: 500),
                              encoderAttentionMask: try Tensor(shape: [b, l], repeating: 1))
        } catch {
            throw .tensor(error)
        }
    }
}
