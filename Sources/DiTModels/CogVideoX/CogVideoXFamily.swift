import Foundation
import TeaCache
import Tensors

// MARK: Model

/// CogVideoX (diffusers `CogVideoXTransformer3DModel`: 1.0 2B/5B/5B-I2V and 1.5 T2V/I2V) in the
/// registry: loading, sampling conventions (timestep = sigma·1000, the output taken as the velocity, one
/// call per step as in the fixtures), the CogVideoX presets, the benchmark shape and the
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
    /// CogVideoX1.5-5B first (the demo's default model is 1.5-shaped), then 1.5-5B-I2V, 2b, 5b and
    /// 5b-I2V (ConsisID's preset, with the 5b coefficients, is ``ConsisIDFamily``'s).
    public static var presets: [TeaCachePreset] {
        [.cogVideoX15_5B, .cogVideoX15_5BI2V, .cogVideoX2B, .cogVideoX5B, .cogVideoX5BI2V]
    }
}

/// The reference repository's CogVideoX (TeaCache4CogVideoX1.5) coefficients (the 5b list is also ConsisID's) (ali-vilab/TeaCache @ 7c10efc, copied character
/// for character from teacache-spec.md §2.2) and its published thresholds and speedups (§2.1, §3).
extension TeaCachePreset {
    static let cogVideoX5BCoefficients = [-1.53880483e+03, 8.43202495e+02, -1.34363087e+02, 7.97131516e+00, -5.23162339e-02]

    /// CogVideoX-2b. Default δ 0.2.
    public static let cogVideoX2B = TeaCachePreset(
        reference: "cogvideox_2b",
        [-3.10658903e+01, 2.54732368e+01, -5.92380459e+00, 1.75769064e+00, -3.61568434e-03],
        defaultThreshold: 0.2, modulatedInput: "emb = time_embedding(time_proj(t))",
        provenance: "TeaCache4CogVideoX1.5/teacache_sample_video.py, coefficients_dict['CogVideoX-2b']")

    /// CogVideoX-5b. Default δ 0.2.
    public static let cogVideoX5B = TeaCachePreset(
        reference: "cogvideox_5b", cogVideoX5BCoefficients, defaultThreshold: 0.2,
        modulatedInput: "emb = time_embedding(time_proj(t))",
        provenance: "TeaCache4CogVideoX1.5/teacache_sample_video.py, coefficients_dict['CogVideoX-5b']")

    /// CogVideoX-5b-I2V (same coefficients as 5b). Default δ 0.2.
    public static let cogVideoX5BI2V = TeaCachePreset(
        reference: "cogvideox_5b_i2v", cogVideoX5BCoefficients, defaultThreshold: 0.2,
        modulatedInput: "emb = time_embedding(time_proj(t))",
        provenance: "TeaCache4CogVideoX1.5/teacache_sample_video.py, coefficients_dict['CogVideoX-5b-I2V']")

    /// CogVideoX1.5-5B (text to video). Default δ 0.2.
    public static let cogVideoX15_5B = TeaCachePreset(
        reference: "cogvideox1.5_5b",
        [2.50210439e+02, -1.65061612e+02, 3.57804877e+01, -7.81551492e-01, 3.58559703e-02],
        defaultThreshold: 0.2, speedups: [(0.1, 1.3), (0.2, 1.8), (0.3, 2.1)],
        modulatedInput: "emb = time_embedding(time_proj(t))",
        provenance: "TeaCache4CogVideoX1.5/teacache_sample_video.py, coefficients_dict['CogVideoX1.5-5B']")

    /// CogVideoX1.5-5B-I2V. Default δ 0.2.
    public static let cogVideoX15_5BI2V = TeaCachePreset(
        reference: "cogvideox1.5_5b_i2v",
        [1.22842302e+02, -1.04088754e+02, 2.62981677e+01, -3.06009921e-01, 3.71213220e-02],
        defaultThreshold: 0.2, speedups: [(0.1, 1.5), (0.2, 2.2), (0.3, 2.7)],
        modulatedInput: "emb = time_embedding(time_proj(t)) + ofs_embedding(ofs_proj(ofs))",
        provenance: "TeaCache4CogVideoX1.5/teacache_sample_video.py, coefficients_dict['CogVideoX1.5-5B-I2V']")
}

// MARK: TeaCache adapter

