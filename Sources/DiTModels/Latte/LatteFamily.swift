import Foundation
import TeaCache
import Tensors

// MARK: Model

/// Latte-1 (diffusers `LatteTransformer3DModel`, text-to-video) in the registry: loading, sampling
/// conventions (timestep = sigma·1000, velocity = the first `in_channels` output channels when the model
/// learns sigma, no CFG in the demo), the reference's eval/teacache Latte preset, the benchmark shape and
/// the fixture plug-in.
///
/// Fixture arguments are diffusers' forward arguments: `hidden_states`, `timestep`, `encoder_hidden_states`
/// and `enable_temporal_attentions` (from `non_tensor_args`; default true). The TeaCache records use
/// Latte's timestep rule (``teaCacheConfiguration(record:steps:)``).
public enum LatteFamily: DiTFamilyHarness {
    public typealias Configuration = LatteConfiguration
    public typealias Model = LatteTransformer

    public static let name = "latte"
    public static let summary = "Latte-1 video DiT (LatteTransformer3DModel), timestep = sigma·1000, velocity = first C of 2C channels"

    public static func makeModel(_ configuration: LatteConfiguration, weights: WeightScope) throws(ModelLoadError) -> LatteTransformer {
        try LatteTransformer(configuration: configuration, weights: weights)
    }

    /// The §6 taper of `adaln_single.emb.timestep_embedder.linear_1.weight`, `u = 1000 / steps`.
    public static func randomWeightAdjustment(_ configuration: LatteConfiguration, steps: Int) -> WeightAdjustment? {
        let frequencies = sinusoidalColumnFrequencies(dim: AdaLayerNormSingle.frequencyChannels, downscaleFreqShift: 0)
        let u = 1000 / Double(steps)
        return { name, tensor in
            if name == "adaln_single.emb.timestep_embedder.linear_1.weight" {
                taperTimestepColumns(&tensor, frequencies: frequencies, stepSize: u)
            }
        }
    }

    // MARK: Sampling conventions and presets

    public static let timestepConvention = TimestepConvention.sigmaTimes1000

    /// `v = out[:, :in_channels]` when the model learns sigma (`out_channels = 2·in_channels`, Latte-1:
    /// `LattePipeline` keeps the first half of the channels), else `v = out`.
    public static func velocity(_ c: LatteConfiguration) -> VelocityConvention {
        c.outChannels == 2 * c.latentChannels ? VelocityConvention(channels: .first(count: c.latentChannels, axis: 1)) : .identity
    }

    public static var presets: [TeaCachePreset] { [.latte] }
}

/// The reference repository's Latte-1 coefficients (ali-vilab/TeaCache @ 7c10efc, copied character for
/// character from teacache-spec.md §2.2).
extension TeaCachePreset {
    /// Latte-1 through VideoSys (eval/teacache). Default δ 0.1 (the script's "slow" run; its "fast" run
    /// uses 0.2); the repository states no speedups. First and last step computed (the reference compares
    /// the timestep with the first and last of the scheduler's, which for a sampler's distinct timesteps
    /// are the first and the last step).
    public static let latte = TeaCachePreset(
        reference: "latte", [-2.46434137e+03, 3.08044764e+02, 8.07447667e+01, -4.11385132e+00, 1.11001402e-01],
        defaultThreshold: 0.1,
        modulatedInput: "transformer_blocks[0].norm1(h_in)·(1+scale_msa)+shift_msa with adaLN-single's "
            + "scale_shift_table + timestep_spatial, on the (B·F, tokens, D) patch tokens",
        provenance: "eval/teacache/experiments/latte.py (teacache_forward, line 180; eval_teacache_slow 0.1, fast 0.2)")
}

// MARK: TeaCache adapter

/// Latte's TeaCache state: the video tokens are the one cached stream (the caption enters through
/// cross-attention and is recomputed on every call).
extension LatteState: BatchSelectableState {
    /// `[video tokens]` `[B, F·T, D]`. The state has exactly one stream: `CachedTransformer` only assigns
    /// arrays of the count and shapes it read.
    public var streams: [Tensor] {
        get { [tokens] }
        set { tokens = newValue.soleStream(of: "Latte") }
    }

