import Foundation
import TeaCache
import Tensors

// MARK: Model

/// HunyuanVideo (diffusers `HunyuanVideoTransformer3DModel`; T2V, `latent_concat` and `token_replace`
/// I2V) in the registry: loading, sampling conventions (timestep = sigma·1000, embedded guidance 6000, no
/// CFG), presets, the benchmark shape and the fixture plug-in.
///
/// Fixture arguments are diffusers' forward arguments: `hidden_states`, `timestep`,
/// `encoder_hidden_states`, `encoder_attention_mask`, `pooled_projections` and, with guidance, `guidance`.
/// A sampling folder whose model reads more channels than its latent holds (`latent_concat`: `in_channels`
/// = 2·C + 1) carries them as `cond.latent_condition` `[B, in_channels − C, F, H, W]` — or under the
/// pipeline's names, `cond.image_latents` and `cond.mask` — concatenated after the latent on every call, as
/// HunyuanVideoImageToVideoPipeline concatenates `[latents, image_latents, mask]`.
public enum HunyuanVideoFamily: DiTFamilyHarness {
    public typealias Configuration = HunyuanVideoConfiguration
    public typealias Model = HunyuanVideoTransformer

    public static let name = "hunyuan_video"
    public static let summary = "HunyuanVideo-shaped video DiT (HunyuanVideoTransformer3DModel), timestep = sigma·1000, guidance 6000 embedded"

    public static func makeModel(_ configuration: HunyuanVideoConfiguration, weights: WeightScope) throws(ModelLoadError) -> HunyuanVideoTransformer {
        HunyuanVideoTransformer(configuration: configuration, weights: weights)
    }

    /// The parameters that get the §6 timestep taper: every `TimestepEmbedding.linear_1` of the model.
    static let taperedWeights: Set<String> = [
        "time_text_embed.timestep_embedder.linear_1.weight",
        "time_text_embed.guidance_embedder.linear_1.weight",
        "context_embedder.time_text_embed.timestep_embedder.linear_1.weight",
    ]

    /// The §6 taper of the timestep MLPs' first layers, `u = 1000 / steps`.
    public static func randomWeightAdjustment(_ configuration: HunyuanVideoConfiguration, steps: Int) -> WeightAdjustment? {
        let frequencies = sinusoidalColumnFrequencies(dim: HunyuanVideoConfiguration.timestepChannels, downscaleFreqShift: 0)
        let u = 1000 / Double(steps)
        return { name, t in
            if taperedWeights.contains(name) { taperTimestepColumns(&t, frequencies: frequencies, stepSize: u) }
        }
    }

    // MARK: Sampling conventions and presets

    public static let timestepConvention = TimestepConvention.sigmaTimes1000
    /// The guidance value HunyuanVideoPipeline embeds by default (`guidance_scale` 6 · 1000).
    public static let embeddedGuidance: Float = 6000
    public static var presets: [TeaCachePreset] { [.hunyuanVideo] }
}

/// The reference repository's HunyuanVideo (TeaCache4HunyuanVideo) coefficients (ali-vilab/TeaCache @ 7c10efc, copied character
/// for character from teacache-spec.md §2.2) and its published thresholds and speedups (§2.1, §3).
extension TeaCachePreset {
    /// HunyuanVideo. Default δ 0.15.
    public static let hunyuanVideo = TeaCachePreset(
        reference: "hunyuan_video",
        [7.33226126e+02, -4.01131952e+02, 6.75869174e+01, -3.14987800e+00, 9.61237896e-02],
        defaultThreshold: 0.15, speedups: [(0.1, 1.6), (0.15, 2.1)],
        modulatedInput: "double_blocks[0]: modulate(img_norm1(img), shift1, scale1) = diffusers transformer_blocks[0].norm1(h_in, emb=temb)[0]",
        provenance: "TeaCache4HunyuanVideo/teacache_sample_video.py")
}

// MARK: TeaCache adapter

/// HunyuanVideo's TeaCache state: the image tokens are the one cached stream; the text tokens, the
/// conditioning, the rotary tables and the key mask ride along uncached (the output head only reads the
/// image stream), as TeaCache4HunyuanVideo caches `img` alone.
extension HunyuanVideoState: BatchSelectableState {
    /// `[image tokens]`. The state has exactly one stream: a new value holds exactly one tensor (a
    /// precondition; `CachedTransformer` only assigns arrays of the count it read).
    public var streams: [Tensor] {
        get { [image] }
        set { image = newValue.soleStream(of: "HunyuanVideo") }
    }

    /// The batch size.
    public var batchSize: Int { image.shape[0] }

