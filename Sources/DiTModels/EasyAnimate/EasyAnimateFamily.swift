import Foundation
import TeaCache
import Tensors

// MARK: Model

/// EasyAnimate V5 / V5.1 (diffusers `EasyAnimateTransformer3DModel`; T2V, and I2V / V2V / control
/// through extra latent channels) in the registry: loading, sampling conventions (flow matching,
/// timestep = sigma·1000, velocity = output, no CFG in the fixtures' loop), presets, the benchmark shape
/// and the fixture plug-in.
///
/// Fixture arguments are diffusers' forward arguments: `hidden_states`, `timestep`,
/// `encoder_hidden_states` and, when present, `encoder_hidden_states_t5`, `inpaint_latents` and
/// `control_latents`.
public enum EasyAnimateFamily: DiTFamilyHarness {
    public typealias Configuration = EasyAnimateConfiguration
    public typealias Model = EasyAnimateTransformer

    public static let name = "easyanimate"
    public static let summary = "EasyAnimate-shaped video MMDiT (EasyAnimateTransformer3DModel), timestep = sigma·1000"

    public static func makeModel(_ configuration: EasyAnimateConfiguration, weights: WeightScope) throws(ModelLoadError) -> EasyAnimateTransformer {
        EasyAnimateTransformer(configuration: configuration, weights: weights)
    }

    /// The §6 taper of `time_embedding.linear_1.weight` (sinusoid of width D, shift `freq_shift`),
    /// `u = 1000 / steps`.
    public static func randomWeightAdjustment(_ c: EasyAnimateConfiguration, steps: Int) -> WeightAdjustment? {
        let frequencies = sinusoidalColumnFrequencies(dim: c.innerDim, downscaleFreqShift: Float(c.freqShift))
        let u = 1000 / Double(steps)
        return { name, tensor in
            if name == "time_embedding.linear_1.weight" {
                taperTimestepColumns(&tensor, frequencies: frequencies, stepSize: u)
            }
        }
    }

    // MARK: Sampling conventions and presets

    public static let timestepConvention = TimestepConvention.sigmaTimes1000
    /// EasyAnimate's coefficient sets; the demo compares with V5.1-12b (the default of the reference's
    /// `enable_teacache`).
    public static var presets: [TeaCachePreset] { [.easyAnimateV51_12B, .easyAnimateV51_7B, .easyAnimateV5_7B] }
}

/// EasyAnimate's own TeaCache coefficients (aigc-apps/EasyAnimate @ c2a70d1,
/// `easyanimate/models/transformer3d.py`, `get_teacache_coefficients`), with the threshold its
/// `predict_t2v.py` / `predict_i2v.py` / `predict_v2v.py` scripts use (0.08, "recommended between 0.05
/// and 0.1"). The repository publishes no speedup table.
extension TeaCachePreset {
    static let easyAnimateModulatedInput =
        "transformer_blocks[0].norm1(h_in, text, temb)[0] (LayerNorm(h_in)·(1+scale)+shift, video tokens); "
        + "residual = norm_out(norm_final(blocks(h_in)), temb) − h_in"
    static let easyAnimateSource = "aigc-apps/EasyAnimate easyanimate/models/transformer3d.py get_teacache_coefficients"

    /// EasyAnimateV5.1-12b (zh, InP and Control), also the default of `enable_teacache`. Default δ 0.08.
    public static let easyAnimateV51_12B = TeaCachePreset(
        reference: "easyanimate_v5.1_12b", [-10.47857366, 8.33844143, -0.78477557, 0.68798618, 0.0136149],
        defaultThreshold: 0.08, modulatedInput: easyAnimateModulatedInput,
        provenance: easyAnimateSource + " ('v5.1-12b', fitted on T2V CompBench; the enable_teacache default); "
            + "threshold from predict_t2v.py")

    /// EasyAnimateV5.1-7b (zh, InP and Control). Default δ 0.08.
    public static let easyAnimateV51_7B = TeaCachePreset(
        reference: "easyanimate_v5.1_7b", [1.07862322, -4.19362456, 3.06725828, 0.33161686, 0.02374758],
        defaultThreshold: 0.08, modulatedInput: easyAnimateModulatedInput,
        provenance: easyAnimateSource + " ('v5.1-7b', fitted on T2V CompBench); threshold from predict_t2v.py")

    /// EasyAnimateV5-7b-zh-InP: the set the same function names in a comment (its code returns None for
    /// V5 models, so EasyAnimate itself does not enable TeaCache for them). Default δ 0.08.
    public static let easyAnimateV5_7B = TeaCachePreset(
        reference: "easyanimate_v5_7b", [-3.64204720e+03, 1.43764725e+03, -1.93045263e+02, 1.09596499e+01, -1.70663507e-01],
        defaultThreshold: 0.08, modulatedInput: easyAnimateModulatedInput,
        provenance: easyAnimateSource + " (comment: 'The coefficients for EasyAnimateV5-7b-zh-InP should be'); "
            + "threshold from predict_t2v.py")
}

// MARK: TeaCache adapter

