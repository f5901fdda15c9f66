import Foundation
import Tensors

/// The arguments of one `WanTransformer3DModel.forward` call.
public struct WanInput: LatentTimestepInput, Sendable {
    /// The latent video `[B, C, F, H, W]`.
    public var hiddenStates: Tensor
    /// The timestep per sample `[B]` (or `[1]`, broadcast over the batch), on the 0…1000 scale.
    public var timestep: Tensor
    /// Text-encoder features `[B, L, text_dim]`.
    public var encoderHiddenStates: Tensor
    /// Image-encoder features `[B, N, image_dim]` (`[2B, N, image_dim]` with `pos_embed_seq_len`), for I2V.
    public var encoderHiddenStatesImage: Tensor?

    /// Bundles the arguments.
    public init(hiddenStates: Tensor, timestep: Tensor, encoderHiddenStates: Tensor, encoderHiddenStatesImage: Tensor? = nil) {
        self.hiddenStates = hiddenStates
        self.timestep = timestep
        self.encoderHiddenStates = encoderHiddenStates
        self.encoderHiddenStatesImage = encoderHiddenStatesImage
    }
}

/// Everything computed before the block stack for one call, and the video tokens as they go through it.
public struct WanState: Sendable {
    /// The video tokens `[B, S, D]`: the patch-embedded input h_in after ``WanTransformer/prepare(_:)``,
    /// the block-stack output after ``WanTransformer/runBlocks(_:)``.
    public var tokens: Tensor
    /// The time embedding `temb` `[B, D]`.
    public var temb: Tensor
    /// What every block reads (modulation, context, rotary tables).
    public var blocks: WanBlockContext
    /// The latent grid `(F, H, W)` before patching.
    public var grid: (f: Int, h: Int, w: Int)
}

/// diffusers 0.42.1 `WanTransformer3DModel` (Wan2.1 / Wan2.2-A14B layout; T2V, I2V, FLF2V) on the CPU in
/// float32.
///
/// The forward is split the way TeaCache needs it: ``prepare(_:)`` (patch, condition and rotary
/// embeddings), ``runBlocks(_:)`` (the transformer blocks), ``outputHead(_:)`` (output norm with
/// its `scale_shift_table` modulation, `proj_out`, unpatchify). ``callAsFunction(_:)`` chains them.
///
/// Precision: diffusers keeps the rotary tables (computed in float64), the time embedder, the
/// `scale_shift_table`s and the LayerNorms in float32 and casts back to the model dtype after each
/// modulated norm and gated residual add; with float32 weights (the fixtures, and this port) every one of
/// those casts is the identity, so everything here is float32 with the rotary frequencies in Double.
/// The gated updates are computed as diffusers orders them: `h + (out · gate)`.
///
/// Image-to-video models with separate image projections (`added_kv_proj_dim`) split the cross-attention
/// context exactly as diffusers does: the context is `[image tokens; text tokens]` (text alone when no
/// image is passed) of length T, and the first `T − 512` tokens (Python slicing: `max(2T − 512, 0)` when
/// T < 512) go to the image projections, the rest to `to_k`/`to_v` — diffusers assumes 512 text tokens,
/// as every Wan pipeline pads to. See ``WanTransformer/imageContextSplit(contextLength:)``.
///
/// Difference from diffusers: per-token timesteps (`timestep` of shape `[B, S]`, Wan2.2 TI2V) are rejected.
public struct WanTransformer: Sendable {
    /// The validated configuration.
    public let configuration: WanConfiguration
    /// The 3-D rotary embedding.
    let rotary: WanRotaryEmbedding
    /// `patch_embedding` (Conv3d as a matmul).
    let patchEmbedding: WanPatchEmbedding
    /// `condition_embedder` (time, text and image).
    let conditionEmbedder: WanConditionEmbedder
    /// `blocks`.
    let blocks: [WanTransformerBlock]
    /// `[1, 2, D]`: (shift, scale) offsets of the output modulation.
    let scaleShiftTable: Tensor
    /// `proj_out`.
    let projOut: Linear
    /// Which tensor TeaCache compares (`DiffusionTransformer/modulatedInput(_:)`): `temb` in the
    /// script's default mode, `timestep_proj` with retention steps. It changes nothing else.
    public var teaCacheMode: WanTeaCacheMode = .standard
    /// The memory a forward may plan to use: ``prepare(_:)`` estimates the activations of the input shapes
    /// (``WanConfiguration/activationBytesEstimate(batch:videoTokens:textTokens:imageTokens:)``) and refuses
    /// inputs beyond it with `TensorError.memoryBudgetExceeded`.
    public var memoryBudget = MemoryBudget.machineDefault

