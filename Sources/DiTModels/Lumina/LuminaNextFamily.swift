import Foundation
import TeaCache
import Tensors

/// Lumina-Next (diffusers `LuminaNextDiT2DModel`) in the registry: loading, sampling conventions
/// (timestep = 1 − sigma, velocity = −(first `in_channels` output channels) with `learn_sigma`, no CFG in
/// the demo), the TeaCache4Lumina-T2X preset, the benchmark shape and the fixture plug-in.
///
/// Fixture arguments are diffusers' forward arguments: `hidden_states`, `timestep`,
/// `encoder_hidden_states`, `encoder_mask`, `image_rotary_emb` (the complex table as `(real, imaginary)`
/// pairs, used as given) and `cross_attention_kwargs` (`base_sequence_length`) from `non_tensor_args`.
/// The standard counter, one cache entry per branch.
public enum LuminaNextFamily: DiTFamilyHarness {
    public typealias Configuration = LuminaNextConfiguration
    public typealias Model = LuminaNextTransformer

    public static let name = "lumina_next"
    public static let summary = "Lumina-Next-shaped DiT (LuminaNextDiT2DModel), timestep = 1 − sigma, v = −out[:, :C]"

    public static func makeModel(_ configuration: LuminaNextConfiguration, weights: WeightScope) throws(ModelLoadError) -> LuminaNextTransformer {
        LuminaNextTransformer(configuration: configuration, weights: weights)
    }

    /// The §6 taper of `time_caption_embed.timestep_embedder.linear_1.weight`, `u = 1 / steps` (Lumina's
    /// timestep moves by `1/N` per step).
    public static func randomWeightAdjustment(_ c: LuminaNextConfiguration, steps: Int) -> WeightAdjustment? {
        luminaTimestepTaper(steps: steps)
    }

    // MARK: Sampling conventions and presets

    public static let timestepConvention = TimestepConvention.oneMinusSigma

    /// `v = −out[:, :in_channels]` with `learn_sigma` (the variance channels are dropped, as
    /// `LuminaText2ImgPipeline` does), else `v = −out`.
    public static func velocity(_ c: LuminaNextConfiguration) -> VelocityConvention {
        c.learnSigma ? VelocityConvention(sign: -1, channels: .first(count: c.inChannels, axis: 1)) : .negated
    }

    public static var presets: [TeaCachePreset] { [.luminaNext] }
    /// Measured on the default model (28 steps, seed 0, distances 0.025–0.045, where the preset's
    /// polynomial gives ≈ 0.35 per step): 0.3 computes ~22 of 28 calls, 0.5 ~13, 0.8 and 1.2 fewer.
    public static let demoThresholds = [0.3, 0.5, 0.8, 1.2]

    // MARK: Benchmark shape

    public static let benchmarkFileName = "lumina-next-bench.json"

    /// `Benchmarks/configs/lumina-next-bench.json`: 512 wide (8 heads × 64, 8 key/value heads), 4 blocks,
    /// learned sigma; a 4×64×64 latent with 2×2 patches = 1024 image tokens, 128 caption tokens, batch 1.
    public static var benchmarkDefault: BenchmarkShape<LuminaNextConfiguration> {
        var c = LuminaNextConfiguration()
        c.sampleSize = 64
        c.patchSize = 2
        c.inChannels = 4
        c.hiddenSize = 512
        c.numLayers = 4
        c.numAttentionHeads = 8
        c.numKVHeads = 8
        c.multipleOf = 256
        c.ffnDimMultiplier = nil
        c.normEps = 1e-5
        c.learnSigma = true
        c.qkNorm = true
        c.crossAttentionDim = 512
        c.scalingFactor = 1
        return BenchmarkShape(configuration: c, inputs: BenchmarkInputs(
            ["batch": 1, "latent_height": 64, "latent_width": 64, "text_tokens": 128]))
    }

