import Foundation
import Tensors

/// Where the rotary embedding of a Lumina-Next call comes from.
public enum LuminaNextRotary: Sendable {
    /// Computed here from the token grid (`get_2d_rotary_pos_embed_lumina`) with the pipeline's scaling
    /// factors (see ``LuminaNextFamily/pipelineSettings(configuration:latentHeight:latentWidth:timestep:scalingWatershed:)``).
    case computed(linearFactor: Double, ntkFactor: Double)
    /// diffusers' `image_rotary_emb` argument as `(real, imaginary)` pairs, `[R, C, Dh/2, 2]` with
    /// `R`, `C` at least the token grid (its top-left corner is used, as diffusers slices it).
    case table(Tensor)

    /// Unscaled: both factors 1 (the pipeline's factors at its default size).
    public static let unscaled = LuminaNextRotary.computed(linearFactor: 1, ntkFactor: 1)
}

/// The arguments of one `LuminaNextDiT2DModel.forward` call.
public struct LuminaNextInput: LatentTimestepInput, Sendable {
    /// The latent `[B, in_channels, H, W]` (H and W multiples of `patch_size`).
    public var hiddenStates: Tensor
    /// The timestep per sample `[B]` (or `[1]`, broadcast), Lumina's `t = 1 − sigma` (0 = noise).
    public var timestep: Tensor
    /// Caption features `[B, L, cross_attention_dim]`.
    public var encoderHiddenStates: Tensor
    /// `encoder_mask` `[B, L]`: 1 for caption tokens, 0 for padding (each sample needs one token).
    public var encoderMask: Tensor
    /// The rotary embedding.
    public var rotary: LuminaNextRotary
    /// `cross_attention_kwargs["base_sequence_length"]`: the proportional-attention base, or nil for
    /// the plain `1/√Dh` self-attention scale.
    public var baseSequenceLength: Double?

    /// Bundles the arguments.
    public init(hiddenStates: Tensor, timestep: Tensor, encoderHiddenStates: Tensor, encoderMask: Tensor,
                rotary: LuminaNextRotary = .unscaled, baseSequenceLength: Double? = nil) {
        self.hiddenStates = hiddenStates
        self.timestep = timestep
        self.encoderHiddenStates = encoderHiddenStates
        self.encoderMask = encoderMask
        self.rotary = rotary
        self.baseSequenceLength = baseSequenceLength
    }
}

/// Everything the Lumina-Next blocks need, computed once per call by ``LuminaNextTransformer/prepare(_:)``.
public struct LuminaNextState: Sendable {
    /// The image tokens `[B, S, D]`: the patch embedding after `prepare`, the block output after `runBlocks`.
    public var tokens: Tensor
    /// What every block reads (conditioning, caption, rotary tables, attention scale).
    var context: LuminaNextBlockContext
    /// The latent height and width.
    public var grid: (h: Int, w: Int)
}

/// What every Lumina-Next block of one call reads besides the image tokens.
struct LuminaNextBlockContext: Sendable {
    /// The conditioning `temb` `[B, min(D, 1024)]`.
    var temb: Tensor
    /// The raw caption features `[B, L, cross_attention_dim]` (each block normalises them itself).
    var caption: Tensor
    /// The caption key mask `[B, L]` (1 = attend).
    var captionMask: Tensor
    /// Rotary tables `[S, Dh]` of the image tokens (interleaved pairs).
    var rope: (cos: Tensor, sin: Tensor)
    /// The self-attention softmax scale (proportional attention, or `1/√Dh`).
    var selfAttentionScale: Float
}