    /// Stored tensors diffusers 0.42.1 ignores when loading a `WanTransformer3DModel` (its
    /// `_keys_to_ignore_on_load_unexpected`): no Wan layer has them, and old checkpoints carry them.
    /// Declared once in ``WanFamily/weightRules``, so every way of loading drops them alike.
    public static let ignoredWeightPatterns = ["norm_added_q"]

    /// Builds the model, taking every parameter from `weights` (called by ``WanFamily``'s loading
    /// functions, which check the weights afterwards).
    init(configuration c: WanConfiguration, weights w: WeightScope) {
        configuration = c
        rotary = WanRotaryEmbedding(configuration: c)
        patchEmbedding = WanPatchEmbedding(w["patch_embedding"], configuration: c)
        conditionEmbedder = WanConditionEmbedder(w["condition_embedder"], configuration: c)
        blocks = (0..<c.numLayers).map { WanTransformerBlock(w["blocks"][$0], configuration: c) }
        scaleShiftTable = w["scale_shift_table"].tensor(shape: [1, 2, c.innerDim])
        projOut = Linear(w["proj_out"], in: c.innerDim, out: c.outputTokenWidth)
    }

    /// Builds the model from stored weights (diffusers names). Tensors diffusers ignores when loading
    /// (``ignoredWeightPatterns``) are ignored here too.
    /// - Throws: ``ModelLoadError`` for an invalid configuration or mismatched weights (all listed at once).
    public init(configuration: WanConfiguration, tensors: [String: Tensor]) throws(ModelLoadError) {
        self = try WanFamily.load(configuration, tensors: tensors)
    }

    /// Builds the model from the weights at `url`: a safetensors file, a sharded checkpoint's index, or a
    /// diffusers `transformer/` folder (see ``WeightsLocation``).
    public init(configuration: WanConfiguration, weightsAt url: URL) throws(ModelLoadError) {
        self = try WanFamily.load(configuration, weightsAt: url)
    }

    /// A model with random weights following the fixtures' scheme (FORMAT.md §6), including the taper
    /// of `condition_embedder.time_embedder.linear_1.weight` for a `steps`-step run on the 0…1000
    /// timestep scale (`u = 1000 / steps`).
    public static func random(configuration: WanConfiguration, seed: UInt64, steps: Int = 50) throws(ModelLoadError) -> WanTransformer {
        try WanFamily.random(configuration, seed: seed, steps: steps)
    }

    /// This model with another TeaCache mode.
    public func withTeaCacheMode(_ mode: WanTeaCacheMode) -> WanTransformer {
        var m = self
        m.teaCacheMode = mode
        return m
    }

    /// The model width D.
    public var innerDim: Int { configuration.innerDim }

    // MARK: - Forward parts

