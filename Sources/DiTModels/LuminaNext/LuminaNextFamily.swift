import Foundation
import TeaCache
import Tensors

// MARK: Model

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

    /// The settings `LuminaText2ImgPipeline` passes for a latent of `latentHeight × latentWidth` at
    /// Lumina timestep `timestep`: the proportional-attention base `(8·sample_size // 16)²` and the
    /// rotary scaling `√(H·W) / sample_size` — as a linear factor below `scalingWatershed` (default 1,
    /// so every step), as an NTK factor from it on.
    ///
    /// - Throws: `unsupportedConfig` when the configuration has no `sample_size`.
    public static func pipelineSettings(
        configuration c: LuminaNextConfiguration, latentHeight: Int, latentWidth: Int, timestep: Double,
        scalingWatershed: Double = 1.0
    ) throws(ModelLoadError) -> (rotary: LuminaNextRotary, baseSequenceLength: Double) {
        guard let s = c.sampleSize else {
            throw .unsupportedConfig(field: "sample_size", value: "null", reason: "the pipeline's defaults are derived from it")
        }
        let vaeScale = 8, defaultImage = s * vaeScale
        let base = Double((defaultImage / 16) * (defaultImage / 16))
        let scaling = (Double(latentWidth * vaeScale) * Double(latentHeight * vaeScale)
                       / (Double(defaultImage) * Double(defaultImage))).squareRoot()
        let rotary: LuminaNextRotary = timestep < scalingWatershed
            ? .computed(linearFactor: scaling, ntkFactor: 1) : .computed(linearFactor: 1, ntkFactor: scaling)
        return (rotary, base)
    }
}

/// The reference repository's Lumina-Next preset (TeaCache4Lumina-T2X, ali-vilab/TeaCache @ 7c10efc;
/// coefficients `TeaCachePreset.luminaCoefficients` from teacache-spec.md §2.2) with its published
/// thresholds and speedups (§2.1, §3).
extension TeaCachePreset {
    /// Lumina-Next-SFT. Default δ 0.3.
    public static let luminaNext = TeaCachePreset(
        reference: "lumina_next", luminaCoefficients, defaultThreshold: 0.3,
        speedups: [(0.2, 1.5), (0.3, 1.9), (0.4, 2.4), (0.5, 2.8)],
        modulatedInput: "layers[0].norm1(h_in, temb)[0] (RMSNorm(x)·(1+scale_msa))",
        provenance: "TeaCache4Lumina-T2X/teacache_lumina_next.py")
}

// MARK: TeaCache adapter

/// Lumina-Next's TeaCache state: the image tokens are the one cached stream (the caption enters through
/// cross-attention inside the blocks and rides along uncached).
extension LuminaNextState: BatchSelectableState {
    /// `[image tokens]`. The state has exactly one stream: `CachedTransformer` only assigns arrays of the
    /// count and shapes it read.
    public var streams: [Tensor] {
        get { [tokens] }
        set { tokens = newValue.soleStream(of: "Lumina-Next") }
    }

    /// The batch size.
    public var batchSize: Int { tokens.shape[0] }

    /// The state of the batch elements `indices` (tokens, conditioning, captions and masks; the rotary
    /// tables and the attention scale are shared by the batch).
    public func selecting(batch indices: [Int]) throws -> LuminaNextState {
        var s = self
        s.tokens = try tokens.gatheringRows(indices)
        s.context.temb = try context.temb.gatheringRows(indices)
        s.context.caption = try context.caption.gatheringRows(indices)
        s.context.captionMask = try context.captionMask.gatheringRows(indices)
        return s
    }
}

/// Lumina-Next as a TeaCache ``DiffusionTransformer`` (TeaCache4Lumina-T2X): `prepare` embeds, the
/// modulated input is `layers[0].norm1(h_in, temb)[0]`, `runBlocks` runs every layer (the cached residual
/// is the image-token change across all of them), `outputHead` applies `norm_out` and unpatchifies.
/// One cache entry per CFG branch, the standard counter.
extension LuminaNextTransformer: DiffusionTransformer {
    public typealias Input = LuminaNextInput
    public typealias State = LuminaNextState
}

/// Lumina-Next block by block (First-Block Cache): `layers` (``LuminaNextTransformer/runBlock(_:_:)``, the
/// loop body of ``LuminaNextTransformer/runBlocks(_:)``), nothing after them (`norm_out` lies outside the
/// cached span, as diffusers' hooks see it).
extension LuminaNextTransformer: BlockwiseDiffusionTransformer {
    /// `num_layers`.
    public func blockCount(_ state: LuminaNextState) -> Int { depth }
}

extension LuminaNextTransformer: MemoryBudgeted {}

// MARK: Harness

extension LuminaNextFamily {
    /// Measured on the default model (28 steps, seed 0, distances 0.025–0.045, where the preset's
    /// polynomial gives ≈ 0.35 per step): 0.3 computes ~22 of 28 calls, 0.5 ~13, 0.8 and 1.2 fewer.
    public static let demoThresholds = [0.3, 0.5, 0.8, 1.2]

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
        let cond = try randomInputs(configuration: c, batch: b, latentHeight: h, latentWidth: w, textTokens: l, seed: seed)
        let uncond = try randomInputs(configuration: c, batch: b, latentHeight: h, latentWidth: w, textTokens: l,
                                      seed: seed &+ 0x5EED)
        return SamplingInputs(cond: cond, uncond: uncond, batch: b) { x, t in
            if c.sampleSize != nil {
                let s = try pipelineSettings(configuration: c, latentHeight: h, latentWidth: w, timestep: Double(t))
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

    /// Random inputs of a Lumina-Next pipeline shape: a latent `[B, in_channels, H, W]`, `textTokens`
    /// caption features with an all-ones mask, timestep 0.5, and the pipeline's rotary scaling and
    /// proportional-attention base for that size.
    ///
    /// - Throws: `malformedConfig` for sizes outside ``SizeLimits`` or not divisible by `patch_size`.
    public static func randomInputs(
        configuration c: LuminaNextConfiguration, batch b: Int, latentHeight h: Int, latentWidth w: Int,
        textTokens l: Int, seed: UInt64
    ) throws(ModelLoadError) -> LuminaNextInput {
        _ = try LuminaInputChecks.benchmarkSizes(batch: b, height: h, width: w, textTokens: l, patch: c.patchSize,
                                                 channels: c.inChannels, captionWidth: c.crossAttentionDim)
        let settings = try pipelineSettings(configuration: c, latentHeight: h, latentWidth: w, timestep: 0.5)
        var g = SeededGenerator(seed: seed)
        do {
            return LuminaNextInput(
                hiddenStates: try .randomNormal(shape: [b, c.inChannels, h, w], using: &g),
                timestep: try Tensor(shape: [b], repeating: 0.5),
                encoderHiddenStates: try .randomNormal(shape: [b, l, c.crossAttentionDim], using: &g),
                encoderMask: try Tensor(shape: [b, l], repeating: 1),
                rotary: settings.rotary, baseSequenceLength: settings.baseSequenceLength)
        } catch {
            throw .tensor(error)
        }
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