/// diffusers 0.42.1 `LuminaNextDiT2DModel` (Lumina-Next-SFT) on the CPU in float32.
///
/// The forward is split the way TeaCache needs it: ``prepare(_:)`` (patch embedding, the combined
/// timestep + masked-mean caption embedding, rotary tables, the proportional-attention scale),
/// ``modulatedInput(_:)``, ``runBlocks(_:)`` and ``outputHead(_:)`` (`norm_out`, unpatchify).
/// ``callAsFunction(_:)`` chains them. With `learn_sigma` the output has `2·in_channels` channels, the
/// first `in_channels` being the prediction (the velocity is minus those, ``LuminaNextFamily``). Build one
/// with ``LuminaNextFamily``'s loaders.
///
/// Numerics: float32 throughout, as diffusers runs float32 weights; the rotary tables are computed in
/// float32 like diffusers' and correctly rounded. `pad_token` is loaded (it is a parameter) and, as in
/// diffusers, never used.
public struct LuminaNextTransformer: Sendable {
    /// The validated configuration.
    public let configuration: LuminaNextConfiguration
    /// `patch_embedder`.
    private let patchEmbedder: LuminaNextPatchEmbedding
    /// `pad_token` `[D]` (unused by the forward, as in diffusers).
    private let padToken: Tensor
    /// `time_caption_embed`.
    private let timeCaptionEmbed: LuminaNextTimeCaptionEmbedding
    /// `layers`.
    private let layers: [LuminaNextBlock]
    /// `norm_out`.
    private let normOut: LuminaLayerNormContinuous
    /// The memory a forward may plan to use: ``prepare(_:)`` estimates the activations of the input shapes
    /// (``LuminaNextConfiguration/activationBytesEstimate(batch:imageTokens:textTokens:)``) and refuses
    /// inputs beyond it with `TensorError.memoryBudgetExceeded`.
    public var memoryBudget = MemoryBudget.machineDefault

    /// Builds the model, taking every parameter from `weights` (called by ``LuminaNextFamily``'s loading
    /// functions, which check the weights afterwards).
    init(configuration c: LuminaNextConfiguration, weights w: WeightScope) {
        configuration = c
        patchEmbedder = LuminaNextPatchEmbedding(w["patch_embedder"], configuration: c)
        padToken = w["pad_token"].tensor(shape: [c.hiddenSize])
        timeCaptionEmbed = LuminaNextTimeCaptionEmbedding(w["time_caption_embed"], configuration: c)
        layers = (0..<c.numLayers).map { LuminaNextBlock(w["layers"][$0], configuration: c) }
        normOut = LuminaLayerNormContinuous(w["norm_out"], dim: c.hiddenSize, conditioningDim: c.conditioningDim,
                                            outDim: c.patchSize * c.patchSize * c.outChannels)
    }

    /// The full forward (`model(**inputs, return_dict=False)[0]`).
    public func callAsFunction(_ input: LuminaNextInput) throws(TensorError) -> Tensor {
        var state = try prepare(input)
        try runBlocks(&state)
        return try outputHead(state)
    }

    /// Patch, time-caption and rotary embeddings: everything before the first block.
    /// - Throws: `TensorError` naming the argument that is wrong.
    public func prepare(_ input: LuminaNextInput) throws(TensorError) -> LuminaNextState {
        let c = configuration
        let (_, h, w, timesteps) = try validate(input)
        let (rows, cols) = (h / c.patchSize, w / c.patchSize)
        let rope: (cos: Tensor, sin: Tensor)
        switch input.rotary {
        case let .computed(linear, ntk):
            rope = try LuminaNextRotaryEmbedding.tables(headDim: c.headDim, rows: rows, cols: cols,
                                                        linearFactor: linear, ntkFactor: ntk)
        case let .table(t):
            rope = try LuminaNextRotaryEmbedding.tables(fromTable: t, rows: rows, cols: cols, headDim: c.headDim)
        }
        let scale = try proportionalAttentionScale(sequenceLength: rows * cols, baseSequenceLength: input.baseSequenceLength,
                                                   headDim: c.headDim)
        let temb = try timeCaptionEmbed(timesteps: timesteps, caption: input.encoderHiddenStates, mask: input.encoderMask)
        return LuminaNextState(
            tokens: try patchEmbedder(input.hiddenStates),
            context: LuminaNextBlockContext(temb: temb, caption: input.encoderHiddenStates, captionMask: input.encoderMask,
                                            rope: rope, selfAttentionScale: scale),
            grid: (h, w))
    }

    /// TeaCache's modulated input: `layers[0].norm1(tokens, temb)[0]` = `RMSNorm(h)·(1 + scale_msa)`, `[B, S, D]`.
    /// Requires at least one layer.
    public func modulatedInput(_ state: LuminaNextState) throws(TensorError) -> Tensor {
        guard let first = layers.first else {
            throw .invalidArgument(operation: "Lumina-Next modulated input", reason: "the configuration has no layer (num_layers = 0)")
        }
        return try first.norm1(state.tokens, emb: state.context.temb).normalized
    }

