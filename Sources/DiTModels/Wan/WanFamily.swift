import Foundation
import TeaCache
import Tensors

// MARK: Model

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
}

extension WanTransformer {
    /// Stored tensors diffusers 0.42.1 ignores when loading a `WanTransformer3DModel` (its
    /// `_keys_to_ignore_on_load_unexpected`): no Wan layer has them, and old checkpoints carry them.
    /// Declared once in ``WanFamily/weightRules``, so every way of loading drops them alike.
    public static let ignoredWeightPatterns = ["norm_added_q"]
}

/// The reference repository's Wan2.1 coefficients (ali-vilab/TeaCache @ 7c10efc, TeaCache4Wan2.1,
/// copied character for character from teacache-spec.md §2.2), with the published thresholds and speedups.
extension TeaCachePreset {
    static let wanSpeedups: [(threshold: Double, speedup: Double)] = [(0.1, 2.0), (0.2, 3.0)]
    static let wanSpeedupNote = "; speedups from the script's --teacache_thresh help (all Wan models)"
    static let wanRetNote = "; speedups = baseline / TeaCache latency of the README use_ret_steps table"

    /// Every Wan2.1 preset (standard mode, then retention mode).
    public static var wan21: [TeaCachePreset] {
        [wan21T2V1_3B, wan21T2V14B, wan21I2V480P, wan21I2V720P,
         wan21T2V1_3BRet, wan21T2V14BRet, wan21I2V480PRet, wan21I2V720PRet]
    }

    /// Wan2.1 T2V 1.3B, modulated input `e` (temb). Default δ 0.2.
    public static let wan21T2V1_3B = TeaCachePreset(
        reference: "wan2.1_t2v_1.3b",
        [2.39676752e+03, -1.31110545e+03, 2.01331979e+02, -8.29855975e+00, 1.37887774e-01],
        defaultThreshold: 0.2, speedups: wanSpeedups, modulatedInput: "e = time_embedding(sinusoidal(t)) (temb)",
        provenance: "TeaCache4Wan2.1/teacache_generate.py ('1.3B')" + wanSpeedupNote,
        schedule: WanTeaCacheMode.standard.schedule)

    /// Wan2.1 T2V 14B, modulated input `e`. Default δ 0.2.
    public static let wan21T2V14B = TeaCachePreset(
        reference: "wan2.1_t2v_14b",
        [-5784.54975374, 5449.50911966, -1811.16591783, 256.27178429, -13.02252404],
        defaultThreshold: 0.2, speedups: wanSpeedups, modulatedInput: "e = time_embedding(sinusoidal(t)) (temb)",
        provenance: "TeaCache4Wan2.1/teacache_generate.py ('14B')" + wanSpeedupNote,
        schedule: WanTeaCacheMode.standard.schedule)

    /// Wan2.1 I2V 480P, modulated input `e`. Default δ 0.2.
    public static let wan21I2V480P = TeaCachePreset(
        reference: "wan2.1_i2v_480p",
        [-3.02331670e+02, 2.23948934e+02, -5.25463970e+01, 5.87348440e+00, -2.01973289e-01],
        defaultThreshold: 0.2, speedups: wanSpeedups, modulatedInput: "e = time_embedding(sinusoidal(t)) (temb)",
        provenance: "TeaCache4Wan2.1/teacache_generate.py ('480P')" + wanSpeedupNote,
        schedule: WanTeaCacheMode.standard.schedule)

    /// Wan2.1 I2V 720P, modulated input `e`. Default δ 0.2.
    public static let wan21I2V720P = TeaCachePreset(
        reference: "wan2.1_i2v_720p",
        [-114.36346466, 65.26524496, -18.82220707, 4.91518089, -0.23412683],
        defaultThreshold: 0.2, speedups: wanSpeedups, modulatedInput: "e = time_embedding(sinusoidal(t)) (temb)",
        provenance: "TeaCache4Wan2.1/teacache_generate.py ('720P')" + wanSpeedupNote,
        schedule: WanTeaCacheMode.standard.schedule)