/// EasyAnimate's TeaCache state: the video tokens are the one cached stream; the text tokens, `temb` and
/// the rotary tables ride along uncached (the output head reads only the video tokens).
extension EasyAnimateState: BatchSelectableState {
    /// `[video tokens]`: `h_in` before the blocks, `norm_out(norm_final(blocks(h_in)), temb)` after
    /// ``EasyAnimateTransformer/runBlocks(_:)``, so the cached residual spans the output norms and a skip
    /// goes straight to `proj_out`, as EasyAnimate's TeaCache does. The state has exactly one stream:
    /// `CachedTransformer` only assigns arrays of the count and shapes it read.
    public var streams: [Tensor] {
        get { [video] }
        set { video = newValue.soleStream(of: "EasyAnimate") }
    }

    /// The batch size.
    public var batchSize: Int { video.shape[0] }

    /// The state of the batch elements `indices` (video, text and `temb` rows; the rotary tables are
    /// shared by the batch).
    public func selecting(batch indices: [Int]) throws -> EasyAnimateState {
        EasyAnimateState(video: try video.gatheringRows(indices), text: try text.gatheringRows(indices),
                         temb: try temb.gatheringRows(indices), rope: rope, grid: grid)
    }
}

/// ``EasyAnimateTransformer`` as a TeaCache ``DiffusionTransformer`` (EasyAnimate's `TeaCache` class in
/// its transformer's forward):
///
/// - modulated input: `transformer_blocks[0].norm1(h_in, text, temb)[0]`, the video half;
/// - streams: `[video tokens]`; `runBlocks` ends after `norm_final` and `norm_out` (the output-head
///   exception of FORMAT.md §4), so a skip also reuses the output norm of the last computed step;
/// - counter: the standard rule (first and last step computed, period N). The reference also clears its
///   previous input and residual when the counter wraps, which never happens inside one run.
extension EasyAnimateTransformer: DiffusionTransformer {
    public typealias Input = EasyAnimateInput
    public typealias State = EasyAnimateState
}

/// EasyAnimate block by block (First-Block Cache): ``EasyAnimateTransformer/runBlock(_:_:)``, the loop
/// body of ``EasyAnimateTransformer/runBlocks(_:)``, then ``EasyAnimateTransformer/finishBlocks(_:)``
/// (the output norms, outside the blocks as in diffusers).
extension EasyAnimateTransformer: BlockwiseDiffusionTransformer {
    /// `num_layers`.
    public func blockCount(_ state: EasyAnimateState) -> Int { depth }
}

extension EasyAnimateTransformer: MemoryBudgeted {}

// MARK: Harness

extension EasyAnimateFamily {
    /// Measured on the default model (28 steps, seed 0): the V5.1-12b preset computes 15, 10 and 7 of 28
    /// calls, coefficients calibrated on the uncached run 14, 10 and 6.
    public static let demoThresholds = [0.05, 0.08, 0.15]

    public static let benchmarkFileName = "easyanimate-bench.json"

    /// `Benchmarks/configs/easyanimate-bench.json`: 512 wide (8 heads of 64), 4 MMDiT blocks, time
    /// embedding 256; latent 16×4×32×32 with 2×2 patches = 1024 video tokens, 128 text tokens, batch 1.
    public static var benchmarkDefault: BenchmarkShape<EasyAnimateConfiguration> {
        var c = EasyAnimateConfiguration()
        c.numAttentionHeads = 8
        c.attentionHeadDim = 64
        c.inChannels = 16
        c.outChannels = 16
        c.patchSize = 2
        c.numLayers = 4
        c.mmditLayers = 4
        c.timeEmbedDim = 256
        c.textEmbedDim = 512
        return BenchmarkShape(configuration: c, inputs: BenchmarkInputs(
            ["batch": 1, "latent_frames": 4, "latent_height": 32, "latent_width": 32, "text_tokens": 128]))
    }

    /// `batch`, `latent_frames`, `latent_height`, `latent_width` (multiples of `patch_size`) and
    /// `text_tokens` (and `t5_tokens`, default 0, for configurations with `text_embed_dim_t5`). The
    /// channels beyond `out_channels` that `in_channels` asks for are filled with random inpainting latents.
    public static func randomInputs(_ c: EasyAnimateConfiguration, sizes: BenchmarkInputs, seed: UInt64) throws -> SamplingInputs<EasyAnimateInput> {
        let b = try sizes.positive("batch")
        let t5 = c.textEmbedDimT5 == nil ? 0 : (sizes.values["t5_tokens"] == nil ? 0 : try sizes.positive("t5_tokens"))
        let x = try randomInputs(configuration: c, batch: b, frames: sizes.positive("latent_frames"),
                                 height: sizes.positive("latent_height"), width: sizes.positive("latent_width"),
                                 textTokens: sizes.positive("text_tokens"), t5Tokens: t5, seed: seed)
        return SamplingInputs(cond: x, batch: b)
    }

