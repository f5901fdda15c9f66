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

/// What every block of one forward call shares: the modulation input, the cross-attention context and
/// the rotary tables.
public struct WanBlockContext: Sendable {
    /// `timestep_proj` `[B, 6, D]`.
    public var timestepProjection: Tensor
    /// The cross-attention keys/values source `[B, L, D]`: text tokens, preceded by the image tokens when
    /// the model has an image embedder but no separate image projections.
    public var context: Tensor
    /// The image tokens `[B, N, D]` for the separate image attention (models with `added_kv_proj_dim`).
    public var image: Tensor?
    /// Rotary cosine table `[S, head_dim]`.
    public var rotaryCos: Tensor
    /// Rotary sine table `[S, head_dim]`.
    public var rotarySin: Tensor
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
    private let rotary: WanRotaryEmbedding
    /// `patch_embedding` (Conv3d as a matmul).
    private let patchEmbedding: PatchEmbedding3D
    /// `condition_embedder` (time, text and image).
    let conditionEmbedder: WanConditionEmbedder
    /// `blocks`.
    private let blocks: [WanTransformerBlock]
    /// `[1, 2, D]`: (shift, scale) offsets of the output modulation.
    private let scaleShiftTable: Tensor
    /// `proj_out`.
    private let projOut: Linear
    /// Which tensor TeaCache compares (`DiffusionTransformer/modulatedInput(_:)`): `temb` in the
    /// script's default mode, `timestep_proj` with retention steps. It changes nothing else.
    public var teaCacheMode: WanTeaCacheMode = .standard
    /// The memory a forward may plan to use: ``prepare(_:)`` estimates the activations of the input shapes
    /// (``WanConfiguration/activationBytesEstimate(batch:videoTokens:textTokens:imageTokens:)``) and refuses
    /// inputs beyond it with `TensorError.memoryBudgetExceeded`.
    public var memoryBudget = MemoryBudget.machineDefault

    /// Builds the model, taking every parameter from `weights` (called by ``WanFamily``'s loading
    /// functions, which check the weights afterwards).
    init(configuration c: WanConfiguration, weights w: WeightScope) {
        configuration = c
        rotary = WanRotaryEmbedding(configuration: c)
        patchEmbedding = PatchEmbedding3D(w["patch_embedding"], inChannels: c.inChannels, outChannels: c.innerDim,
                                          patch: c.patch)
        conditionEmbedder = WanConditionEmbedder(w["condition_embedder"], configuration: c)
        blocks = (0..<c.numLayers).map { WanTransformerBlock(w["blocks"][$0], configuration: c) }
        scaleShiftTable = w["scale_shift_table"].tensor(shape: [1, 2, c.innerDim])
        projOut = Linear(w["proj_out"], in: c.innerDim, out: c.outputTokenWidth)
    }

    /// The full forward: `output` of diffusers' `forward(..., return_dict=False)[0]`.
    public func callAsFunction(_ input: WanInput) throws(TensorError) -> Tensor {
        var state = try prepare(input)
        try runBlocks(&state)
        return try outputHead(state)
    }