    /// The state of the batch elements `indices` (tokens, conditioning and key-mask rows; the rotary tables
    /// are shared by the batch).
    public func selecting(batch indices: [Int]) throws -> HunyuanVideoState {
        var s = self
        s.image = try image.gatheringRows(indices)
        s.text = try text.gatheringRows(indices)
        s.context.temb = try context.temb.gatheringRows(indices)
        s.context.tokenReplaceEmb = try context.tokenReplaceEmb.map { t throws(TensorError) in try t.gatheringRows(indices) }
        s.context.keyMask = try context.keyMask.map { t throws(TensorError) in try t.gatheringRows(indices) }
        return s
    }
}

/// HunyuanVideo as a TeaCache ``DiffusionTransformer``: `prepare` embeds (and refines the text), the
/// modulated input is `transformer_blocks[0].norm1(h_in, temb)[0]` (the reference's
/// `modulate(img_norm1(img), shift1, scale1)` of double block 0), `runBlocks` runs the dual- and the
/// single-stream stacks (so the cached residual is the image-token change across all of them), and
/// `outputHead` applies `norm_out`, `proj_out` and the unpatchify.
extension HunyuanVideoTransformer: DiffusionTransformer {
    public typealias Input = HunyuanVideoInput
    public typealias State = HunyuanVideoState
}

/// HunyuanVideo block by block (First-Block Cache): the dual-stream blocks, then the single-stream ones,
/// as one index range (`num_layers + num_single_layers` blocks). `norm_out` lies outside the cached span
/// (TeaCache4HunyuanVideo's residual and diffusers' block hooks both end at the last single block), so
/// ``finishBlocks(_:)`` does nothing and ``HunyuanVideoTransformer/outputHead(_:)`` applies it.
extension HunyuanVideoTransformer: BlockwiseDiffusionTransformer {
    public func blockCount(_ state: HunyuanVideoState) -> Int { blockCount }
}

extension HunyuanVideoTransformer: MemoryBudgeted {}

// MARK: Harness

extension HunyuanVideoFamily {
    /// Measured on the default model (28 steps, seed 0): the preset computes 15, 10 and 6 of 28 calls,
    /// calibrated coefficients 11, 7 and 4 (0.05 computed every preset call).
    public static let demoThresholds = [0.08, 0.15, 0.3]

    // MARK: Benchmark shape

    public static let benchmarkFileName = "hunyuan-bench.json"

    /// `Benchmarks/configs/hunyuan-bench.json`: 512 wide (8 × 64), 2 dual + 4 single blocks, 1 refiner
    /// block, guidance embedded; latent 16×4×32×32 with 1×2×2 patches = 1024 video tokens, 128 text tokens,
    /// batch 1.
    public static var benchmarkDefault: BenchmarkShape<HunyuanVideoConfiguration> {
        var c = HunyuanVideoConfiguration()
        c.inChannels = 16
        c.outChannels = 16
        c.numAttentionHeads = 8
        c.attentionHeadDim = 64
        c.numLayers = 2
        c.numSingleLayers = 4
        c.numRefinerLayers = 1
        c.mlpRatio = 4
        c.patchSize = 2
        c.patchSizeT = 1
        c.qkNorm = "rms_norm"
        c.guidanceEmbeds = true
        c.textEmbedDim = 512
        c.pooledProjectionDim = 256
        c.ropeTheta = 256
        c.ropeAxesDim = [16, 24, 24]
        c.imageConditionType = nil
        return BenchmarkShape(configuration: c, inputs: BenchmarkInputs(
            ["batch": 1, "latent_frames": 4, "latent_height": 32, "latent_width": 32, "text_tokens": 128]))
    }

    /// `batch`, `latent_frames`, `latent_height`, `latent_width`, `text_tokens` and optionally
    /// `valid_text_tokens` (default all); one call per step (no CFG: the guidance is embedded).
    public static func randomInputs(_ c: HunyuanVideoConfiguration, sizes: BenchmarkInputs, seed: UInt64) throws -> SamplingInputs<HunyuanVideoInput> {
        let b = try sizes.positive("batch"), l = try sizes.positive("text_tokens")
        let base = try randomInput(
            configuration: c, batch: b, frames: sizes.positive("latent_frames"), height: sizes.positive("latent_height"),
            width: sizes.positive("latent_width"), textTokens: l,
            validTextTokens: sizes.positive("valid_text_tokens", default: l), seed: seed)
        return SamplingInputs(cond: base, batch: b)
    }