    /// Runs every block on `state.tokens`, in place.
    public func runBlocks(_ state: inout LuminaNextState) throws(TensorError) {
        for i in layers.indices { try runBlock(i, &state) }
    }

    /// The number of blocks (`num_layers`).
    var depth: Int { layers.count }

    /// Runs block `index` (`0 ..< num_layers`, in order) on `state.tokens`: the one loop body of
    /// ``runBlocks(_:)`` and of First-Block Cache.
    public func runBlock(_ index: Int, _ state: inout LuminaNextState) throws(TensorError) {
        guard layers.indices.contains(index) else {
            throw .invalidArgument(operation: "Lumina-Next block", reason: "block \(index) is outside 0..<\(layers.count)")
        }
        state.tokens = try layers[index](state.tokens, state.context)
    }

    /// `norm_out` and unpatchify: `[B, out_channels, H, W]`.
    public func outputHead(_ state: LuminaNextState) throws(TensorError) -> Tensor {
        let y = try normOut(state.tokens, conditioning: state.context.temb)
        return try Patches.unpatchify2D(y, height: state.grid.h, width: state.grid.w, patch: configuration.patchSize,
                                        order: .channelsLast)
    }

    /// Checks every argument; returns the batch, the latent size and the timestep values.
    private func validate(_ x: LuminaNextInput) throws(TensorError) -> (Int, Int, Int, [Float]) {
        let c = configuration
        let op = "Lumina-Next forward"
        let z = try LuminaInputChecks.latentAndCaption(x.hiddenStates, x.encoderHiddenStates, inChannels: c.inChannels,
                                                       patch: c.patchSize, captionWidth: (c.crossAttentionDim, "cross_attention_dim"),
                                                       operation: op)
        try memoryBudget.check("\(op) of batch \(z.batch), \(z.imageTokens) image + \(z.textTokens) text tokens",
                               bytes: Double(c.activationBytesEstimate(batch: z.batch, imageTokens: z.imageTokens, textTokens: z.textTokens)))
        try LuminaInputChecks.binaryMask(x.encoderMask, batch: z.batch, length: z.textTokens, name: "encoder_mask",
                                         operation: op, requireToken: true)
        let t = try LuminaInputChecks.timesteps(x.timestep, batch: z.batch, operation: op)
        if case let .table(table) = x.rotary, !table.isFinite {
            throw .invalidArgument(operation: op, reason: "image_rotary_emb holds NaN or infinite values")
        }
        return (z.batch, z.height, z.width, t)
    }
}

// MARK: Embeddings

/// diffusers' `LuminaPatchEmbed`: `[B, C, H, W]` → `[B, (H/p)(W/p), D]`, each token the `(c, ph, pw)`
/// flattening of its patch through `proj`.
private struct LuminaNextPatchEmbedding: Sendable {
    /// `proj`: `[D, C·p²]` with bias.
    let proj: Linear
    /// The patch side.
    let patch: Int

    /// Takes `proj` of the scope.
    init(_ weights: WeightScope, configuration c: LuminaNextConfiguration) {
        proj = Linear(weights["proj"], in: c.patchSize * c.patchSize * c.inChannels, out: c.hiddenSize)
        patch = c.patchSize
    }

    /// Embeds `[B, C, H, W]` (H and W multiples of the patch side).
    func callAsFunction(_ x: Tensor) throws(TensorError) -> Tensor {
        try proj(Patches.patchify2D(x, patch: patch, order: .channelsFirst))
    }
}

/// diffusers' `LuminaCombinedTimestepCaptionEmbedding`: `temb = MLP_t(sin(t)) + proj(LayerNorm(masked mean
/// of the caption))`, `[B, min(D, 1024)]`.
///
/// `sin(t)` is the 256-channel sinusoid with cos first and shift 0 of the raw timestep (Lumina's t is in
/// 0…1); the caption is averaged over the tokens its mask selects.
struct LuminaNextTimeCaptionEmbedding: Sendable {
    /// `timestep_embedder`.
    let timestepEmbedder: TimestepMLP
    /// `caption_embedder.0`: LayerNorm over the caption width (ε 1e-5).
    let captionNorm: AffineLayerNorm
    /// `caption_embedder.1`.
    let captionProjection: Linear