    /// The model width D.
    public var innerDim: Int { configuration.innerDim }

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
        for i in blocks.indices { try runBlock(i, &state) }
    }

    /// The number of transformer blocks (`num_layers`).
    var depth: Int { blocks.count }

    /// Runs block `index` (`0 ..< num_layers`, in order) on `state.tokens`: the one loop body of
    /// ``runBlocks(_:)`` and of First-Block Cache.
    public func runBlock(_ index: Int, _ state: inout WanState) throws(TensorError) {
        guard blocks.indices.contains(index) else {
            throw .invalidArgument(operation: "Wan block", reason: "block \(index) is outside 0..<\(blocks.count)")
        }
        state.tokens = try blocks[index](state.tokens, state.blocks)
    }

    /// Output norm (no affine) modulated by `scale_shift_table + temb`, `proj_out`, and unpatchify to
    /// `[B, out_channels, F, H, W]`.
    public func outputHead(_ state: WanState) throws(TensorError) -> Tensor {
        let ss = try (scaleShiftTable + state.temb.unsqueezed(1)).chunked(2, axis: 1)  // shift, scale: [B, 1, D]
        let normed = try layerNormModulated(state.tokens, eps: configuration.eps, scale: ss[1], shift: ss[0])
        return try Patches.unpatchify3D(projOut(normed), grid: state.grid, patch: configuration.patch,
                                        order: .channelsLast)
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

// MARK: Embeddings

/// Wan's 3-D rotary position embedding (diffusers `WanRotaryPosEmbed`).
///
/// The head dimension D is split into frame, height and width parts (`D − 4⌊D/6⌋`, `2⌊D/6⌋`,
/// `2⌊D/6⌋`); each part rotates by its axis' integer patch index with frequencies
/// `10000^(−2i/dim)` computed in Double, and the pairs are interleaved (`(x₀, x₁), (x₂, x₃), …`).
struct WanRotaryEmbedding: Sendable {
    /// Rotary dimensions per axis (frames, height, width).
    let axesDims: [Int]
    /// Positions covered per axis; grids longer than this are rejected, as diffusers' table is cut there.
    let maxSequenceLength: Int
    /// The frequency base.
    let theta: Double

    /// The embedding of a configuration (theta 10000, as diffusers).
    init(configuration c: WanConfiguration, theta: Double = 10000) {
        axesDims = c.rotaryAxesDims
        maxSequenceLength = c.ropeMaxSeqLen
        self.theta = theta
    }

    /// cos/sin tables `[f·h·w, D]` for a patched grid, tokens in (frame, row, column) raster order.
    func tables(frames f: Int, height h: Int, width w: Int) throws(TensorError) -> (cos: Tensor, sin: Tensor) {
        guard max(f, h, w) <= maxSequenceLength else {
            throw .invalidArgument(operation: "Wan rotary embedding",
                                   reason: "patched grid \(f)×\(h)×\(w) exceeds rope_max_seq_len = \(maxSequenceLength)")
        }
        var positions = [Float]()
        positions.reserveCapacity(f * h * w * 3)
        for i in 0..<f { for j in 0..<h { for k in 0..<w { positions += [Float(i), Float(j), Float(k)] } } }
        return try RotaryEmbedding.tables(positions: Tensor(shape: [f * h * w, 3], scalars: positions),
                                          axesDims: axesDims, theta: theta, layout: .interleaved)
    }
}

/// The outputs of ``WanConditionEmbedder``.
struct WanConditionEmbedding: Sendable {
    /// The time embedding `temb` `[B, D]` (the original Wan code's `e`).
    var temb: Tensor
    /// The per-block modulation input `timestep_proj` unflattened to `[B, 6, D]` (the original's `e0`).
    var timestepProjection: Tensor
    /// The projected text tokens `[B, L, D]`.
    var text: Tensor
    /// The embedded image tokens `[B, N, D]`, when the model and the call have them.
    var image: Tensor?
}

/// diffusers' `WanTimeTextImageEmbedding`: sinusoidal timestep features (cos first, shift 0) →
/// `time_embedder` MLP = `temb`; `time_proj(silu(temb))` = the 6·D block modulation; the text
/// projection; and, for image-to-video, ``WanImageEmbedding``.
///
/// All of it runs in float32, as diffusers does for float32 weights.
struct WanConditionEmbedder: Sendable {
    /// Sinusoidal timestep features.
    let freqDim: Int
    /// The model width.
    let innerDim: Int
    /// `time_embedder`.
    let timeEmbedder: TimestepMLP
    /// `time_proj`: `temb` → six modulation vectors.
    let timeProjection: Linear
    /// `text_embedder`.
    let textEmbedder: PixArtAlphaTextProjection
    /// `image_embedder` (image-to-video only).
    let imageEmbedder: WanImageEmbedding?

    /// Takes every parameter of the `condition_embedder` scope.
    init(_ w: WeightScope, configuration c: WanConfiguration) {
        let d = c.innerDim
        freqDim = c.freqDim
        innerDim = d
        timeEmbedder = TimestepMLP(w["time_embedder"], in: c.freqDim, hidden: d, out: d)
        timeProjection = Linear(w["time_proj"], in: d, out: 6 * d)
        textEmbedder = PixArtAlphaTextProjection(w["text_embedder"], in: c.textDim, hidden: d, activation: .gelu(.tanh))
        imageEmbedder = c.imageDim.map { dim in
            WanImageEmbedding(w["image_embedder"], in: dim, out: d, positionCount: c.posEmbedSeqLen)
        }
    }

    /// The time embedding `[B, D]` and the block modulation `[B, 6, D]` for one timestep per sample.
    func time(_ timesteps: [Float]) throws(TensorError) -> (temb: Tensor, projection: Tensor) {
        let features = try sinusoidalTimestepEmbedding(timesteps, dim: freqDim, flipSinToCos: true, downscaleFreqShift: 0)
        let temb = try timeEmbedder(features)
        let proj = try timeProjection(silu(temb)).reshaped([timesteps.count, 6, innerDim])
        return (temb, proj)
    }

    /// Embeds the timesteps, the text tokens `[B, L, text_dim]` and the optional image tokens.
    func callAsFunction(
        timesteps: [Float], text: Tensor, image: Tensor?
    ) throws(TensorError) -> WanConditionEmbedding {
        let (temb, proj) = try time(timesteps)
        let textTokens = try textEmbedder(text)
        var imageTokens: Tensor? = nil
        if let image {
            guard let imageEmbedder else {
                throw .invalidArgument(operation: "Wan forward",
                                       reason: "encoder_hidden_states_image was given but the configuration has no image_dim")
            }
            imageTokens = try imageEmbedder(image)
        }
        return WanConditionEmbedding(temb: temb, timestepProjection: proj, text: textTokens, image: imageTokens)
    }
}

/// diffusers' `WanImageEmbedding` (image-to-video): image-encoder features → `norm1` (affine
/// LayerNorm, ε = 1e-5) → feed-forward (exact GELU, hidden width = input width) → `norm2` (affine
/// LayerNorm, ε = 1e-5), all in float32.
///
/// With a position embedding (`pos_embed_seq_len`, Wan FLF2V) the input holds two images per sample,
/// `[2B, N, E]`; consecutive pairs are joined into `[B, 2N, E]` and `pos_embed` `[1, 2N, E]` is added
/// before the first norm.
struct WanImageEmbedding: Sendable {
    /// `norm1`.
    let norm1: AffineLayerNorm
    /// `ff`.
    let feedForward: FeedForward
    /// `norm2`.
    let norm2: AffineLayerNorm
    /// `[1, P, E]`, or nil.
    let positionEmbedding: Tensor?

    /// The epsilon of both norms (`torch.nn.LayerNorm`'s default, which diffusers keeps here).
    static let eps: Float = 1e-5

    /// Takes `norm1`, `ff.net.{0.proj,2}`, `norm2` and, when `positionCount` is set, `pos_embed` of the scope.
    init(_ w: WeightScope, in inFeatures: Int, out outFeatures: Int, positionCount: Int?) {
        norm1 = AffineLayerNorm(w["norm1"], dim: inFeatures, eps: Self.eps)
        feedForward = FeedForward(w["ff"], dim: inFeatures, inner: inFeatures, out: outFeatures, activation: .gelu(.none))
        norm2 = AffineLayerNorm(w["norm2"], dim: outFeatures, eps: Self.eps)
        positionEmbedding = positionCount.map { w["pos_embed"].tensor(shape: [1, $0, inFeatures]) }
    }

    /// The input width E.
    var inFeatures: Int { norm1.weight.count }

    /// Embeds `[B, N, E]` (or `[2B, N, E]` with a position embedding) into `[B, N', D]`.
    func callAsFunction(_ image: Tensor) throws(TensorError) -> Tensor {
        guard image.rank == 3, image.shape[2] == inFeatures else {
            throw .shapeMismatch(operation: "Wan image embedding", shapes: [image.shape],
                                 reason: "encoder_hidden_states_image must be [B, N, image_dim = \(inFeatures)]")
        }
        var x = image
        if let positionEmbedding {
            let (b, n) = (image.shape[0], image.shape[1])
            guard b % 2 == 0, 2 * n == positionEmbedding.shape[1] else {
                throw .shapeMismatch(operation: "Wan image embedding", shapes: [image.shape, positionEmbedding.shape],
                                     reason: "with pos_embed_seq_len = \(positionEmbedding.shape[1]) the image tokens must be "
                                        + "[2B, \(positionEmbedding.shape[1] / 2), \(inFeatures)] (two images per sample)")
            }
            x = try x.reshaped([b / 2, 2 * n, inFeatures]) + positionEmbedding
        }
        return try norm2(feedForward(norm1(x)))
    }
}

// MARK: Blocks

/// diffusers' `WanTransformerBlock` (float32 throughout):
///
///     (shift, scale, gate, c_shift, c_scale, c_gate) = chunk₆(scale_shift_table + timestep_proj)
///     h = h + attn1(LN(h)·(1 + scale) + shift) · gate
///     h = h + attn2(norm2(h), context)              norm2: affine LayerNorm, or identity
///     h = h + ffn(LN(h)·(1 + c_scale) + c_shift) · c_gate
///
/// LN is a LayerNorm without affine parameters (ε from the configuration); each gated update multiplies
/// first and adds second, as diffusers does.
private struct WanTransformerBlock: Sendable {
    /// `attn1`: self-attention with rotary embedding.
    let attn1: WanAttention
    /// `attn2`: cross-attention to the text (and image) context.
    let attn2: WanAttention
    /// The cross-attention input norm (`cross_attn_norm`), or nil for identity.
    let norm2: AffineLayerNorm?
    /// `ffn` (GELU-tanh).
    let ffn: FeedForward
    /// `[1, 6, D]`: the block's modulation offsets.
    let scaleShiftTable: Tensor
    /// Epsilon of the non-affine LayerNorms.
    let eps: Float

    /// Takes every parameter of one block's scope (`blocks.<i>`).
    init(_ w: WeightScope, configuration c: WanConfiguration) {
        let d = c.innerDim
        attn1 = WanAttention(w["attn1"], dim: d, heads: c.numAttentionHeads, eps: c.eps)
        attn2 = WanAttention(w["attn2"], dim: d, heads: c.numAttentionHeads, eps: c.eps, addedKVDim: c.addedKVProjDim)
        norm2 = c.crossAttnNorm ? AffineLayerNorm(w["norm2"], dim: d, eps: c.eps) : nil
        ffn = FeedForward(w["ffn"], dim: d, inner: c.ffnDim, activation: .gelu(.tanh))
        scaleShiftTable = w["scale_shift_table"].tensor(shape: [1, 6, d])
        eps = c.eps
    }

    /// Runs the block on `h` `[B, S, D]`.
    func callAsFunction(_ h: Tensor, _ ctx: WanBlockContext) throws(TensorError) -> Tensor {
        let m = try (scaleShiftTable + ctx.timestepProjection).chunked(6, axis: 1)  // each [B, 1, D]
        var h = h
        let attnIn = try layerNormModulated(h, eps: eps, scale: m[1], shift: m[0])
        h = try addingGated(h, attn1.selfAttention(attnIn, rotary: (ctx.rotaryCos, ctx.rotarySin)), gate: .perSample(m[2]))
        let crossIn = try norm2.map { n throws(TensorError) in try n(h) } ?? h
        h = try h + attn2.crossAttention(crossIn, context: ctx.context, image: ctx.image)
        let ffIn = try layerNormModulated(h, eps: eps, scale: m[4], shift: m[3])
        h = try addingGated(h, ffn(ffIn), gate: .perSample(m[5]))
        return h
    }
}

/// diffusers' `WanAttention` with `WanAttnProcessor`: q/k/v projections, RMS norms of q and k over
/// all heads together (`rms_norm_across_heads`, learned scale), optional rotary embedding of q and k,
/// scaled-dot-product attention, output projection. With the image projections (`add_k_proj`,
/// `add_v_proj`, `norm_added_k`; Wan2.1 I2V) the queries also attend to the image tokens separately and
/// the two attention outputs are summed before `to_out`.
private struct WanAttention: Sendable {
    /// `to_q`.
    let toQ: Linear
    /// `to_k`.
    let toK: Linear
    /// `to_v`.
    let toV: Linear
    /// `to_out.0`.
    let toOut: Linear
    /// `[D]` scale of the query RMS norm.
    let normQ: Tensor
    /// `[D]` scale of the key RMS norm.
    let normK: Tensor
    /// The image key/value projections and the image-key norm scale, for I2V cross-attention.
    let added: (key: Linear, value: Linear, normKey: Tensor)?
    /// Number of attention heads.
    let heads: Int
    /// RMSNorm epsilon.
    let eps: Float

    /// Takes `to_q`, `to_k`, `to_v`, `to_out.0`, `norm_q`, `norm_k` of the scope and, when
    /// `addedKVDim` is set, `add_k_proj`, `add_v_proj`, `norm_added_k`.
    init(_ w: WeightScope, dim: Int, heads: Int, eps: Float, addedKVDim: Int? = nil) {
        toQ = Linear(w["to_q"], in: dim, out: dim)
        toK = Linear(w["to_k"], in: dim, out: dim)
        toV = Linear(w["to_v"], in: dim, out: dim)
        toOut = Linear(w["to_out.0"], in: dim, out: dim)
        normQ = w["norm_q"].tensor("weight", shape: [dim])
        normK = w["norm_k"].tensor("weight", shape: [dim])
        added = addedKVDim.map { kv in
            (Linear(w["add_k_proj"], in: kv, out: dim), Linear(w["add_v_proj"], in: kv, out: dim),
             w["norm_added_k"].tensor("weight", shape: [dim]))
        }
        self.heads = heads
        self.eps = eps
    }

    /// Self-attention of `x` `[B, S, D]` with rotary tables `[S, D/heads]`.
    func selfAttention(_ x: Tensor, rotary: (cos: Tensor, sin: Tensor)) throws(TensorError) -> Tensor {
        // The RMS norm over the whole width and the rotary embedding in one pass per row.
        let tables = (cos: rotary.cos, sin: rotary.sin, layout: RotaryEmbedding.Layout.interleaved)
        let width = normQ.count
        let q = try preparedHeads([HeadSegment(toQ(x), norm: HeadNormalisation(.rms, weight: normQ, eps: eps, perHead: false))],
                                  width: width, heads: heads, rope: tables)
        let k = try preparedHeads([HeadSegment(toK(x), norm: HeadNormalisation(.rms, weight: normK, eps: eps, perHead: false))],
                                  width: width, heads: heads, rope: tables)
        let v = try toV(x)
        return try toOut(attention(query: q, key: k, value: v, heads: heads, precision: toOut.weight.precision))
    }

    /// Cross-attention of `x` `[B, S, D]` to `context` `[B, L, D]`, plus, for I2V, to `image` `[B, N, D]`
    /// through the image projections.
    func crossAttention(_ x: Tensor, context: Tensor, image: Tensor?) throws(TensorError) -> Tensor {
        let q = try rmsNorm(toQ(x), weight: normQ, eps: eps)
        let k = try rmsNorm(toK(context), weight: normK, eps: eps)
        let v = try toV(context)
        var out = try attention(query: q, key: k, value: v, heads: heads, precision: toOut.weight.precision)
        switch (added, image) {
        case let (added?, image?):
            let ki = try rmsNorm(added.key(image), weight: added.normKey, eps: eps)
            let vi = try added.value(image)
            out = try attention(query: q, key: ki, value: vi, heads: heads, precision: toOut.weight.precision) + out
        case (nil, nil):
            break
        case (.some, nil):
            throw .invalidArgument(operation: "Wan cross-attention",
                                   reason: "this model has image key/value projections (added_kv_proj_dim) but no image context was split off")
        case (nil, .some):
            throw .invalidArgument(operation: "Wan cross-attention",
                                   reason: "separate image tokens need add_k_proj/add_v_proj (added_kv_proj_dim)")
        }
        return try toOut(out)
    }
}