    /// Wan2.1 T2V 1.3B with retention steps, modulated input `e0` (timestep_proj). Default δ 0.2.
    public static let wan21T2V1_3BRet = TeaCachePreset(
        reference: "wan2.1_t2v_1.3b_ret",
        [-5.21862437e+04, 9.23041404e+03, -5.28275948e+02, 1.36987616e+01, -4.99875664e-02],
        defaultThreshold: 0.2, speedups: [(0.05, 1.59), (0.10, 2.37)],
        modulatedInput: "e0 = time_projection(e) unflattened to [B, 6, dim] (timestep_proj)",
        provenance: "TeaCache4Wan2.1/teacache_generate.py ('1.3B', --use_ret_steps)" + wanRetNote,
        schedule: WanTeaCacheMode.retention.schedule)

    /// Wan2.1 T2V 14B with retention steps, modulated input `e0`. Default δ 0.2.
    public static let wan21T2V14BRet = TeaCachePreset(
        reference: "wan2.1_t2v_14b_ret",
        [-3.03318725e+05, 4.90537029e+04, -2.65530556e+03, 5.87365115e+01, -3.15583525e-01],
        defaultThreshold: 0.2, speedups: [(0.10, 2.0), (0.20, 3.16)],
        modulatedInput: "e0 = time_projection(e) unflattened to [B, 6, dim] (timestep_proj)",
        provenance: "TeaCache4Wan2.1/teacache_generate.py ('14B', --use_ret_steps)" + wanRetNote,
        schedule: WanTeaCacheMode.retention.schedule)

    /// Wan2.1 I2V 480P with retention steps, modulated input `e0`. Default δ 0.2.
    public static let wan21I2V480PRet = TeaCachePreset(
        reference: "wan2.1_i2v_480p_ret",
        [2.57151496e+05, -3.54229917e+04, 1.40286849e+03, -1.35890334e+01, 1.32517977e-01],
        defaultThreshold: 0.2, speedups: [(0.20, 1.82), (0.30, 2.35)],
        modulatedInput: "e0 = time_projection(e) unflattened to [B, 6, dim] (timestep_proj)",
        provenance: "TeaCache4Wan2.1/teacache_generate.py ('480P', --use_ret_steps)" + wanRetNote,
        schedule: WanTeaCacheMode.retention.schedule)

    /// Wan2.1 I2V 720P with retention steps, modulated input `e0`. Default δ 0.2.
    public static let wan21I2V720PRet = TeaCachePreset(
        reference: "wan2.1_i2v_720p_ret",
        [8.10705460e+03, 2.13393892e+03, -3.72934672e+02, 1.66203073e+01, -4.17769401e-02],
        defaultThreshold: 0.2, speedups: [(0.20, 2.1), (0.30, 2.66)],
        modulatedInput: "e0 = time_projection(e) unflattened to [B, 6, dim] (timestep_proj)",
        provenance: "TeaCache4Wan2.1/teacache_generate.py ('720P', --use_ret_steps)" + wanRetNote,
        schedule: WanTeaCacheMode.retention.schedule)
}

// MARK: TeaCache adapter

/// Which tensor TeaCache4Wan2.1 compares between calls, and which steps it always computes.
public enum WanTeaCacheMode: String, Sendable, Codable, CaseIterable {
    /// The script's default: compares `temb` (the original's `e`, `[B, D]`); the first and the last
    /// step of each branch are computed (`ret_steps = 2`, `cutoff_steps = 2N − 2` over 2N calls).
    case standard
    /// `--use_ret_steps`: compares `timestep_proj` (the original's `e0`, `[B, 6, D]`); the first 5 steps
    /// of each branch are computed, the last step is **not** forced (`ret_steps = 10`, `cutoff_steps = 2N`).
    case retention

    /// The forced-compute rule of this mode, in per-branch steps. The reference keys one counter over
    /// all 2N calls (cond even, uncond odd) and forces `counter < ret_steps` or `counter >= cutoff_steps`;
    /// per branch that is steps `< ret_steps / 2` and `>= cutoff_steps / 2` (``schedule(retSteps:cutoffSteps:steps:)``).
    public var schedule: TeaCacheSchedule {
        switch self {
        case .standard: return TeaCacheSchedule(retainFirstSteps: 1, forceLastStep: true)
        case .retention: return TeaCacheSchedule(retainFirstSteps: 5, forceLastStep: false)
        }
    }

