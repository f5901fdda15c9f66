import Foundation
import TeaCache
import Tensors

// MARK: Model

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
        let frequencies = sinusoidalColumnFrequencies(dim: AdaLayerNormSingle.frequencyChannels, downscaleFreqShift: 0)
        let u = 1000 / Double(steps)
        return { name, tensor in
            if name == taperedWeight { taperTimestepColumns(&tensor, frequencies: frequencies, stepSize: u) }
        }
    }

    // MARK: Sampling conventions and presets

    public static let timestepConvention = TimestepConvention.sigmaTimes1000
    public static var presets: [TeaCachePreset] { [.ltxVideo] }
}

/// The reference repository's LTX-Video (TeaCache4LTX-Video) coefficients (ali-vilab/TeaCache @ 7c10efc, copied character
/// for character from teacache-spec.md §2.2) and its published thresholds and speedups (§2.1, §3).
extension TeaCachePreset {
    /// LTX-Video 0.9.1. Default δ 0.05. The residual includes the output norm and modulation.
    public static let ltxVideo = TeaCachePreset(
        reference: "ltx_video",
        [2.14700694e+01, -1.28016453e+01, 2.31279151e+00, 7.92487521e-01, 9.69274326e-03],
        defaultThreshold: 0.05, speedups: [(0.03, 1.6), (0.05, 2.1)],
        modulatedInput: "norm1(h_in)·(1+scale_msa)+shift_msa of block 0 (scale_shift_table + temb)",
        provenance: "TeaCache4LTX-Video/teacache_ltx.py")
}

// MARK: TeaCache adapter

extension LTXVideoState: BatchSelectableState {
    /// `[video tokens]`: the only stream TeaCache caches for LTX-Video (the caption enters through
    /// cross-attention and is recomputed on every call). A new value holds exactly one tensor
    /// (a precondition; `CachedTransformer` only assigns arrays of the count it read).
    public var streams: [Tensor] {
        get { [tokens] }
        set { tokens = newValue.soleStream(of: "LTX-Video") }
    }

    /// The batch size.
    public var batchSize: Int { tokens.shape[0] }

    /// The state of the batch elements `indices` (rotary tables shared by the batch stay shared).
    public func selecting(batch indices: [Int]) throws -> LTXVideoState {
        var s = self
        s.tokens = try tokens.gatheringRows(indices)
        s.embeddedTimestep = try embeddedTimestep.gatheringRows(indices)
        s.blocks.temb = try blocks.temb.gatheringRows(indices)
        s.blocks.context = try blocks.context.gatheringRows(indices)
        s.blocks.attentionBias = try blocks.attentionBias.map { t throws(TensorError) in try t.gatheringRows(indices) }
        s.blocks.rotary = try blocks.rotary.selecting(batch: indices)
        return s
    }
}

/// ``LTXVideoTransformer`` as a TeaCache ``DiffusionTransformer`` (TeaCache4LTX-Video, spec §2.3.10).
///
/// - modulated input: block 0's `norm1(h_in)·(1 + scale_msa) + shift_msa` with (shift_msa, scale_msa)
///   from `scale_shift_table + temb` (``LTXVideoTransformer/modulatedInput(_:)``).
/// - stream: `[video tokens]`; the residual **includes the output norm and its modulation**:
///   `norm_out(blocks(h_in))·(1 + scale) + shift − h_in`, so ``LTXVideoTransformer/runBlocks(_:)`` ends
///   with that norm and a skipped call goes straight to `proj_out` (``LTXVideoTransformer/outputHead(_:)``).
/// - counter: the standard one (first and last step computed).
extension LTXVideoTransformer: DiffusionTransformer {
    public typealias Input = LTXVideoInput
    public typealias State = LTXVideoState
}

/// LTX-Video block by block (First-Block Cache): the transformer blocks
/// (``LTXVideoTransformer/runBlock(_:_:)``), then the output norm and its modulation, which lie outside
/// the blocks as in diffusers (the span First-Block Cache caches is the blocks' alone).
extension LTXVideoTransformer: BlockwiseDiffusionTransformer {
    public func blockCount(_ state: LTXVideoState) -> Int { blocks.count }

    public func finishBlocks(_ state: inout LTXVideoState) throws { try applyOutputNorm(&state) }
}

extension LTXVideoTransformer: MemoryBudgeted {}

// MARK: Harness

extension LTXVideoFamily {
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
            try randomInput(
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

    /// `rope_interpolation_scale` of LTXPipeline at 25 fps: (temporal compression 8 / 25, spatial
    /// compression 32, 32).
    static let pipelineRopeInterpolationScale: [Float] = [8.0 / 25.0, 32, 32]

    /// Random inputs of an LTX pipeline shape: packed latent tokens `[B, F·H·W, in_channels]`, `textTokens`
    /// caption features with an all-ones mask, timestep 500 (sigma 0.5) and LTXPipeline's
    /// `rope_interpolation_scale`.
    private static func randomInput(
        configuration c: LTXVideoConfiguration, batch b: Int, frames f: Int, height h: Int, width w: Int,
        textTokens l: Int, seed: UInt64
    ) throws(ModelLoadError) -> LTXVideoInput {
        for (field, v) in [("batch", b), ("latent_frames", f), ("latent_height", h), ("latent_width", w),
                           ("text_tokens", l)] {
            try SizeLimits.checkInput(field, v)
        }
        try SizeLimits.checkInputElements("hidden_states", [b, f, h, w, c.inChannels])
        try SizeLimits.checkInputElements("encoder_hidden_states", [b, l, c.captionChannels])
        var g = SeededGenerator(seed: seed)
        do {
            return LTXVideoInput(
                hiddenStates: try .randomNormal(shape: [b, f * h * w, c.inChannels], using: &g),
                encoderHiddenStates: try .randomNormal(shape: [b, l, c.captionChannels], using: &g),
                timestep: try Tensor(shape: [b], repeating: 500),
                encoderAttentionMask: try Tensor(shape: [b, l], repeating: 1),
                numFrames: f, height: h, width: w, ropeInterpolationScale: pipelineRopeInterpolationScale)
        } catch {
            throw .tensor(error)
        }
    }
}
