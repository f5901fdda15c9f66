import Foundation
import TeaCache
import Tensors

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
        let base = try MochiTransformer.randomInputs(
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
}