    /// The script's `ret_steps` and `cutoff_steps` over 2N calls: 2 and 2N − 2 (standard), 10 and 2N
    /// (retention).
    public func referenceCounterBounds(steps n: Int) -> (retSteps: Int, cutoffSteps: Int) {
        self == .retention ? (10, 2 * n) : (2, 2 * n - 2)
    }

    /// The per-branch schedule of the reference's rule with any `ret_steps` and `cutoff_steps` over 2N
    /// calls (both even): this mode's ``schedule`` for the script's values, the same rule otherwise.
    /// - Throws: `CacheError/invalidSchedule(_:)` for odd bounds (cond and uncond calls alternate).
    public func schedule(retSteps: Int, cutoffSteps: Int, steps n: Int) throws(CacheError) -> TeaCacheSchedule {
        guard retSteps % 2 == 0, cutoffSteps % 2 == 0, retSteps >= 0, cutoffSteps >= 0 else {
            throw .invalidSchedule("ret_steps \(retSteps) and cutoff_steps \(cutoffSteps) must be even and >= 0 "
                                   + "(cond and uncond calls alternate on one counter)")
        }
        let script = referenceCounterBounds(steps: n)
        if (retSteps, cutoffSteps) == (script.retSteps, script.cutoffSteps) { return schedule }
        return TeaCacheSchedule(retainFirstSteps: retSteps / 2, forceLastStep: false, cutoffStep: cutoffSteps / 2)
    }
}

/// The Wan2.1 checkpoints TeaCache4Wan2.1 has coefficients for (chosen there by a substring of
/// `--ckpt_dir`).
public enum WanVariant: String, Sendable, Codable, CaseIterable {
    /// Text-to-video, 1.3B parameters.
    case t2v1_3B = "t2v-1.3B"
    /// Text-to-video, 14B parameters.
    case t2v14B = "t2v-14B"
    /// Image-to-video at 480P.
    case i2v480P = "i2v-480P"
    /// Image-to-video at 720P.
    case i2v720P = "i2v-720P"
}

extension WanState: BatchSelectableState {
    /// `[video tokens]`: the only stream TeaCache caches for Wan (text and image features enter through
    /// cross-attention and are recomputed on every call). The state has exactly one stream:
    /// `CachedTransformer` only assigns arrays of the count and shapes it read.
    public var streams: [Tensor] {
        get { [tokens] }
        set { tokens = newValue.soleStream(of: "Wan") }
    }

    /// The batch size.
    public var batchSize: Int { tokens.shape[0] }

    /// The state of the batch elements `indices` (rotary tables are shared).
    public func selecting(batch indices: [Int]) throws -> WanState {
        var s = self
        s.tokens = try tokens.gatheringRows(indices)
        s.temb = try temb.gatheringRows(indices)
        s.blocks.timestepProjection = try blocks.timestepProjection.gatheringRows(indices)
        s.blocks.context = try blocks.context.gatheringRows(indices)
        s.blocks.image = try blocks.image.map { t throws(TensorError) in try t.gatheringRows(indices) }
        return s
    }
}

/// ``WanTransformer`` as a TeaCache ``DiffusionTransformer``.
///
/// - streams: `[video tokens after the patch embedding]`; residual = tokens after the last block minus
///   tokens after the patch embedding (before the output norm), as TeaCache4Wan2.1 caches `x − ori_x`.
/// - modulated input: `temb` in ``WanTeaCacheMode/standard`` mode, `timestep_proj` `[B, 6, D]` in
///   ``WanTeaCacheMode/retention`` mode (``WanTransformer/teaCacheMode``). Both depend only on the timestep.
/// - CFG: the reference keys its two states on the parity of a shared call counter (cond = even,
///   uncond = odd). Here each branch is a ``BranchKey`` of ``CachedTransformer`` (`.cond`, `.uncond`)
///   with its own previous input, accumulator, residual and step counter, which gives the same
///   decisions for the cond-then-uncond call order without depending on it.
extension WanTransformer: DiffusionTransformer {
    public typealias Input = WanInput
    public typealias State = WanState

