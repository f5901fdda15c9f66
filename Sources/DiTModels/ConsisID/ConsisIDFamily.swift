import Foundation
import TeaCache
import Tensors

// MARK: Model

/// ConsisID (diffusers `ConsisIDTransformer3DModel`: identity-preserving text-to-video on the
/// CogVideoX-5B-I2V base) in the registry: loading, sampling conventions (timestep = sigma·1000, the output
/// taken as the velocity, one call per step — the pipeline batches its CFG into one call), the ConsisID
/// preset, the benchmark shape and the fixture plug-in.
///
/// The model input of a sampling call is `hidden_states = cat([latent, image_latents], dim=2)`: the
/// conditioning holds `image_latents` (`[B, F, C, H, W]`, the encoded reference image in the first
/// frame), which ``samplingInput(latent:timestep:conditioning:configuration:)`` joins to every call's
/// latent. Fixture arguments are diffusers' forward arguments `hidden_states`, `encoder_hidden_states`,
/// `timestep`, `id_cond` and `id_vit_hidden.<i>`; a folder's `image_rotary_emb.*` tensors are not read
/// (the model builds the pipeline's table from the latent size). TeaCache caches two streams, the video
/// and the text tokens (`teacache.residual`, `teacache.residual_encoder`).
public enum ConsisIDFamily: DiTFamilyHarness {
    public typealias Configuration = ConsisIDConfiguration
    public typealias Model = ConsisIDTransformer

    public static let name = "consisid"
    public static let summary = "ConsisID identity-preserving video DiT (ConsisIDTransformer3DModel, CogVideoX-5B-I2V base), "
        + "timestep = sigma·1000, input = [latent, image latents], two cached streams"

    public static func makeModel(_ configuration: ConsisIDConfiguration, weights: WeightScope) throws(ModelLoadError) -> ConsisIDTransformer {
        ConsisIDTransformer(configuration: configuration, weights: weights)
    }

    /// The §6 taper of `time_embedding.linear_1.weight` (the backbone's, `u = 1000 / steps`).
    public static func randomWeightAdjustment(_ c: ConsisIDConfiguration, steps: Int) -> WeightAdjustment? {
        CogVideoXFamily.randomWeightAdjustment(c.backbone, steps: steps)
    }

    // MARK: Sampling conventions and presets

    public static let timestepConvention = TimestepConvention.sigmaTimes1000
    public static var presets: [TeaCachePreset] { [.consisID] }

    /// One call's input: `hidden_states = cat([latent, image_latents], dim=2)`, the timestep repeated over
    /// the batch, and the conditioning's `encoder_hidden_states`, `id_cond` and `id_vit_hidden.<i>`.
    /// - Throws: `VerifyError.missingTensor` without `image_latents` or `encoder_hidden_states`;
    ///   `TensorError` when `image_latents` does not fit the latent (it must be `[B, F, C', H, W]`).
    public static func samplingInput(latent: Tensor, timestep: Float, conditioning a: FixtureArguments,
                                     configuration: ConsisIDConfiguration) throws -> ConsisIDInput {
        try input(hiddenStates: Tensor.concatenate([latent, a.tensor("image_latents")], axis: 2),
                  timestep: a.timestep(timestep, batchOf: latent), arguments: a)
    }

    /// The input of `hidden_states` and `timestep` with the rest of the arguments `a`.
    static func input(hiddenStates: Tensor, timestep: Tensor, arguments a: FixtureArguments) throws -> ConsisIDInput {
        var scales: [Tensor] = []
        while let t = a.optionalTensor("id_vit_hidden.\(scales.count)") { scales.append(t) }
        return ConsisIDInput(hiddenStates: hiddenStates, encoderHiddenStates: try a.tensor("encoder_hidden_states"),
                             timestep: timestep, idCond: a.optionalTensor("id_cond"),
                             idVitHidden: scales.isEmpty ? nil : scales)
    }
}