    /// Takes `timestep_embedder` and `caption_embedder` of the scope.
    init(_ weights: WeightScope, configuration c: LuminaNextConfiguration) {
        let dt = c.conditioningDim
        timestepEmbedder = TimestepMLP(weights["timestep_embedder"], in: LuminaWidths.timestepChannels, hidden: dt, out: dt)
        captionNorm = AffineLayerNorm(weights["caption_embedder.0"], dim: c.crossAttentionDim, eps: 1e-5)
        captionProjection = Linear(weights["caption_embedder.1"], in: c.crossAttentionDim, out: dt)
    }

    /// `temb` for one timestep per sample, captions `[B, L, E]` and their 0/1 masks `[B, L]` (each
    /// selecting at least one token).
    func callAsFunction(timesteps: [Float], caption: Tensor, mask: Tensor) throws(TensorError) -> Tensor {
        let features = try sinusoidalTimestepEmbedding(timesteps, dim: LuminaWidths.timestepChannels, flipSinToCos: true,
                                                       downscaleFreqShift: 0)
        let time = try timestepEmbedder(features)
        return try time + captionProjection(captionNorm(Self.maskedMean(caption, mask: mask)))
    }

    /// `Σ_l x[b, l]·m[b, l] / Σ_l m[b, l]`: `[B, L, E]` with `[B, L]` → `[B, E]` (Float32 sums).
    static func maskedMean(_ x: Tensor, mask: Tensor) throws(TensorError) -> Tensor {
        let (b, l, e) = (x.shape[0], x.shape[1], x.shape[2])
        let m = mask.scalars
        return x.withUnsafeBufferPointer { px in
            Tensor(uninitializedShape: [b, e]) { out in
                for i in 0..<b {
                    let o = out.baseAddress! + i * e
                    o.update(repeating: 0, count: e)
                    var total: Float = 0
                    for t in 0..<l {
                        let w = m[i * l + t]
                        total += w
                        let row = px.baseAddress! + (i * l + t) * e
                        for j in 0..<e { o[j] += row[j] * w }
                    }
                    for j in 0..<e { o[j] /= total }
                }
            }
        }
    }
}

/// Lumina-Next's 2-D rotary embedding: diffusers' `get_2d_rotary_pos_embed_lumina` and the scaling
/// factors `LuminaText2ImgPipeline` passes, computed here from sizes.
///
/// For a head of `Dh` channels, each axis (rows, columns) gets `Dh/4` frequencies
/// `f_i = 1 / (θ·ntk)^(4i/Dh) / linear` (θ = 10000), and the `Dh/2` complex rotations of a token at
/// `(row, col)` alternate between the axes: `[row·f₀, col·f₀, row·f₁, col·f₁, …]`. Rotation k turns the
/// channel pair `(2k, 2k+1)`. Everything is computed in Float32 as diffusers does (frequencies, the
/// angle product), with each cos/sin correctly rounded.
enum LuminaNextRotaryEmbedding {
    /// The rotary base.
    static let theta: Float = 10000

    /// The complex table `[rows, cols, Dh/2]` as `(real, imaginary)` pairs: `[rows, cols, Dh/2, 2]`
    /// (what `torch.view_as_real(get_2d_rotary_pos_embed_lumina(Dh, rows, cols, linear, ntk))` holds).
    static func table(
        headDim: Int, rows: Int, cols: Int, linearFactor: Double = 1, ntkFactor: Double = 1
    ) throws(TensorError) -> Tensor {
        let (cosT, sinT) = try angles(headDim: headDim, rows: rows, cols: cols, linearFactor: linearFactor,
                                      ntkFactor: ntkFactor)
        let half = headDim / 2
        var out = [Float](repeating: 0, count: rows * cols * half * 2)
        for t in 0..<(rows * cols) {
            for k in 0..<half {
                out[(t * half + k) * 2] = cosT[t * half + k]
                out[(t * half + k) * 2 + 1] = sinT[t * half + k]
            }
        }
        return try Tensor(shape: [rows, cols, half, 2], scalars: out)
    }