    /// This model with another TeaCache mode.
    public func withTeaCacheMode(_ mode: WanTeaCacheMode) -> WanTransformer {
        var m = self
        m.teaCacheMode = mode
        return m
    }

    /// `temb` `[B, D]` (standard) or `timestep_proj` `[B, 6, D]` (retention).
    public func modulatedInput(_ state: WanState) throws -> Tensor {
        switch teaCacheMode {
        case .standard: return state.temb
        case .retention: return state.blocks.timestepProjection
        }
    }

    /// A TeaCache configuration for this model's mode: the variant's reference coefficients and the
    /// mode's schedule, at `threshold` (default: the preset's, 0.2).
    public func teaCacheConfiguration(variant: WanVariant, threshold: Double? = nil) throws(CacheError) -> TeaCacheConfiguration {
        try TeaCacheConfiguration.faithful(Self.preset(variant, teaCacheMode), threshold: threshold)
    }

    /// The reference coefficients of `variant` in `mode`.
    public static func preset(_ variant: WanVariant, _ mode: WanTeaCacheMode) -> TeaCachePreset {
        switch (variant, mode) {
        case (.t2v1_3B, .standard): return .wan21T2V1_3B
        case (.t2v14B, .standard): return .wan21T2V14B
        case (.i2v480P, .standard): return .wan21I2V480P
        case (.i2v720P, .standard): return .wan21I2V720P
        case (.t2v1_3B, .retention): return .wan21T2V1_3BRet
        case (.t2v14B, .retention): return .wan21T2V14BRet
        case (.i2v480P, .retention): return .wan21I2V480PRet
        case (.i2v720P, .retention): return .wan21I2V720PRet
        }
    }
}

/// Wan block by block (First-Block Cache): ``WanTransformer/runBlock(_:_:)``, the loop body of
/// ``WanTransformer/runBlocks(_:)``.
extension WanTransformer: BlockwiseDiffusionTransformer {
    /// `num_layers`.
    public func blockCount(_ state: WanState) -> Int { depth }
}

extension WanTransformer: MemoryBudgeted {}

// MARK: Harness

extension WanFamily {
    public static let demoThresholds = [0.1, 0.2, 0.4]

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
            try randomInputs(
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

    /// Random inputs of a Wan pipeline shape: latent `[B, in_channels, F, H, W]`, `textTokens` text
    /// features, timestep 500 (sigma 0.5), and for image-conditioned configurations `imageTokens` image
    /// features (two images per sample with `pos_embed_seq_len`).
    public static func randomInputs(
        configuration c: WanConfiguration, batch b: Int, frames f: Int, height h: Int, width w: Int,
        textTokens l: Int, imageTokens n: Int, seed: UInt64
    ) throws(ModelLoadError) -> WanInput {
        for (field, v) in [("batch", b), ("latent_frames", f), ("latent_height", h), ("latent_width", w),
                           ("text_tokens", l), ("image_tokens", c.imageDim == nil ? 1 : n)] {
            try SizeLimits.checkInput(field, v)
        }
        try SizeLimits.checkInputElements("hidden_states", [b, c.inChannels, f, h, w])
        try SizeLimits.checkInputElements("encoder_hidden_states", [b, l, c.textDim])
        if let e = c.imageDim { try SizeLimits.checkInputElements("encoder_hidden_states_image", [2 * b, n, e]) }
        let p = c.patch
        guard f % p.t == 0, h % p.h == 0, w % p.w == 0 else {
            throw .malformedConfig(reason: "latent \(f)×\(h)×\(w) must be divisible by patch_size \(c.patchSize)")
        }
        var g = SeededGenerator(seed: seed)
        do {
            var image: Tensor? = nil
            if let e = c.imageDim {
                let shape = c.posEmbedSeqLen.map { [2 * b, $0 / 2, e] } ?? [b, n, e]
                image = try .randomNormal(shape: shape, using: &g)
            }
            return WanInput(hiddenStates: try .randomNormal(shape: [b, c.inChannels, f, h, w], using: &g),
                            timestep: try Tensor(shape: [b], repeating: 500),
                            encoderHiddenStates: try .randomNormal(shape: [b, l, c.textDim], using: &g),
                            encoderHiddenStatesImage: image)
        } catch {
            throw .tensor(error)
        }
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
