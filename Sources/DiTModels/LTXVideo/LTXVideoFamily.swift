import Foundation
import TeaCache
import Tensors

/// LTX-Video (diffusers `LTXVideoTransformer3DModel`) in the registry: loading, sampling conventions
/// (timestep = sigma·1000, velocity = output, one call per step), the preset, the benchmark shape and the
/// fixture plug-in.
///
/// Fixture arguments are diffusers' forward arguments: the tensors `hidden_states`,
/// `encoder_hidden_states`, `timestep`, `encoder_attention_mask` and optionally `video_coords`, and the
/// non-tensor `num_frames`, `height`, `width` and `rope_interpolation_scale`. The residual check compares
/// `teacache.residual` with the video-token change through the blocks *and* the output norm.
public enum LTXVideoFamily: DiTFamilyHarness {
    public typealias Configuration = LTXVideoConfiguration
    public typealias Model = LTXVideoTransformer

    public static let name = "ltx_video"
    public static let summary = "LTX-Video-shaped video DiT (LTXVideoTransformer3DModel), timestep = sigma·1000, no CFG"

    public static func makeModel(_ configuration: LTXVideoConfiguration, weights: WeightScope) throws(ModelLoadError) -> LTXVideoTransformer {
        LTXVideoTransformer(configuration: configuration, weights: weights)
    }

    /// The name of the layer whose columns get the §6 taper.
    static let taperedWeight = "time_embed.emb.timestep_embedder.linear_1.weight"

    /// The §6 taper of `time_embed.emb.timestep_embedder.linear_1.weight`, `u = 1000 / steps`.
    public static func randomWeightAdjustment(_ c: LTXVideoConfiguration, steps: Int) -> WeightAdjustment? {
        let frequencies = sinusoidalColumnFrequencies(dim: LTXVideoTimeEmbedding.frequencyChannels, downscaleFreqShift: 0)
        let u = 1000 / Double(steps)
        return { name, tensor in
            if name == taperedWeight { taperTimestepColumns(&tensor, frequencies: frequencies, stepSize: u) }
        }
    }

    // MARK: Sampling conventions and presets

    public static let timestepConvention = TimestepConvention.sigmaTimes1000
    public static var presets: [TeaCachePreset] { [.ltxVideo] }
    /// Measured on the default model (28 steps, seed 0): the preset computes 15, 10 and 6 of 28 calls,
    /// calibrated coefficients 14, 9 and 5 (0.03 skipped only 2 preset calls).
    public static let demoThresholds = [0.05, 0.1, 0.2]

    // MARK: Benchmark shape

    public static let benchmarkFileName = "ltx-bench.json"

    /// `Benchmarks/configs/ltx-bench.json`: 512 wide (8 × 64), 4 blocks, 128-channel latents 4×16×16 =
    /// 1024 video tokens, 128 caption tokens of width 512, batch 1.
    public static var benchmarkDefault: BenchmarkShape<LTXVideoConfiguration> {
        BenchmarkShape(
            configuration: LTXVideoConfiguration(
                inChannels: 128, outChannels: 128, patchSize: 1, patchSizeT: 1, numAttentionHeads: 8,
                attentionHeadDim: 64, crossAttentionDim: 512, numLayers: 4, activationFn: "gelu-approximate",
                qkNorm: "rms_norm_across_heads", normElementwiseAffine: false, normEps: 1e-6, captionChannels: 512,
                attentionBias: true, attentionOutBias: true),
            inputs: BenchmarkInputs(["batch": 1, "latent_frames": 4, "latent_height": 16, "latent_width": 16,
                                     "text_tokens": 128]))
    }

    /// `batch`, `latent_frames`, `latent_height`, `latent_width`, `text_tokens`; the `.uncond` branch gets
    /// another caption embedding.
    public static func randomInputs(_ c: LTXVideoConfiguration, sizes: BenchmarkInputs, seed: UInt64) throws -> SamplingInputs<LTXVideoInput> {
        let b = try sizes.positive("batch")
        func inputs(_ s: UInt64) throws -> LTXVideoInput {
            try LTXVideoTransformer.randomInputs(
                configuration: c, batch: b, frames: sizes.positive("latent_frames"), height: sizes.positive("latent_height"),
                width: sizes.positive("latent_width"), textTokens: sizes.positive("text_tokens"), seed: s)
        }
        let cond = try inputs(seed)
        let uncond = try inputs(seed &+ 0x5EED)  // a different "negative prompt" embedding
        return SamplingInputs(cond: cond, uncond: uncond, batch: b)
    }

    public static func cost(_ c: LTXVideoConfiguration, sizes: BenchmarkInputs) throws -> ForwardCost {
        let b = try sizes.positive("batch"), f = try sizes.positive("latent_frames")
        let h = try sizes.positive("latent_height"), w = try sizes.positive("latent_width")
        let l = try sizes.positive("text_tokens")
        // Bounded before the estimates multiply them further.
        try SizeLimits.checkInputElements("hidden_states", [b, f, h, w, c.inChannels])
        try SizeLimits.checkInputElements("encoder_hidden_states", [b, l, max(c.captionChannels, c.innerDim)])
        let s = f * h * w
        return ForwardCost(
            summary: "LTX-Video \(c.innerDim)-wide, \(c.numLayers) blocks, \(s) video + \(l) text tokens, batch \(b)",
            flops: c.forwardFLOPs(batch: b, videoTokens: s, textTokens: l),
            activationBytes: c.activationBytesEstimate(batch: b, videoTokens: s, textTokens: l))
    }

    // MARK: Fixtures

    public static func forwardInput(_ a: FixtureArguments, configuration: LTXVideoConfiguration) throws -> LTXVideoInput {
        try input(hiddenStates: a.tensor("hidden_states"), timestep: a.tensor("timestep"), a)
    }

    public static func samplingInput(latent: Tensor, timestep: Float, conditioning a: FixtureArguments,
                                     configuration: LTXVideoConfiguration) throws -> LTXVideoInput {
        try input(hiddenStates: latent, timestep: a.timestep(timestep, batchOf: latent), a)
    }

    /// The call's arguments: tensors, and the non-tensor grid and `rope_interpolation_scale` (absent or
    /// null: not passed).
    static func input(hiddenStates: Tensor, timestep: Tensor, _ a: FixtureArguments) throws -> LTXVideoInput {
        func optionalInteger(_ name: String) throws -> Int? {
            guard let v = a.nonTensor[name], v != .null else { return nil }
            return try a.integer(name)
        }
        var scale: [Float]? = nil
        if let v = a.nonTensor["rope_interpolation_scale"], v != .null {
            guard case let .array(items) = v, let numbers = Optional(items.compactMap(\.number)), numbers.count == items.count else {
                throw VerifyError.malformedFixture(file: a.source, reason: "rope_interpolation_scale must be a list of numbers")
            }
            scale = numbers.map { Float($0) }
        }
        return LTXVideoInput(
            hiddenStates: hiddenStates, encoderHiddenStates: try a.tensor("encoder_hidden_states"), timestep: timestep,
            encoderAttentionMask: a.optionalTensor("encoder_attention_mask"),
            numFrames: try optionalInteger("num_frames"), height: try optionalInteger("height"),
            width: try optionalInteger("width"), ropeInterpolationScale: scale,
            videoCoords: a.optionalTensor("video_coords"))
    }
}