    /// cos/sin tables `[rows·cols, Dh]` for ``RotaryEmbedding/apply(_:cos:sin:heads:layout:)`` with the
    /// interleaved layout, tokens in row-major order.
    static func tables(
        headDim: Int, rows: Int, cols: Int, linearFactor: Double = 1, ntkFactor: Double = 1
    ) throws(TensorError) -> (cos: Tensor, sin: Tensor) {
        let (c, s) = try angles(headDim: headDim, rows: rows, cols: cols, linearFactor: linearFactor, ntkFactor: ntkFactor)
        return (try Tensor(shape: [rows * cols, headDim], scalars: c.flatMap { [$0, $0] }),
                try Tensor(shape: [rows * cols, headDim], scalars: s.flatMap { [$0, $0] }))
    }

    /// cos/sin tables `[rows·cols, Dh]` from a complex table `[R, C, Dh/2, 2]` (real, imaginary) with
    /// `R ≥ rows`, `C ≥ cols`: its top-left `rows × cols` corner, as diffusers' patch embedder slices it.
    static func tables(fromTable table: Tensor, rows: Int, cols: Int, headDim: Int) throws(TensorError) -> (cos: Tensor, sin: Tensor) {
        let s = table.shape
        guard s.count == 4, s[2] == headDim / 2, s[3] == 2, s[0] >= rows, s[1] >= cols else {
            throw .shapeMismatch(operation: "Lumina-Next rotary table", shapes: [s],
                                 reason: "image_rotary_emb must be [≥ \(rows), ≥ \(cols), \(headDim / 2), 2] "
                                    + "(a complex table as (real, imaginary) pairs) for a \(rows)×\(cols) token grid")
        }
        let half = headDim / 2
        let v = table.scalars
        var c = [Float](repeating: 0, count: rows * cols * headDim), sn = c
        for r in 0..<rows {
            for col in 0..<cols {
                let src = (r * s[1] + col) * half * 2, dst = (r * cols + col) * headDim
                for k in 0..<half {
                    c[dst + 2 * k] = v[src + 2 * k]; c[dst + 2 * k + 1] = v[src + 2 * k]
                    sn[dst + 2 * k] = v[src + 2 * k + 1]; sn[dst + 2 * k + 1] = v[src + 2 * k + 1]
                }
            }
        }
        return (try Tensor(shape: [rows * cols, headDim], scalars: c), try Tensor(shape: [rows * cols, headDim], scalars: sn))
    }

    /// cos and sin of every rotation, `[rows·cols·Dh/2]` each.
    static func angles(
        headDim: Int, rows: Int, cols: Int, linearFactor: Double, ntkFactor: Double
    ) throws(TensorError) -> ([Float], [Float]) {
        guard headDim > 0, headDim % 4 == 0, rows > 0, cols > 0 else {
            throw .invalidArgument(operation: "Lumina-Next rotary table",
                                   reason: "needs a head dimension divisible by 4 and a non-empty grid, got \(headDim), \(rows)×\(cols)")
        }
        guard linearFactor.isFinite, linearFactor > 0, ntkFactor.isFinite, ntkFactor > 0 else {
            throw .invalidArgument(operation: "Lumina-Next rotary table",
                                   reason: "linear_factor \(linearFactor) and ntk_factor \(ntkFactor) must be finite and positive")
        }
        let axisDim = headDim / 2, quarter = headDim / 4
        // diffusers: freqs = 1 / ((θ·ntk) ** (arange(0, d, 2) / d)) / linear, in float32.
        let base = Float(Double(theta) * ntkFactor), linear = Float(linearFactor)
        let freqs: [Float] = (0..<quarter).map { i in
            let e = Float(2 * i) / Float(axisDim)
            return (1 / Float(Foundation.pow(Double(base), Double(e)))) / linear
        }
        let half = headDim / 2
        var c = [Float](repeating: 0, count: rows * cols * half), s = c
        for r in 0..<rows {
            for col in 0..<cols {
                let t = r * cols + col
                for i in 0..<quarter {
                    for (k, p) in [(2 * i, r), (2 * i + 1, col)] {
                        let angle = Double(Float(p) * freqs[i])
                        c[t * half + k] = Float(Foundation.cos(angle))
                        s[t * half + k] = Float(Foundation.sin(angle))
                    }
                }
            }
        }
        return (c, s)
    }
}