    /// The batch size.
    public var batchSize: Int { tokens.shape[0] }

    /// The state of the batch elements `indices`.
    public func selecting(batch indices: [Int]) throws -> LatteState {
        var s = self
        s.tokens = try tokens.gatheringRows(indices)
        s.modulation = try modulation.gatheringRows(indices)
        s.embeddedTimestep = try embeddedTimestep.gatheringRows(indices)
        s.caption = try caption.gatheringRows(indices)
        return s
    }
}

/// ``LatteTransformer`` as a TeaCache ``DiffusionTransformer`` (the reference's eval/teacache Latte rule):
///
/// - modulated input: spatial block 0's `norm1(h_in)·(1 + scale_msa) + shift_msa`;
/// - streams: `[video tokens]`; residual = tokens after the last spatial/temporal pair (the temporal
///   position table added before the first temporal block included) minus h_in, the patch tokens with the
///   2-D sin-cos table; the output norm, its modulation, `proj_out` and unpatchify run on every call;
/// - forced steps: the first and the last (``LatteFamily/teaCacheConfiguration(record:steps:)``).
extension LatteTransformer: DiffusionTransformer {
    public typealias Input = LatteInput
    public typealias State = LatteState
}

/// Latte block by block (First-Block Cache): one spatial/temporal pair per block
/// (``LatteTransformer/runBlock(_:_:)``, the loop body of ``LatteTransformer/runBlocks(_:)``).
extension LatteTransformer: BlockwiseDiffusionTransformer {
    /// `num_layers`.
    public func blockCount(_ state: LatteState) -> Int { depth }
}

extension LatteTransformer: MemoryBudgeted {}

// MARK: Harness

extension LatteFamily {
    /// Measured on the default model (28 steps, seed 0): the preset computes 15 and 9 of 28 calls at 0.1 and 0.2.
    public static let demoThresholds = [0.1, 0.2, 0.3]

    public static let benchmarkFileName = "latte-bench.json"

    /// `Benchmarks/configs/latte-bench.json`: 512 wide, 2 spatial + 2 temporal blocks; latent 4×4×32×32 with
    /// 2×2 patches = 4 frames × 256 tokens, 128 caption tokens, batch 1.
    public static var benchmarkDefault: BenchmarkShape<LatteConfiguration> {
        BenchmarkShape(
            configuration: LatteConfiguration(
                numAttentionHeads: 8, attentionHeadDim: 64, inChannels: 4, outChannels: 8, numLayers: 2,
                crossAttentionDim: 512, attentionBias: true, sampleSize: 32, patchSize: 2, activationFn: "gelu-approximate",
                normElementwiseAffine: false, normEps: 1e-6, captionChannels: 512, videoLength: 4),
            inputs: BenchmarkInputs(["batch": 1, "latent_frames": 4, "latent_height": 32, "latent_width": 32,
                                     "text_tokens": 128]))
    }

    /// The sizes of a benchmark `inputs` table: batch, frames, latent height and width (multiples of the
    /// patch), caption tokens.
    private static func sizes(_ c: LatteConfiguration, _ s: BenchmarkInputs) throws -> (b: Int, f: Int, h: Int, w: Int, l: Int) {
        let (b, f, h, w, l) = (try s.positive("batch"), try s.positive("latent_frames"), try s.positive("latent_height"),
                               try s.positive("latent_width"), try s.positive("text_tokens"))
        try SizeLimits.checkInputElements("hidden_states", [b, c.latentChannels, f, h, w])
        try SizeLimits.checkInputElements("encoder_hidden_states", [b, l, max(c.captionWidth, c.innerDim)])
        guard h % c.patch == 0, w % c.patch == 0 else {
            throw ModelLoadError.malformedConfig(reason: "latent \(h)×\(w) must be divisible by patch_size \(c.patch)")
        }
        return (b, f, h, w, l)
    }