    public static func cost(_ c: EasyAnimateConfiguration, sizes: BenchmarkInputs) throws -> ForwardCost {
        let b = try sizes.positive("batch"), f = try sizes.positive("latent_frames")
        let h = try sizes.positive("latent_height"), w = try sizes.positive("latent_width")
        let l = try sizes.positive("text_tokens")
        let l5 = c.textEmbedDimT5 == nil ? 0 : (sizes.values["t5_tokens"] == nil ? 0 : try sizes.positive("t5_tokens"))
        // Bounded before the estimates multiply them further.
        try SizeLimits.checkInputElements("hidden_states", [b, c.patchInChannels, f, h, w])
        try SizeLimits.checkInputElements("encoder_hidden_states", [b, l + l5, max(c.textEmbedDim, c.innerDim)])
        let p = c.patch
        guard h % p == 0, w % p == 0 else {
            throw ModelLoadError.malformedConfig(reason: "latent \(h)×\(w) must be divisible by patch_size \(p)")
        }
        let s = f * (h / p) * (w / p)
        return ForwardCost(
            summary: "EasyAnimate \(c.innerDim)-wide, \(c.numLayers) blocks (\(min(c.mmditLayers, c.numLayers)) MMDiT), "
                + "\(s) video + \(l + l5) text tokens, batch \(b)",
            flops: c.forwardFLOPs(batch: b, videoTokens: s, textTokens: l + l5),
            activationBytes: c.activationBytesEstimate(batch: b, videoTokens: s, textTokens: l + l5))
    }

    /// Random inputs of an EasyAnimate pipeline shape: latent `[B, out_channels, F, H, W]`, inpainting
    /// latents for the remaining `in_channels − out_channels` channels (none for a T2V model),
    /// `textTokens` (and `t5Tokens`) text features, timestep 500 (sigma 0.5).
    ///
    /// - Throws: `malformedConfig` for sizes that are not multiples of the patch, or outside ``SizeLimits``,
    ///   or a configuration with fewer `in_channels` than `out_channels`.
    public static func randomInputs(
        configuration c: EasyAnimateConfiguration, batch b: Int, frames f: Int, height h: Int, width w: Int,
        textTokens l: Int, t5Tokens l5: Int = 0, seed: UInt64
    ) throws(ModelLoadError) -> EasyAnimateInput {
        for (field, v) in [("batch", b), ("latent_frames", f), ("latent_height", h), ("latent_width", w),
                           ("text_tokens", l)] {
            try SizeLimits.checkInput(field, v)
        }
        try SizeLimits.checkInputElements("hidden_states", [b, c.patchInChannels, f, h, w])
        try SizeLimits.checkInputElements("encoder_hidden_states", [b, l + l5, max(c.textEmbedDim, c.textEmbedDimT5 ?? 0)])
        let p = c.patch
        guard h % p == 0, w % p == 0 else {
            throw .malformedConfig(reason: "latent \(h)×\(w) must be divisible by patch_size \(p)")
        }
        let extra = c.patchInChannels - c.latentOutChannels
        guard extra >= 0 else {
            throw .malformedConfig(reason: "in_channels \(c.patchInChannels) is below out_channels \(c.latentOutChannels): "
                                   + "the latent alone has out_channels channels")
        }
        var g = SeededGenerator(seed: seed)
        do {
            let latent = try Tensor.randomNormal(shape: [b, c.latentOutChannels, f, h, w], using: &g)
            let text = try Tensor.randomNormal(shape: [b, l, c.textEmbedDim], using: &g)
            let t5: Tensor? = try c.textEmbedDimT5.flatMap { width throws(TensorError) in
                l5 > 0 ? try Tensor.randomNormal(shape: [b, l5, width], using: &g) : nil
            }
            let inpaint: Tensor? = extra > 0 ? try Tensor.randomNormal(shape: [b, extra, f, h, w], using: &g) : nil
            return EasyAnimateInput(hiddenStates: latent, timestep: try Tensor(shape: [b], repeating: 500),
                                    encoderHiddenStates: text, encoderHiddenStatesT5: t5, inpaintLatents: inpaint)
        } catch {
            throw .tensor(error)
        }
    }

    // MARK: Fixtures

    public static func forwardInput(_ a: FixtureArguments, configuration: EasyAnimateConfiguration) throws -> EasyAnimateInput {
        try inputs(hiddenStates: a.tensor("hidden_states"), timestep: a.tensor("timestep"), a)
    }

    public static func samplingInput(latent: Tensor, timestep: Float, conditioning a: FixtureArguments,
                                     configuration: EasyAnimateConfiguration) throws -> EasyAnimateInput {
        try inputs(hiddenStates: latent, timestep: a.timestep(timestep, batchOf: latent), a)
    }

    private static func inputs(hiddenStates: Tensor, timestep: Tensor, _ a: FixtureArguments) throws -> EasyAnimateInput {
        EasyAnimateInput(hiddenStates: hiddenStates, timestep: timestep,
                         encoderHiddenStates: try a.tensor("encoder_hidden_states"),
                         encoderHiddenStatesT5: a.optionalTensor("encoder_hidden_states_t5"),
                         inpaintLatents: a.optionalTensor("inpaint_latents"),
                         controlLatents: a.optionalTensor("control_latents"))
    }
}