    /// `batch`, `latent_height`, `latent_width`, `text_tokens`; the `.uncond` branch gets another caption.
    /// Each call gets the pipeline's rotary scaling for its timestep and the pipeline's proportional
    /// attention base (none without a `sample_size`).
    public static func randomInputs(_ c: LuminaNextConfiguration, sizes: BenchmarkInputs, seed: UInt64) throws -> SamplingInputs<LuminaNextInput> {
        let z = try LuminaInputChecks.benchmarkSizes(sizes, patch: c.patchSize, channels: c.inChannels, captionWidth: c.crossAttentionDim)
        let (b, h, w, l) = (z.batch, z.height, z.width, z.textTokens)
        let cond = try LuminaNextTransformer.randomInputs(configuration: c, batch: b, latentHeight: h, latentWidth: w,
                                                          textTokens: l, seed: seed)
        let uncond = try LuminaNextTransformer.randomInputs(configuration: c, batch: b, latentHeight: h, latentWidth: w,
                                                            textTokens: l, seed: seed &+ 0x5EED)
        return SamplingInputs(cond: cond, uncond: uncond, batch: b) { x, t in
            if c.sampleSize != nil {
                let s = try LuminaNextTransformer.pipelineSettings(configuration: c, latentHeight: h, latentWidth: w,
                                                                   timestep: Double(t))
                (x.rotary, x.baseSequenceLength) = (s.rotary, s.baseSequenceLength)
            } else {
                (x.rotary, x.baseSequenceLength) = (.unscaled, nil)
            }
        }
    }

    public static func cost(_ c: LuminaNextConfiguration, sizes: BenchmarkInputs) throws -> ForwardCost {
        let z = try LuminaInputChecks.benchmarkSizes(sizes, patch: c.patchSize, channels: c.inChannels, captionWidth: c.crossAttentionDim)
        return ForwardCost(
            summary: "Lumina-Next \(c.hiddenSize)-wide, \(c.numLayers) blocks, \(z.imageTokens) image + \(z.textTokens) text tokens, batch \(z.batch)",
            flops: c.forwardFLOPs(batch: z.batch, imageTokens: z.imageTokens, textTokens: z.textTokens),
            activationBytes: c.activationBytesEstimate(batch: z.batch, imageTokens: z.imageTokens, textTokens: z.textTokens))
    }

    // MARK: Fixtures

    public static func forwardInput(_ a: FixtureArguments, configuration: LuminaNextConfiguration) throws -> LuminaNextInput {
        try input(hiddenStates: a.tensor("hidden_states"), timestep: a.tensor("timestep"), a)
    }

    public static func samplingInput(latent: Tensor, timestep: Float, conditioning a: FixtureArguments,
                                     configuration: LuminaNextConfiguration) throws -> LuminaNextInput {
        try input(hiddenStates: latent, timestep: a.timestep(timestep, batchOf: latent), a)
    }

    private static func input(hiddenStates: Tensor, timestep: Tensor, _ a: FixtureArguments) throws -> LuminaNextInput {
        LuminaNextInput(hiddenStates: hiddenStates, timestep: timestep,
                        encoderHiddenStates: try a.tensor("encoder_hidden_states"), encoderMask: try a.tensor("encoder_mask"),
                        rotary: .table(try a.tensor("image_rotary_emb")), baseSequenceLength: try baseSequenceLength(a))
    }

    /// `cross_attention_kwargs["base_sequence_length"]`, or nil when the kwargs are empty.
    static func baseSequenceLength(_ a: FixtureArguments) throws -> Double? {
        guard let kwargs = a.nonTensor["cross_attention_kwargs"] else { return nil }
        guard case let .object(o) = kwargs else {
            throw VerifyError.malformedFixture(file: a.source, reason: "cross_attention_kwargs must be an object")
        }
        guard let v = o["base_sequence_length"] else { return nil }
        guard let n = v.number else {
            throw VerifyError.malformedFixture(file: a.source, reason: "base_sequence_length must be a number, got \(v)")
        }
        return n
    }

    /// One residual: the image tokens.
    public static var residualNames: [String] { ["teacache.residual"] }
}

/// The §6 taper of both Lumina models' `time_caption_embed.timestep_embedder.linear_1.weight` (256
/// sinusoid channels, shift 0), `u = 1 / steps`.
func luminaTimestepTaper(steps: Int) -> WeightAdjustment {
    let frequencies = sinusoidalColumnFrequencies(dim: LuminaNextTimeCaptionEmbedding.frequencyChannels, downscaleFreqShift: 0)
    let u = 1 / Double(steps)
    return { name, tensor in
        if name == "time_caption_embed.timestep_embedder.linear_1.weight" {
            taperTimestepColumns(&tensor, frequencies: frequencies, stepSize: u)
        }
    }
}
