import Foundation
import TeaCache
import Tensors

/// CogVideoX (diffusers `CogVideoXTransformer3DModel`: 1.0 2B/5B/5B-I2V and 1.5 T2V/I2V) in the
/// registry: loading, sampling conventions (timestep = sigma·1000, the output taken as the velocity, one
/// call per step as in the fixtures), the CogVideoX and ConsisID presets, the benchmark shape and the
/// fixture plug-in.
///
/// Fixture arguments are diffusers' forward arguments `hidden_states` (`[B, F, C, H, W]`),
/// `encoder_hidden_states`, `timestep` and, for ofs models, `ofs`. A folder's `image_rotary_emb.*`
/// tensors are not read: the model builds its rotary table from the latent size as the pipelines do
/// (the forward tests compare the two). TeaCache caches two streams, the video and the text tokens
/// (`teacache.residual`, `teacache.residual_encoder`), with the standard counter.
public enum CogVideoXFamily: DiTFamilyHarness {
    public typealias Configuration = CogVideoXConfiguration
    public typealias Model = CogVideoXTransformer

    public static let name = "cogvideox"
    public static let summary = "CogVideoX-shaped video DiT (CogVideoXTransformer3DModel), timestep = sigma·1000, two cached streams"

    public static func makeModel(_ configuration: CogVideoXConfiguration, weights: WeightScope) throws(ModelLoadError) -> CogVideoXTransformer {
        CogVideoXTransformer(configuration: configuration, weights: weights)
    }

    /// The §6 taper of `time_embedding.linear_1.weight` (and `ofs_embedding.linear_1.weight`),
    /// `u = 1000 / steps`.
    public static func randomWeightAdjustment(_ c: CogVideoXConfiguration, steps: Int) -> WeightAdjustment? {
        let shift = Float(c.freqShift)
        let time = sinusoidalColumnFrequencies(dim: c.innerDim, downscaleFreqShift: shift)
        let ofs = c.ofsEmbedDim.map { sinusoidalColumnFrequencies(dim: $0, downscaleFreqShift: shift) }
        let u = 1000 / Double(steps)
        return { name, tensor in
            if name == "time_embedding.linear_1.weight" {
                taperTimestepColumns(&tensor, frequencies: time, stepSize: u)
            } else if name == "ofs_embedding.linear_1.weight", let ofs {
                taperTimestepColumns(&tensor, frequencies: ofs, stepSize: u)
            }
        }
    }

    // MARK: Sampling conventions and presets

    public static let timestepConvention = TimestepConvention.sigmaTimes1000
    /// CogVideoX1.5-5B first (the demo's default model is 1.5-shaped), then 1.5-5B-I2V, 2b, 5b,
    /// 5b-I2V and ConsisID (CogVideoX-5b coefficients).
    public static var presets: [TeaCachePreset] {
        [.cogVideoX15_5B, .cogVideoX15_5BI2V, .cogVideoX2B, .cogVideoX5B, .cogVideoX5BI2V, .consisID]
    }
    public static let demoThresholds = [0.1, 0.2, 0.3]

    // MARK: Benchmark shape

    public static let benchmarkFileName = "cogvideox-bench.json"

    /// `Benchmarks/configs/cogvideox-bench.json`: the CogVideoX 1.5 layout, 512 wide (8 × 64), 4 blocks;
    /// latent 8×16×32×32 (frames before channels) with 2×2×2 patches = 1024 video tokens, 128 text
    /// tokens, batch 1.
    public static var benchmarkDefault: BenchmarkShape<CogVideoXConfiguration> {
        BenchmarkShape(
            configuration: CogVideoXConfiguration(
                numAttentionHeads: 8, attentionHeadDim: 64, inChannels: 16, outChannels: 16, flipSinToCos: true,
                freqShift: 0, timeEmbedDim: 512, ofsEmbedDim: nil, textEmbedDim: 512, numLayers: 4, dropout: 0,
                attentionBias: true, sampleWidth: 32, sampleHeight: 32, sampleFrames: 29, patchSize: 2, patchSizeT: 2,
                temporalCompressionRatio: 4, maxTextSeqLength: 128, activationFn: "gelu-approximate",
                timestepActivationFn: "silu", normElementwiseAffine: true, normEps: 1e-5, spatialInterpolationScale: 1.875,
                temporalInterpolationScale: 1, useRotaryPositionalEmbeddings: true, useLearnedPositionalEmbeddings: false,
                patchBias: false),
            inputs: BenchmarkInputs(["batch": 1, "latent_frames": 8, "latent_height": 32, "latent_width": 32,
                                     "text_tokens": 128]))
    }

    /// `batch`, `latent_frames`, `latent_height`, `latent_width` and `text_tokens`.
    public static func randomInputs(_ c: CogVideoXConfiguration, sizes: BenchmarkInputs, seed: UInt64) throws -> SamplingInputs<CogVideoXInput> {
        let b = try sizes.positive("batch")
        let base = try CogVideoXTransformer.randomInputs(
            configuration: c, batch: b, frames: sizes.positive("latent_frames"), height: sizes.positive("latent_height"),
            width: sizes.positive("latent_width"), textTokens: sizes.positive("text_tokens"), seed: seed)
        return SamplingInputs(cond: base, batch: b)
    }

    public static func cost(_ c: CogVideoXConfiguration, sizes: BenchmarkInputs) throws -> ForwardCost {
        let (b, l) = (try sizes.positive("batch"), try sizes.positive("text_tokens"))
        let (f, h, w) = (try sizes.positive("latent_frames"), try sizes.positive("latent_height"), try sizes.positive("latent_width"))
        // Bounded before the estimates multiply them further.
        try SizeLimits.checkInputElements("hidden_states", [b, f, c.inChannels, h, w])
        try SizeLimits.checkInputElements("encoder_hidden_states", [b, l, max(c.textEmbedDim, c.innerDim)])
        let s = try c.videoTokens(frames: f, height: h, width: w)
        return ForwardCost(
            summary: "CogVideoX \(c.patchSizeT == nil ? "1.0" : "1.5") \(c.innerDim)-wide, \(c.numLayers) blocks, "
                + "\(s) video + \(l) text tokens, batch \(b)",
            flops: c.forwardFLOPs(batch: b, videoTokens: s, textTokens: l),
            activationBytes: c.activationBytesEstimate(batch: b, videoTokens: s, textTokens: l))
    }

    // MARK: Fixtures

    public static func forwardInput(_ a: FixtureArguments, configuration: CogVideoXConfiguration) throws -> CogVideoXInput {
        CogVideoXInput(hiddenStates: try a.tensor("hidden_states"), encoderHiddenStates: try a.tensor("encoder_hidden_states"),
                       timestep: try a.tensor("timestep"), ofs: a.optionalTensor("ofs"))
    }

    public static func samplingInput(latent: Tensor, timestep: Float, conditioning a: FixtureArguments,
                                     configuration: CogVideoXConfiguration) throws -> CogVideoXInput {
        CogVideoXInput(hiddenStates: latent, encoderHiddenStates: try a.tensor("encoder_hidden_states"),
                       timestep: try a.timestep(timestep, batchOf: latent), ofs: a.optionalTensor("ofs"))
    }
}