/// The reference repository's ConsisID preset (TeaCache4ConsisID: the CogVideoX-5b coefficients, hard-coded
/// in its `teacache_forward`; ali-vilab/TeaCache @ 7c10efc, teacache-spec.md §2.1–§2.3.7).
extension TeaCachePreset {
    /// ConsisID (CogVideoX-5b coefficients). Default δ 0.1 (README: 0.1 → 1.6×, 0.15 → 2.1×, 0.2 → 2.7×).
    ///
    /// Schedule: the standard rule. TeaCache4ConsisID wraps its counter when it *reaches* N − 1, so within
    /// one N-step generation the forced calls are the first (counter 0) and the last (which sees counter 0
    /// again) — exactly the standard rule; the difference, a counter left at 1 so that the *next*
    /// generation's first call is not forced, concerns state carried between runs, and a policy here
    /// starts every run fresh.
    public static let consisID = TeaCachePreset(
        reference: "consisid", cogVideoX5BCoefficients, defaultThreshold: 0.1,
        speedups: [(0.1, 1.6), (0.15, 2.1), (0.2, 2.7)],
        modulatedInput: "emb = time_embedding(time_proj(t))",
        provenance: "TeaCache4ConsisID/teacache_sample_video.py, teacache_forward (coefficients hard-coded; README speedups)")
}

// MARK: TeaCache adapter

/// ConsisID's TeaCache state: the backbone's two cached streams, the video and the text tokens
/// (TeaCache4ConsisID caches `previous_residual` and `previous_residual_encoder`); a skip adds both. The
/// face embedding is computed before the blocks on every call; the cross-attentions run inside the
/// cached span, so a skip sees them only through the video residual.
extension ConsisIDState: BatchSelectableState {
    /// `[video tokens, text tokens]` (a new value holds exactly two tensors, see ``CogVideoXState``).
    public var streams: [Tensor] {
        get { backbone.streams }
        set { backbone.streams = newValue }
    }

    /// The batch size.
    public var batchSize: Int { backbone.batchSize }

    /// The state of the batch elements `indices` (a face embedding shared by the batch stays shared).
    public func selecting(batch indices: [Int]) throws -> ConsisIDState {
        var s = self
        s.backbone = try backbone.selecting(batch: indices)
        if let face = faceEmbedding, face.shape[0] > 1 { s.faceEmbedding = try face.gatheringRows(indices) }
        return s
    }
}

/// ``ConsisIDTransformer`` as a TeaCache ``DiffusionTransformer``.
///
/// - modulated input: the time embedding `emb` `[B, time_embed_dim]` (TeaCache4ConsisID's `emb`); it
///   depends only on the timestep.
/// - streams: `[video tokens, text tokens]` after the patch embedding; each residual is its stream after
///   the last block (and its cross-attention) minus before the first. The face extractor runs before
///   the blocks, `norm_final`, `norm_out` and `proj_out` after them, on every call.
/// - counter: the standard one (`TeaCachePreset.consisID` says why ConsisID's wrap changes nothing within a run).
extension ConsisIDTransformer: DiffusionTransformer {
    public typealias Input = ConsisIDInput
    public typealias State = ConsisIDState

    /// `emb` `[B, time_embed_dim]`.
    public func modulatedInput(_ state: ConsisIDState) throws -> Tensor { state.backbone.emb }
}

/// ConsisID block by block (First-Block Cache): each step is a backbone block and, where there is one,
/// its cross-attention, so the streams read `[video, text]` after every block as diffusers' loop has them.
extension ConsisIDTransformer: BlockwiseDiffusionTransformer {
    /// `num_layers` (the same for every state).
    public func blockCount(_ state: ConsisIDState) -> Int { configuration.backbone.numLayers }
}

extension ConsisIDTransformer: MemoryBudgeted {}

// MARK: Harness

extension ConsisIDFamily {
    /// The published thresholds of TeaCache4ConsisID (0.1 → 1.6×, 0.15 → 2.1×, 0.2 → 2.7×).
    public static let demoThresholds = [0.1, 0.15, 0.2]

    // MARK: Benchmark shape

    public static let benchmarkFileName = "consisid-bench.json"