/// The proportional-attention softmax scale of diffusers' Lumina processors:
/// `√(log_base(S)) · 1/√Dh` (computed in Double, as Python does), or `1/√Dh` without a base.
///
/// - Throws: `invalidArgument` when `log_base(S)` is negative or undefined (base ≤ 1 with S > 1), where
///   diffusers raises a Python math error.
func proportionalAttentionScale(
    sequenceLength s: Int, baseSequenceLength base: Double?, headDim: Int
) throws(TensorError) -> Float {
    let attnScale = 1 / Double(headDim).squareRoot()
    guard let base else { return Float(attnScale) }
    let ratio = Foundation.log(Double(s)) / Foundation.log(base)
    guard base > 0, base != 1, ratio.isFinite, ratio >= 0 else {
        throw .invalidArgument(operation: "Lumina proportional attention",
                               reason: "base_sequence_length \(base) gives log_base(\(s)) = \(ratio); use a base > 1")
    }
    return Float(ratio.squareRoot() * attnScale)
}

// MARK: Blocks

/// diffusers' `LuminaNextDiTBlock`:
///
///     (x̂, g_msa, s_mlp, g_mlp) = norm1(h, temb)                   x̂ = RMSNorm(h)·(1 + s_msa)
///     a = attn1(x̂)  (self, rotary q and k, proportional scale)
///     c = attn2(x̂, norm1_context(caption))  (rotary q only, caption key mask)
///     h = h + tanh(g_msa)·norm2(to_out(a + tanh(gate)·c))          gate per head
///     h = h + tanh(g_mlp)·ffn_norm2(ff(ffn_norm1(h)·(1 + s_mlp)))
///
/// Both attentions have `heads` query heads over `kv_heads` key/value heads, optional LayerNorms of the
/// full query/key widths (`qk_norm`), no biases; `attn1` has no output projection, `attn2`'s `to_out.0`
/// projects their gated sum. The norms are fused with their modulation and gated residual updates
/// (``LuminaKernels``).
private struct LuminaNextBlock: Sendable {
    /// `norm1`.
    let norm1: LuminaRMSNormZero
    /// `attn1.to_q` (reads `x̂`).
    let toQ1: Linear
    /// `attn1.to_k` (reads `x̂`).
    let toK1: Linear
    /// `attn1.to_v` (reads `x̂`).
    let toV1: Linear
    /// `attn2.to_q` (reads `x̂`).
    let toQ2: Linear
    /// `attn2.to_k` (reads the normalised caption).
    let toK2: Linear
    /// `attn2.to_v` (reads the normalised caption).
    let toV2: Linear
    /// `attn1.norm_q`, `attn1.norm_k`, `attn2.norm_q`, `attn2.norm_k` (with `qk_norm`).
    let qkNorms: (q1: AffineLayerNorm, k1: AffineLayerNorm, q2: AffineLayerNorm, k2: AffineLayerNorm)?
    /// `attn2.to_out.0`.
    let toOut: Linear
    /// `tanh(gate)` repeated over each head's channels, `[heads·Dh]`.
    let crossGate: Tensor
    /// `norm1_context`: the caption's RMSNorm.
    let norm1Context: RMSNorm
    /// `norm2`: the attention output's RMSNorm.
    let norm2: RMSNorm
    /// `ffn_norm1`: the feed-forward input's RMSNorm.
    let ffnNorm1: RMSNorm
    /// `ffn_norm2`: the feed-forward output's RMSNorm.
    let ffnNorm2: RMSNorm
    /// `feed_forward`.
    let feedForward: LuminaFeedForward
    /// The head layout.
    let layout: LuminaHeads

