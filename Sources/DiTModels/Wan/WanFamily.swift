import Foundation
import TeaCache
import Tensors

/// Wan2.1 (diffusers `WanTransformer3DModel`; T2V, I2V, FLF2V) in the registry: loading (with diffusers'
/// ignored `norm_added_q` tensors), sampling conventions (timestep = sigma·1000, CFG 5 in the demo),
/// presets, the benchmark shape and the fixture plug-in.
///
/// Fixture arguments are diffusers' forward arguments: `hidden_states`, `timestep`,
/// `encoder_hidden_states` and, for image-to-video folders, `encoder_hidden_states_image`. The forward
/// check compares both modulated inputs (`teacache.modulated_input` = `timestep_proj`,
/// `teacache.modulated_input_temb` = `temb`). Each sampling record runs with the mode it names
/// (`use_ret_steps` → ``WanTeaCacheMode/retention``) and its counter rule expressed per CFG branch.
public enum WanFamily: DiTFamilyHarness {
    public typealias Configuration = WanConfiguration
    public typealias Model = WanTransformer

    public static let name = "wan21"
    public static let summary = "Wan2.1-shaped video DiT (WanTransformer3DModel), timestep = sigma·1000, CFG 5"

    public static var weightRules: WeightRules { WeightRules(ignoredPatterns: WanTransformer.ignoredWeightPatterns) }

    public static func makeModel(_ configuration: WanConfiguration, weights: WeightScope) throws(ModelLoadError) -> WanTransformer {
        WanTransformer(configuration: configuration, weights: weights)
    }

    /// The §6 taper of `condition_embedder.time_embedder.linear_1.weight`, `u = 1000 / steps`.
    public static func randomWeightAdjustment(_ c: WanConfiguration, steps: Int) -> WeightAdjustment? {
        let frequencies = sinusoidalColumnFrequencies(dim: c.freqDim, downscaleFreqShift: 0)
        let u = 1000 / Double(steps)
        return { name, tensor in
            if name == "condition_embedder.time_embedder.linear_1.weight" {
                taperTimestepColumns(&tensor, frequencies: frequencies, stepSize: u)
            }
        }
    }

    // MARK: Sampling conventions and presets

    public static let timestepConvention = TimestepConvention.sigmaTimes1000
    /// The CFG scale of the fixtures' Wan loop.
    public static let guidanceScale: Float? = 5
    /// Every Wan2.1 preset; the demo compares with the T2V 1.3B one (standard mode, the demo's mode).
    public static var presets: [TeaCachePreset] { TeaCachePreset.wan21 }
    public static var defaultPreset: TeaCachePreset { .wan21T2V1_3B }
    public static let demoThresholds = [0.1, 0.2, 0.4]

    // MARK: Benchmark shape

    public static let benchmarkFileName = "wan-bench.json"

    /// `Benchmarks/configs/wan-bench.json`: 512 wide, 4 blocks; latent 16×4×32×32 with 1×2×2 patches =
    /// 1024 video tokens, 128 text tokens, batch 1.
    public static var benchmarkDefault: BenchmarkShape<WanConfiguration> {
        BenchmarkShape(
            configuration: WanConfiguration(
                patchSize: [1, 2, 2], numAttentionHeads: 8, attentionHeadDim: 64, inChannels: 16, outChannels: 16,
                textDim: 512, freqDim: 256, ffnDim: 2048, numLayers: 4, crossAttnNorm: true,
                qkNorm: "rms_norm_across_heads", eps: 1e-6, imageDim: nil, addedKVProjDim: nil, ropeMaxSeqLen: 1024),
            inputs: BenchmarkInputs(["batch": 1, "latent_frames": 4, "latent_height": 32, "latent_width": 32,
                                     "text_tokens": 128]))
    }

    /// The number of image tokens of an image-conditioned configuration: fixed by `pos_embed_seq_len`,
    /// else the `image_tokens` size (default 257, CLIP ViT-H); 0 for text-to-video.
    static func imageTokens(_ c: WanConfiguration, _ sizes: BenchmarkInputs) throws -> Int {
        guard c.imageDim != nil else { return 0 }
        return try c.posEmbedSeqLen ?? sizes.positive("image_tokens", default: 257)
    }

    /// `batch`, `latent_frames`, `latent_height`, `latent_width`, `text_tokens` (and `image_tokens` for
    /// image-conditioned configurations); the `.uncond` branch gets another text embedding.
    public static func randomInputs(_ c: WanConfiguration, sizes: BenchmarkInputs, seed: UInt64) throws -> SamplingInputs<WanInput> {
        let b = try sizes.positive("batch")
        let n = try imageTokens(c, sizes)
        func inputs(_ s: UInt64) throws -> WanInput {
            try WanTransformer.randomInputs(
                configuration: c, batch: b, frames: sizes.positive("latent_frames"), height: sizes.positive("latent_height"),
                width: sizes.positive("latent_width"), textTokens: sizes.positive("text_tokens"), imageTokens: n, seed: s)
        }
        let cond = try inputs(seed)
        let uncond = try inputs(seed &+ 0x5EED)  // a different "negative prompt" embedding
        return SamplingInputs(cond: cond, uncond: uncond, batch: b)
    }