    public static func cost(_ c: HunyuanVideoConfiguration, sizes: BenchmarkInputs) throws -> ForwardCost {
        let b = try sizes.positive("batch"), f = try sizes.positive("latent_frames")
        let h = try sizes.positive("latent_height"), w = try sizes.positive("latent_width")
        let l = try sizes.positive("text_tokens")
        guard f % c.patchSizeT == 0, h % c.patchSize == 0, w % c.patchSize == 0 else {
            throw ModelLoadError.malformedConfig(reason: "latent \(f)×\(h)×\(w) must be divisible by (patch_size_t, patch_size, patch_size)")
        }
        // Bounded before the estimates multiply them further.
        try SizeLimits.checkInputElements("hidden_states", [b, c.inChannels, f, h, w])
        try SizeLimits.checkInputElements("encoder_hidden_states", [b, l, c.textEmbedDim])
        let s = (f / c.patchSizeT) * (h / c.patchSize) * (w / c.patchSize)
        return ForwardCost(
            summary: "HunyuanVideo \(c.innerDim)-wide, \(c.numLayers) dual + \(c.numSingleLayers) single blocks, "
                + "\(c.numRefinerLayers) refiner, \(s) video + \(l) text tokens, batch \(b)",
            flops: c.forwardFLOPs(batch: b, imageTokens: s, textTokens: l),
            activationBytes: c.activationBytesEstimate(batch: b, imageTokens: s, textTokens: l))
    }

    // MARK: Fixtures

    public static func forwardInput(_ a: FixtureArguments, configuration: HunyuanVideoConfiguration) throws -> HunyuanVideoInput {
        try inputs(hiddenStates: a.tensor("hidden_states"), timestep: a.tensor("timestep"), a)
    }

    public static func samplingInput(latent: Tensor, timestep: Float, conditioning a: FixtureArguments,
                                     configuration: HunyuanVideoConfiguration) throws -> HunyuanVideoInput {
        let extra = ["latent_condition", "image_latents", "mask"].compactMap { a.optionalTensor($0) }
        let hiddenStates = extra.isEmpty ? latent : try Tensor.concatenate([latent] + extra, axis: 1)
        return try inputs(hiddenStates: hiddenStates, timestep: a.timestep(timestep, batchOf: latent), a)
    }

    private static func inputs(hiddenStates: Tensor, timestep: Tensor, _ a: FixtureArguments) throws -> HunyuanVideoInput {
        HunyuanVideoInput(hiddenStates: hiddenStates, timestep: timestep,
                          encoderHiddenStates: try a.tensor("encoder_hidden_states"),
                          encoderAttentionMask: try a.tensor("encoder_attention_mask"),
                          pooledProjections: try a.tensor("pooled_projections"),
                          guidance: a.optionalTensor("guidance"))
    }

    /// Random inputs of a HunyuanVideo pipeline shape: latent `[B, in_channels, F, H, W]`, `textTokens`
    /// text-encoder states of which the first `validTextTokens` are valid (the rest padding, as the
    /// pipeline pads its prompt), a pooled embedding, timestep 500 (sigma 0.5) and guidance 6000.
    ///
    /// - Throws: `malformedConfig` for sizes outside ``SizeLimits`` or a grid the patch does not divide.
    private static func randomInput(
        configuration c: HunyuanVideoConfiguration, batch b: Int, frames f: Int, height h: Int, width w: Int,
        textTokens l: Int, validTextTokens valid: Int, seed: UInt64
    ) throws(ModelLoadError) -> HunyuanVideoInput {
        for (field, v) in [("batch", b), ("latent_frames", f), ("latent_height", h), ("latent_width", w),
                           ("text_tokens", l), ("valid_text_tokens", valid)] {
            try SizeLimits.checkInput(field, v)
        }
        guard valid <= l else {
            throw .malformedConfig(reason: "valid_text_tokens = \(valid) exceeds text_tokens = \(l)")
        }
        try SizeLimits.checkInputElements("hidden_states", [b, c.inChannels, f, h, w])
        try SizeLimits.checkInputElements("encoder_hidden_states", [b, l, c.textEmbedDim])
        guard f % c.patchSizeT == 0, h % c.patchSize == 0, w % c.patchSize == 0 else {
            throw .malformedConfig(reason: "latent \(f)×\(h)×\(w) must be divisible by (patch_size_t, patch_size, patch_size) "
                                      + "= (\(c.patchSizeT), \(c.patchSize), \(c.patchSize))")
        }
        var g = SeededGenerator(seed: seed)
        do {
            var mask = [Float](repeating: 0, count: b * l)
            for bi in 0..<b { for j in 0..<valid { mask[bi * l + j] = 1 } }
            return HunyuanVideoInput(
                hiddenStates: try .randomNormal(shape: [b, c.inChannels, f, h, w], using: &g),
                timestep: try Tensor(shape: [b], repeating: 500),
                encoderHiddenStates: try .randomNormal(shape: [b, l, c.textEmbedDim], using: &g),
                encoderAttentionMask: try Tensor(shape: [b, l], scalars: mask),
                pooledProjections: try .randomNormal(shape: [b, c.pooledProjectionDim], using: &g),
                guidance: c.guidanceEmbeds ? try Tensor(shape: [b], repeating: embeddedGuidance) : nil)
        } catch {
            throw .tensor(error)
        }
    }
}