    /// `batch`, `latent_frames`, `latent_height`, `latent_width` and `text_tokens`; timestep 500.
    public static func randomInputs(_ c: LatteConfiguration, sizes s: BenchmarkInputs, seed: UInt64) throws -> SamplingInputs<LatteInput> {
        let (b, f, h, w, l) = try sizes(c, s)
        var g = SeededGenerator(seed: seed)
        let input = LatteInput(hiddenStates: try .randomNormal(shape: [b, c.latentChannels, f, h, w], using: &g),
                               timestep: try Tensor(shape: [b], repeating: 500),
                               encoderHiddenStates: try .randomNormal(shape: [b, l, c.captionWidth], using: &g))
        return SamplingInputs(cond: input, batch: b)
    }

    public static func cost(_ c: LatteConfiguration, sizes s: BenchmarkInputs) throws -> ForwardCost {
        let (b, f, h, w, l) = try sizes(c, s)
        let t = (h / c.patch) * (w / c.patch)
        return ForwardCost(
            summary: "Latte \(c.innerDim)-wide, \(c.numLayers) spatial + \(c.numLayers) temporal blocks, "
                + "\(f) frames × \(t) tokens + \(l) caption tokens, batch \(b)",
            flops: c.forwardFLOPs(batch: b, frames: f, tokensPerFrame: t, textTokens: l),
            activationBytes: c.activationBytesEstimate(batch: b, frames: f, tokensPerFrame: t, textTokens: l))
    }

    // MARK: Fixtures

    public static func forwardInput(_ a: FixtureArguments, configuration: LatteConfiguration) throws -> LatteInput {
        try inputs(hiddenStates: a.tensor("hidden_states"), timestep: a.tensor("timestep"), a)
    }

    public static func samplingInput(latent: Tensor, timestep: Float, conditioning a: FixtureArguments,
                                     configuration: LatteConfiguration) throws -> LatteInput {
        try inputs(hiddenStates: latent, timestep: a.timestep(timestep, batchOf: latent), a)
    }

    private static func inputs(hiddenStates: Tensor, timestep: Tensor, _ a: FixtureArguments) throws -> LatteInput {
        if a.optionalTensor("encoder_attention_mask") != nil {
            throw VerifyError.unsupported("encoder_attention_mask: diffusers 0.42.1's Latte cannot apply it to more than "
                                          + "one frame, and LattePipeline passes none")
        }
        var temporal = true
        if let flag = a.nonTensor["enable_temporal_attentions"] {
            guard let value = flag.bool else {
                throw VerifyError.malformedFixture(file: a.source, reason: "enable_temporal_attentions must be true or false")
            }
            temporal = value
        }
        return LatteInput(hiddenStates: hiddenStates, timestep: timestep, encoderHiddenStates: try a.tensor("encoder_hidden_states"),
                          enableTemporalAttentions: temporal)
    }

    /// `output`, and the modulated input and the residual in diffusers' spatial layout `[(B·F), T, D]`.
    public static func forwardResults(model: LatteTransformer, input: LatteInput) throws -> [String: Tensor] {
        var state = try model.prepare(input)
        let g = state.grid, b = state.tokens.shape[0], d = model.configuration.innerDim
        func spatialLayout(_ t: Tensor) throws -> Tensor { try t.reshaped([b * g.f, g.h * g.w, d]) }
        let before = state.tokens
        var results = ["teacache.modulated_input": try spatialLayout(model.modulatedInput(state))]
        try model.runBlocks(&state)
        results["teacache.residual"] = try spatialLayout(state.tokens - before)
        results["output"] = try model.outputHead(state)
        return results
    }

    /// Latte's rule (FORMAT.md §4, `kind` `latte`): no counter; a call is forced when its timestep equals
    /// the first or the last of the loop's timesteps. The sampler's timesteps are distinct, so that is the
    /// first and the last step: the standard schedule, one cache entry.
    public static func teaCacheConfiguration(record: SamplingRecord, steps: Int) throws -> TeaCacheConfiguration {
        guard record.counterKind == "latte" else {
            throw VerifyError.unsupported("record \(record.name): counter kind \(record.counterKind ?? "none") is not latte")
        }
        return try .faithful(coefficients: record.coefficients, threshold: record.threshold, schedule: .standard)
    }
}