    /// `Benchmarks/configs/consisid-bench.json`: the CogVideoX 1.0 layout of ConsisID, 512 wide (8 × 64), 4
    /// blocks with 2 cross-attentions (interval 2); a 4-block extractor (2 scales) 256 wide; latent 4×16×32×32
    /// (+16 image-latent channels) with 2×2 patches = 1024 video tokens, 128 text tokens, 65 ViT tokens per
    /// scale, batch 1.
    public static var benchmarkDefault: BenchmarkShape<ConsisIDConfiguration> {
        BenchmarkShape(
            configuration: ConsisIDConfiguration(
                backbone: CogVideoXConfiguration(
                    numAttentionHeads: 8, attentionHeadDim: 64, inChannels: 32, outChannels: 16, timeEmbedDim: 512,
                    textEmbedDim: 512, numLayers: 4, sampleWidth: 32, sampleHeight: 32, sampleFrames: 13, patchSize: 2,
                    maxTextSeqLength: 128, useRotaryPositionalEmbeddings: true),
                isTrainFace: true, crossAttnInterval: 2, crossAttnDimHead: 64, crossAttnNumHeads: 8, lfeIdDim: 512,
                lfeVitDim: 256, lfeDepth: 4, lfeDimHead: 64, lfeNumHeads: 4, lfeNumIdToken: 4, lfeNumQueries: 16,
                lfeOutputDim: 341, lfeFfMult: 4, lfeNumScale: 2),
            inputs: BenchmarkInputs(["batch": 1, "latent_frames": 4, "latent_height": 32, "latent_width": 32,
                                     "text_tokens": 128, "vit_tokens": 65]))
    }

    /// `batch`, `latent_frames`, `latent_height`, `latent_width`, `text_tokens` and (identity models)
    /// `vit_tokens`, plus an optional `id_batch` (1: one identity shared by the batch, as the pipeline
    /// passes it; default the batch).
    public static func randomInputs(_ c: ConsisIDConfiguration, sizes: BenchmarkInputs, seed: UInt64) throws -> SamplingInputs<ConsisIDInput> {
        let s = try RandomSizes(c, sizes)
        var g = SeededGenerator(seed: seed)
        let channels = c.backbone.outputChannels
        let latent = try Tensor.randomNormal(shape: [s.batch, s.frames, channels, s.height, s.width], using: &g)
        let image = try Tensor.randomNormal(shape: [s.batch, s.frames, c.backbone.inChannels - channels, s.height, s.width], using: &g)
        let text = try Tensor.randomNormal(shape: [s.batch, s.textTokens, c.backbone.textEmbedDim], using: &g)
        var idCond: Tensor?, vit: [Tensor]?
        if c.isTrainFace {
            idCond = try .randomNormal(shape: [s.idBatch, c.lfeIdDim], using: &g)
            vit = try (0..<c.lfeNumScale).map { _ in try Tensor.randomNormal(shape: [s.idBatch, s.vitTokens, c.lfeVitDim], using: &g) }
        }
        return SamplingInputs(latent: latent) { x, t, _ in
            ConsisIDInput(hiddenStates: try Tensor.concatenate([x, image], axis: 2), encoderHiddenStates: text,
                          timestep: try Tensor(shape: [s.batch], repeating: t), idCond: idCond, idVitHidden: vit)
        }
    }

    public static func cost(_ c: ConsisIDConfiguration, sizes: BenchmarkInputs) throws -> ForwardCost {
        let s = try RandomSizes(c, sizes)
        let tokens = try c.backbone.videoTokens(frames: s.frames, height: s.height, width: s.width)
        let (b, l, n, fb) = (s.batch, s.textTokens, s.vitTokens, s.idBatch)
        let identity = c.isTrainFace ? ", \(c.crossAttentionCount) cross-attentions, \(c.lfeDepth)-layer extractor" : ""
        return ForwardCost(
            summary: "ConsisID \(c.innerDim)-wide, \(c.backbone.numLayers) blocks\(identity), \(tokens) video + \(l) text tokens, batch \(b)",
            flops: c.forwardFLOPs(batch: b, videoTokens: tokens, textTokens: l, vitTokens: n, faceBatch: fb),
            activationBytes: c.activationBytesEstimate(batch: b, videoTokens: tokens, textTokens: l, vitTokens: n, faceBatch: fb))
    }