    public static func cost(_ c: WanConfiguration, sizes: BenchmarkInputs) throws -> ForwardCost {
        let b = try sizes.positive("batch"), f = try sizes.positive("latent_frames")
        let h = try sizes.positive("latent_height"), w = try sizes.positive("latent_width")
        let l = try sizes.positive("text_tokens")
        let n = try imageTokens(c, sizes)
        // Bounded before the estimates multiply them further.
        try SizeLimits.checkInputElements("hidden_states", [b, c.inChannels, f, h, w])
        try SizeLimits.checkInputElements("encoder_hidden_states", [b, l + n, max(c.textDim, c.innerDim)])
        let p = c.patch
        guard f % p.t == 0, h % p.h == 0, w % p.w == 0 else {
            throw ModelLoadError.malformedConfig(reason: "latent \(f)×\(h)×\(w) must be divisible by patch_size \(c.patchSize)")
        }
        let s = (f / p.t) * (h / p.h) * (w / p.w)
        let image = n > 0 ? " + \(n) image" : ""
        return ForwardCost(
            summary: "Wan \(c.innerDim)-wide, \(c.numLayers) blocks, \(s) video + \(l) text\(image) tokens, batch \(b)",
            flops: c.forwardFLOPs(batch: b, videoTokens: s, textTokens: l, imageTokens: n),
            activationBytes: c.activationBytesEstimate(batch: b, videoTokens: s, textTokens: l, imageTokens: n))
    }

    // MARK: Fixtures

    public static func forwardInput(_ a: FixtureArguments, configuration: WanConfiguration) throws -> WanInput {
        WanInput(hiddenStates: try a.tensor("hidden_states"), timestep: try a.tensor("timestep"),
                 encoderHiddenStates: try a.tensor("encoder_hidden_states"),
                 encoderHiddenStatesImage: a.optionalTensor("encoder_hidden_states_image"))
    }

    public static func samplingInput(latent: Tensor, timestep: Float, conditioning a: FixtureArguments,
                                     configuration: WanConfiguration) throws -> WanInput {
        WanInput(hiddenStates: latent, timestep: try a.timestep(timestep, batchOf: latent),
                 encoderHiddenStates: try a.tensor("encoder_hidden_states"),
                 encoderHiddenStatesImage: a.optionalTensor("encoder_hidden_states_image"))
    }

    /// `output`, both modulated inputs and the video-token residual.
    public static func forwardResults(model: WanTransformer, input: WanInput) throws -> [String: Tensor] {
        var state = try model.prepare(input)
        let before = state.tokens
        var results = [
            "teacache.modulated_input": state.blocks.timestepProjection,
            "teacache.modulated_input_temb": state.temb,
        ]
        try model.runBlocks(&state)
        results["teacache.residual"] = try state.tokens - before
        results["output"] = try model.outputHead(state)
        return results
    }

    /// The record's mode: `use_ret_steps` in `teacache_state` (or the record name) selects retention.
    public static func mode(of record: SamplingRecord) throws -> WanTeaCacheMode {
        if let flag = record.teacacheState["use_ret_steps"]?.bool { return flag ? .retention : .standard }
        switch record.name {
        case "use_ret_steps": return .retention
        case "no_ret_steps": return .standard
        default: throw VerifyError.unsupported("record \(record.name): cannot tell whether it uses retention steps")
        }
    }

    public static func model(_ model: WanTransformer, for record: SamplingRecord) throws -> WanTransformer {
        model.withTeaCacheMode(try mode(of: record))
    }

    /// The record's counter (`wan21`: period 2N, `ret_steps`, `cutoff_steps`) as a per-branch schedule
    /// (``WanTeaCacheMode/schedule(retSteps:cutoffSteps:steps:)``).
    public static func teaCacheConfiguration(record: SamplingRecord, steps n: Int) throws -> TeaCacheConfiguration {
        guard record.counterKind == "wan21" else {
            throw VerifyError.unsupported("record \(record.name): counter kind \(record.counterKind ?? "none") is not wan21")
        }
        let state = record.teacacheState
        guard let period = state["counter_period"]?.integer, period == 2 * n,
              let ret = state["ret_steps"]?.integer, let cutoff = state["cutoff_steps"]?.integer else {
            throw VerifyError.unsupported("record \(record.name): wan21 counter needs period 2N = \(2 * n), "
                                          + "ret_steps and cutoff_steps, got \(state)")
        }
        let schedule = try mode(of: record).schedule(retSteps: ret, cutoffSteps: cutoff, steps: n)
        return try .faithful(coefficients: record.coefficients, threshold: record.threshold, schedule: schedule)
    }
}