    /// Takes every parameter of one block's scope (`layers.<i>`).
    init(_ w: WeightScope, configuration c: LuminaNextConfiguration) {
        let d = c.hiddenSize, l = c.heads
        let (qw, kvw) = (l.queryWidth, l.kvWidth)
        layout = l
        norm1 = LuminaRMSNormZero(w["norm1"], dim: d, eps: c.normEps)
        toQ1 = Linear(w["attn1.to_q"], in: d, out: qw, bias: false)
        toK1 = Linear(w["attn1.to_k"], in: d, out: kvw, bias: false)
        toV1 = Linear(w["attn1.to_v"], in: d, out: kvw, bias: false)
        toQ2 = Linear(w["attn2.to_q"], in: d, out: qw, bias: false)
        toK2 = Linear(w["attn2.to_k"], in: c.crossAttentionDim, out: kvw, bias: false)
        toV2 = Linear(w["attn2.to_v"], in: c.crossAttentionDim, out: kvw, bias: false)
        qkNorms = c.qkNorm
            ? (AffineLayerNorm(w["attn1.norm_q"], dim: qw, eps: 1e-5), AffineLayerNorm(w["attn1.norm_k"], dim: kvw, eps: 1e-5),
               AffineLayerNorm(w["attn2.norm_q"], dim: qw, eps: 1e-5), AffineLayerNorm(w["attn2.norm_k"], dim: kvw, eps: 1e-5))
            : nil
        toOut = Linear(w["attn2.to_out.0"], in: qw, out: d, bias: false)
        let gate = w["gate"].tensor(shape: [l.heads])
        // A placeholder `gate` (missing or mis-shaped: the load then fails and reports it; or a footprint
        // count) leaves zeros: such a model is never run.
        let g = gate.count == l.heads ? gate.scalars.map { Foundation.tanh($0) } : Array(repeating: 0, count: l.heads)
        crossGate = Tensor(uninitializedShape: [qw]) { out in
            for k in 0..<qw { out[k] = g[k / l.headDim] }
        }
        norm1Context = RMSNorm(w["norm1_context"], dim: c.crossAttentionDim, eps: c.normEps)
        norm2 = RMSNorm(w["norm2"], dim: d, eps: c.normEps)
        ffnNorm1 = RMSNorm(w["ffn_norm1"], dim: d, eps: c.normEps)
        ffnNorm2 = RMSNorm(w["ffn_norm2"], dim: d, eps: c.normEps)
        feedForward = LuminaFeedForward(w["feed_forward"], dim: d, inner: c.ffnInnerDim)
    }

    /// Runs the block on the image tokens `h` `[B, S, D]`.
    func callAsFunction(_ h: Tensor, _ ctx: LuminaNextBlockContext) throws(TensorError) -> Tensor {
        let n = try norm1(h, emb: ctx.temb)
        let x = n.normalized
        // The optional q/k LayerNorms (over the whole width) and the rotary embedding in one pass per row.
        let tables = (cos: ctx.rope.cos, sin: ctx.rope.sin, layout: RotaryEmbedding.Layout.interleaved)
        func prepared(_ t: Tensor, _ norm: AffineLayerNorm?, heads: Int, rotate: Bool) throws(TensorError) -> Tensor {
            let n = norm.map { HeadNormalisation(.layer, weight: $0.weight, bias: $0.bias, eps: $0.eps, perHead: false) }
            if !rotate && n == nil { return t }
            return try preparedHeads([HeadSegment(t, norm: n)], width: t.shape[2], heads: heads, rope: rotate ? tables : nil)
        }
        let q1 = try prepared(toQ1(x), qkNorms?.q1, heads: layout.heads, rotate: true)
        let k1 = try prepared(toK1(x), qkNorms?.k1, heads: layout.kvHeads, rotate: true)
        let q2 = try prepared(toQ2(x), qkNorms?.q2, heads: layout.heads, rotate: true)
        let v1 = try toV1(x)
        let caption = try norm1Context(ctx.caption)
        let k2 = try prepared(toK2(caption), qkNorms?.k2, heads: layout.kvHeads, rotate: false)
        let v2 = try toV2(caption)
        let selfOut = try luminaAttention(q: q1, k: k1, v: v1, layout: layout, keyMask: nil, scale: ctx.selfAttentionScale,
                                          precision: toOut.weight.precision)
        let crossOut = try luminaAttention(q: q2, k: k2, v: v2, layout: layout, keyMask: ctx.captionMask, scale: nil,
                                           precision: toOut.weight.precision)
        let mixed = try LuminaKernels.addingScaledColumns(selfOut, crossOut, columns: crossGate)
        var out = try LuminaKernels.addingGatedRMSNorm(h, toOut(mixed), weight: norm2.weight, eps: norm2.eps, gate: n.gateMSA)
        let mlp = try feedForward(LuminaKernels.rmsNormScaled(out, weight: ffnNorm1.weight, eps: ffnNorm1.eps, scale: n.scaleMLP))
        out = try LuminaKernels.addingGatedRMSNorm(out, mlp, weight: ffnNorm2.weight, eps: ffnNorm2.eps, gate: n.gateMLP)
        return out
    }
}