    /// The sizes of a benchmark/demo `inputs` table, checked (``SizeLimits``, the patch, the latent
    /// channels `in_channels − out_channels` of the image latents).
    private struct RandomSizes {
        let batch: Int, frames: Int, height: Int, width: Int, textTokens: Int, vitTokens: Int, idBatch: Int

        init(_ c: ConsisIDConfiguration, _ sizes: BenchmarkInputs) throws(ModelLoadError) {
            batch = try sizes.positive("batch")
            (frames, height, width) = (try sizes.positive("latent_frames"), try sizes.positive("latent_height"),
                                       try sizes.positive("latent_width"))
            textTokens = try sizes.positive("text_tokens")
            vitTokens = c.isTrainFace ? try sizes.positive("vit_tokens") : 0
            idBatch = try sizes.positive("id_batch", default: batch)
            guard idBatch == 1 || idBatch == batch else {
                throw .malformedConfig(reason: "id_batch = \(idBatch) must be 1 or the batch \(batch)")
            }
            let channels = c.backbone.outputChannels
            guard c.backbone.inChannels > channels else {
                throw .malformedConfig(reason: "the sampling latent has out_channels = \(channels) channels and the image latents "
                                       + "in_channels − out_channels: in_channels = \(c.backbone.inChannels) leaves none")
            }
            try SizeLimits.checkInputElements("hidden_states", [batch, frames, c.backbone.inChannels, height, width])
            try SizeLimits.checkInputElements("encoder_hidden_states", [batch, textTokens, max(c.backbone.textEmbedDim, c.innerDim)])
            try SizeLimits.checkInputElements("id_vit_hidden", [idBatch, vitTokens, c.lfeNumScale, c.lfeVitDim])
            _ = try c.backbone.videoTokens(frames: frames, height: height, width: width)
            if c.backbone.usesPositionalTable, textTokens != c.backbone.maxTextSeqLength {
                throw .malformedConfig(reason: "text_tokens = \(textTokens): this model's positional table needs "
                                       + "max_text_seq_length = \(c.backbone.maxTextSeqLength)")
            }
        }
    }

    // MARK: Fixtures

    public static func forwardInput(_ a: FixtureArguments, configuration: ConsisIDConfiguration) throws -> ConsisIDInput {
        try input(hiddenStates: a.tensor("hidden_states"), timestep: a.tensor("timestep"), arguments: a)
    }

    /// TeaCache4ConsisID's counter (FORMAT.md §4, kind `consisid`): wrapped to 0 when it reaches N − 1, so
    /// a run of N calls forces its first and last call — the standard schedule (see `TeaCachePreset.consisID`).
    /// Also accepts the standard kind.
    public static func teaCacheConfiguration(record: SamplingRecord, steps: Int) throws -> TeaCacheConfiguration {
        let state = record.teacacheState
        switch record.counterKind {
        case "consisid":
            if let period = state["counter_period"], period.integer != steps - 1 {
                throw VerifyError.unsupported("record \(record.name): counter period \(period) is not \(steps) − 1 steps")
            }
            if let forced = state["forced_counters"], forced != .array([.number(0), .number(Double(steps - 1))]) {
                throw VerifyError.unsupported("record \(record.name): forced counters \(forced) are not [0, \(steps - 1)]")
            }
            return try .faithful(coefficients: record.coefficients, threshold: record.threshold, schedule: .standard)
        case "standard":
            if let period = state["counter_period"], period.integer != steps {
                throw VerifyError.unsupported("record \(record.name): counter period \(period) differs from \(steps) steps")
            }
            return try .faithful(coefficients: record.coefficients, threshold: record.threshold, schedule: .standard)
        default:
            throw VerifyError.unsupported("record \(record.name): counter kind \(record.counterKind ?? "none") is not consisid")
        }
    }
}