/// CogVideoX's TeaCache state: two cached streams, the video and the text tokens (TeaCache4CogVideoX1.5
/// caches `previous_residual` and `previous_residual_encoder`); a skip adds both residuals.
extension CogVideoXState: BatchSelectableState {
    /// `[video tokens, text tokens]`. A new value holds exactly two tensors (a precondition;
    /// `CachedTransformer` only assigns arrays of the count it read).
    public var streams: [Tensor] {
        get { [video, text] }
        set {
            precondition(newValue.count == 2, "CogVideoX's state has two streams (video, text tokens), got \(newValue.count)")
            video = newValue[0]
            text = newValue[1]
        }
    }

    /// The batch size.
    public var batchSize: Int { video.shape[0] }

    /// The state of the batch elements `indices` (tokens and embeddings; the rotary tables are shared).
    public func selecting(batch indices: [Int]) throws -> CogVideoXState {
        var s = self
        s.video = try video.gatheringRows(indices)
        s.text = try text.gatheringRows(indices)
        s.emb = try emb.gatheringRows(indices)
        s.latentShape[0] = indices.count
        return s
    }
}

/// ``CogVideoXTransformer`` as a TeaCache ``DiffusionTransformer``.
///
/// - modulated input: the time embedding `emb` `[B, time_embed_dim]`, plus the ofs embedding when the
///   model has one (TeaCache4CogVideoX1.5's `emb`); it depends only on the timestep (and ofs).
/// - streams: `[video tokens, text tokens]` after the patch embedding; each residual is its stream after
///   the last block minus before the first. `norm_final`, `norm_out` and `proj_out` run on every call.
/// - counter: the standard one (first and last step computed).
extension CogVideoXTransformer: DiffusionTransformer {
    public typealias Input = CogVideoXInput
    public typealias State = CogVideoXState

    /// `emb` `[B, time_embed_dim]`.
    public func modulatedInput(_ state: CogVideoXState) throws -> Tensor { state.emb }
}

/// CogVideoX block by block (First-Block Cache): each block joins the two streams, runs on the joint
/// sequence and splits it again, so the streams read `[video, text]` after every block, as diffusers'
/// block hooks see `(hidden_states, encoder_hidden_states)`. `norm_final` lies outside the blocks, as in
/// diffusers, so ``finishBlocks(_:)`` does nothing.
extension CogVideoXTransformer: BlockwiseDiffusionTransformer {
    /// `num_layers` (the same for every state).
    public func blockCount(_ state: CogVideoXState) -> Int { blocks.count }
}

extension CogVideoXTransformer: MemoryBudgeted {}

// MARK: Harness

extension CogVideoXFamily {
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
        let base = try randomInput(
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

    /// Random inputs of a CogVideoX pipeline shape: latent `[B, F, in_channels, H, W]`, `textTokens` text
    /// features, timestep 500 (sigma 0.5) and, for an ofs model, ofs 2.0 as the I2V pipelines pass it.
    ///
    /// - Throws: `malformedConfig` for sizes outside ``SizeLimits``, not divisible by the patch sizes, or a
    ///   text length other than `max_text_seq_length` for a model with a positional table.
    private static func randomInput(
        configuration c: CogVideoXConfiguration, batch b: Int, frames f: Int, height h: Int, width w: Int,
        textTokens l: Int, seed: UInt64
    ) throws(ModelLoadError) -> CogVideoXInput {
        for (field, v) in [("batch", b), ("latent_frames", f), ("latent_height", h), ("latent_width", w),
                           ("text_tokens", l)] {
            try SizeLimits.checkInput(field, v)
        }
        try SizeLimits.checkInputElements("hidden_states", [b, f, c.inChannels, h, w])
        try SizeLimits.checkInputElements("encoder_hidden_states", [b, l, c.textEmbedDim])
        _ = try c.videoTokens(frames: f, height: h, width: w)
        if c.usesPositionalTable, l != c.maxTextSeqLength {
            throw .malformedConfig(reason: "text_tokens = \(l): this model's positional table needs max_text_seq_length = \(c.maxTextSeqLength)")
        }
        var g = SeededGenerator(seed: seed)
        do {
            return CogVideoXInput(hiddenStates: try .randomNormal(shape: [b, f, c.inChannels, h, w], using: &g),
                                  encoderHiddenStates: try .randomNormal(shape: [b, l, c.textEmbedDim], using: &g),
                                  timestep: try Tensor(shape: [b], repeating: 500),
                                  ofs: c.ofsEmbedDim == nil ? nil : try Tensor(shape: [b], repeating: 2))
        } catch {
            throw .tensor(error)
        }
    }
}
