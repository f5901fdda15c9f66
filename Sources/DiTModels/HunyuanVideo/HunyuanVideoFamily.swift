import Foundation
import TeaCache
import Tensors

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
    public static let taperedWeights: Set<String> = [
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
        let base = try HunyuanVideoTransformer.randomInputs(
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
}