    /// Patch, condition and rotary embeddings: everything before the first block.
    /// - Throws: `TensorError` naming the argument whose shape is wrong.
    public func prepare(_ input: WanInput) throws(TensorError) -> WanState {
        let c = configuration
        let x = input.hiddenStates
        guard x.rank == 5, x.shape[1] == c.inChannels else {
            throw .shapeMismatch(operation: "Wan forward", shapes: [x.shape],
                                 reason: "hidden_states must be [B, in_channels = \(c.inChannels), F, H, W]")
        }
        let b = x.shape[0]
        let (f, h, w) = (x.shape[2], x.shape[3], x.shape[4])
        let p = c.patch
        guard f % p.t == 0, h % p.h == 0, w % p.w == 0 else {
            throw .invalidArgument(operation: "Wan forward",
                                   reason: "latent grid \(f)×\(h)×\(w) is not divisible by patch_size \(c.patchSize)")
        }
        for (name, t) in [("hidden_states", x), ("encoder_hidden_states", input.encoderHiddenStates),
                          ("encoder_hidden_states_image", input.encoderHiddenStatesImage)] {
            if let t, !t.isFinite {
                throw .invalidArgument(operation: "Wan forward", reason: "\(name) holds NaN or infinite values")
            }
        }
        let timesteps = try Self.timesteps(input.timestep, batch: b)
        let text = input.encoderHiddenStates
        guard text.rank == 3, text.shape[0] == b, text.shape[2] == c.textDim else {
            throw .shapeMismatch(operation: "Wan forward", shapes: [x.shape, text.shape],
                                 reason: "encoder_hidden_states must be [B = \(b), L, text_dim = \(c.textDim)]")
        }
        let tokenCount = (f / p.t) * (h / p.h) * (w / p.w)
        let imageTokens = input.encoderHiddenStatesImage.map { $0.shape.count == 3 ? $0.shape[1] : 0 } ?? 0
        try memoryBudget.check(
            "Wan forward of batch \(b), \(tokenCount) video + \(text.shape[1]) text tokens",
            bytes: Double(c.activationBytesEstimate(batch: b, videoTokens: tokenCount, textTokens: text.shape[1],
                                                    imageTokens: imageTokens)))
        let rope = try rotary.tables(frames: f / p.t, height: h / p.h, width: w / p.w)
        let tokens = try patchEmbedding(x)
        let cond = try conditionEmbedder(timesteps: timesteps, text: text, image: input.encoderHiddenStatesImage)
        var context = cond.text
        if let image = cond.image {
            guard image.shape[0] == b else {
                throw .shapeMismatch(operation: "Wan forward", shapes: [image.shape, text.shape],
                                     reason: "the embedded image tokens have batch \(image.shape[0]), the text has \(b)")
            }
            context = try Tensor.concatenate([image, context], axis: 1)
        }
        var separateImage: Tensor? = nil
        if c.addedKVProjDim != nil {
            let split = Self.imageContextSplit(contextLength: context.shape[1])
            separateImage = try context.slice(axis: 1, 0..<split)
            context = try context.slice(axis: 1, split..<context.shape[1])
        }
        return WanState(
            tokens: tokens, temb: cond.temb,
            blocks: WanBlockContext(timestepProjection: cond.timestepProjection, context: context, image: separateImage,
                                    rotaryCos: rope.cos, rotarySin: rope.sin),
            grid: (f, h, w))
    }

    /// The number of leading context tokens diffusers 0.42.1 hands to the image projections of a model
    /// with `added_kv_proj_dim`: `context[:, :T − 512]` in Python, i.e. `T − 512` when T ≥ 512, else
    /// `max(2T − 512, 0)` (a negative end counts from the back). With 512 text tokens, as the Wan
    /// pipelines pad to, that is exactly the image tokens.
    public static func imageContextSplit(contextLength t: Int) -> Int {
        let k = t - 512
        return k >= 0 ? k : max(t + k, 0)
    }

    /// Runs every transformer block on `state.tokens` `[B, S, D]`, in place.
    public func runBlocks(_ state: inout WanState) throws(TensorError) {
        var h = state.tokens
        for block in blocks { h = try block(h, state.blocks) }
        state.tokens = h
    }

    /// Output norm (no affine) modulated by `scale_shift_table + temb`, `proj_out`, and unpatchify to
    /// `[B, out_channels, F, H, W]`.
    public func outputHead(_ state: WanState) throws(TensorError) -> Tensor {
        let ss = try (scaleShiftTable + state.temb.unsqueezed(1)).chunked(2, axis: 1)  // shift, scale: [B, 1, D]
        let normed = try layerNormModulated(state.tokens, eps: configuration.eps, scale: ss[1], shift: ss[0])
        return try Patches.unpatchify3D(projOut(normed), grid: state.grid, patch: configuration.patch,
                                        order: .channelsLast)
    }

    /// The full forward: `output` of diffusers' `forward(..., return_dict=False)[0]`.
    public func callAsFunction(_ input: WanInput) throws(TensorError) -> Tensor {
        var state = try prepare(input)
        try runBlocks(&state)
        return try outputHead(state)
    }

    /// The timestep values per sample: `[B]`, or `[1]` repeated over the batch (diffusers broadcasts it).
    static func timesteps(_ t: Tensor, batch b: Int) throws(TensorError) -> [Float] {
        guard t.rank == 1, t.shape[0] == b || t.shape[0] == 1 else {
            throw .shapeMismatch(operation: "Wan forward", shapes: [t.shape],
                                 reason: "timestep must be [B = \(b)] or [1] (per-token timesteps are not supported)")
        }
        let v = t.scalars
        guard v.allSatisfy(\.isFinite) else {
            throw .invalidArgument(operation: "Wan forward", reason: "timestep holds NaN or infinite values: \(v)")
        }
        return v.count == b ? v : Array(repeating: v[0], count: b)
    }
}
