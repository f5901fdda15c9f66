import Tensors

/// The tensor arguments of one `EasyAnimateTransformer3DModel.forward` call.
///
/// diffusers' `timestep_cond` is not an argument here: the 0.42.1 class builds its `time_embedding`
/// without a condition projection, so passing one fails there.
public struct EasyAnimateInput: LatentTimestepInput, Sendable {
    /// The latent video `[B, C, F, H, W]`.
    public var hiddenStates: Tensor
    /// The timestep per sample `[B]` (or `[1]`, broadcast over the batch), on the 0…1000 scale.
    public var timestep: Tensor
    /// Text-encoder features `[B, L, text_embed_dim]`.
    public var encoderHiddenStates: Tensor
    /// Second text-encoder (T5) features `[B, L₅, text_embed_dim_t5]`, for configurations with
    /// `text_embed_dim_t5`; their projection follows the first text tokens.
    public var encoderHiddenStatesT5: Tensor?
    /// Inpainting latents `[B, Cᵢ, F, H, W]` (I2V / V2V models: mask and masked-video latents),
    /// concatenated to `hidden_states` along the channels before the patch embedding.
    public var inpaintLatents: Tensor?
    /// Control latents `[B, C_c, F, H, W]` (control models), concatenated after the inpainting latents.
    public var controlLatents: Tensor?

    /// Bundles the arguments (shapes as documented on each property).
    public init(hiddenStates: Tensor, timestep: Tensor, encoderHiddenStates: Tensor, encoderHiddenStatesT5: Tensor? = nil,
                inpaintLatents: Tensor? = nil, controlLatents: Tensor? = nil) {
        self.hiddenStates = hiddenStates
        self.timestep = timestep
        self.encoderHiddenStates = encoderHiddenStates
        self.encoderHiddenStatesT5 = encoderHiddenStatesT5
        self.inpaintLatents = inpaintLatents
        self.controlLatents = controlLatents
    }
}

/// Everything computed before the block stack for one call, and the two token streams as they go
/// through it.
public struct EasyAnimateState: Sendable {
    /// Video tokens `[B, S, D]`: the patch embedding h_in after ``EasyAnimateTransformer/prepare(_:)``,
    /// then the output of the last block run, and after ``EasyAnimateTransformer/finishBlocks(_:)``
    /// `norm_out(norm_final(·), temb)`.
    public internal(set) var video: Tensor
    /// Text tokens `[B, L, D]`: the text projection(s), then the output of the last block run.
    public internal(set) var text: Tensor
    /// The timestep embedding `temb` `[B, time_embed_dim]`.
    public internal(set) var temb: Tensor
    /// Rotary tables over the joint `[text; video]` sequence, `[L + S, head_dim]` each (identity rows for
    /// the text tokens, which diffusers leaves unrotated).
    var rope: (cos: Tensor, sin: Tensor)
    /// The latent grid `(F, H, W)` before patching.
    public let grid: (f: Int, h: Int, w: Int)
}

/// diffusers 0.42.1 `EasyAnimateTransformer3DModel` (EasyAnimate V5 / V5.1: MMDiT blocks with joint
/// text–video attention and 3-D rotary embeddings; T2V, and I2V / V2V / control through extra latent
/// channels) on the CPU in float32.
///
/// The forward is split the way TeaCache needs it: ``prepare(_:)`` (timestep, patch and text embeddings,
/// rotary tables), ``runBlocks(_:)`` (the blocks, then `norm_final` and `norm_out`: EasyAnimate's own
/// TeaCache caches the video tokens *after* the output norms), ``outputHead(_:)`` (`proj_out` and
/// unpatchify). ``callAsFunction(_:)`` chains them. Build one with ``EasyAnimateFamily``'s loaders.
///
/// Precision: diffusers' `FP32LayerNorm`s and the float32 rotary tables are float32 already with float32
/// weights, so every computation here is float32 (rotary frequencies in Double, as the CogVideoX port).
public struct EasyAnimateTransformer: Sendable {
    /// The validated configuration.
    public let configuration: EasyAnimateConfiguration
    /// The memory a forward may plan to use: ``prepare(_:)`` estimates the activations of the input shapes
    /// (``EasyAnimateConfiguration/activationBytesEstimate(batch:videoTokens:textTokens:)``) and refuses
    /// inputs beyond it with `TensorError.memoryBudgetExceeded`.
    public var memoryBudget = MemoryBudget.machineDefault
    /// `time_embedding` (after the sinusoidal `time_proj` of width D).
    private let timeEmbedding: EasyAnimateTimeEmbedding
    /// `proj`: the per-frame Conv2d patch embedding.
    private let patchEmbedding: PatchEmbedding3D
    /// `text_proj`.
    private let textProjection: EasyAnimateTextProjection
    /// `text_proj_t5`, for configurations with `text_embed_dim_t5`.
    private let textProjectionT5: EasyAnimateTextProjection?
    /// `transformer_blocks`.
    private let blocks: [EasyAnimateBlock]
    /// `norm_final`: a LayerNorm of the video tokens after the last block.
    private let normFinal: EasyAnimateLayerNorm
    /// `norm_out`: LayerNorm modulated by `temb` (shift first).
    private let normOut: EasyAnimateOutputNorm
    /// `proj_out`.
    private let projOut: Linear

    /// Builds the model, taking every parameter from `weights` by its diffusers name (called by
    /// ``EasyAnimateFamily``'s loading functions, which check the weights afterwards).
    init(configuration c: EasyAnimateConfiguration, weights w: WeightScope) {
        configuration = c
        let d = c.innerDim
        timeEmbedding = EasyAnimateTimeEmbedding(w["time_embedding"], configuration: c)
        // `proj`: a Conv2d with kernel = stride = p on every latent frame.
        patchEmbedding = PatchEmbedding3D(w["proj"], inChannels: c.patchInChannels, outChannels: c.innerDim,
                                          framePatch: (c.patch, c.patch))
        textProjection = EasyAnimateTextProjection(w["text_proj"], in: c.textEmbedDim, configuration: c)
        textProjectionT5 = c.textEmbedDimT5.map { EasyAnimateTextProjection(w["text_proj_t5"], in: $0, configuration: c) }
        blocks = (0..<c.numLayers).map { EasyAnimateBlock(w["transformer_blocks"][$0], configuration: c, mmdit: c.isMMDiT($0)) }
        normFinal = EasyAnimateLayerNorm(w["norm_final"], dim: d, eps: c.normEps, affine: c.normElementwiseAffine)
        normOut = EasyAnimateOutputNorm(w["norm_out"], configuration: c)
        projOut = Linear(w["proj_out"], in: d, out: c.outputTokenWidth)
    }

    /// The full forward: `output` of diffusers' `forward(..., return_dict=False)[0]`, `[B, out_channels, F, H, W]`.
    public func callAsFunction(_ input: EasyAnimateInput) throws(TensorError) -> Tensor {
        var state = try prepare(input)
        try runBlocks(&state)
        return try outputHead(state)
    }

    /// Timestep, patch and text embeddings and the rotary tables: everything before the first block.
    /// - Throws: `TensorError` naming the argument whose shape or values are wrong, or
    ///   `memoryBudgetExceeded` for inputs beyond ``memoryBudget``.
    public func prepare(_ input: EasyAnimateInput) throws(TensorError) -> EasyAnimateState {
        let (grid, textLength, timesteps) = try validate(input)
        let c = configuration
        let p = c.patch
        var latent = input.hiddenStates
        let extra = [input.inpaintLatents, input.controlLatents].compactMap { $0 }
        if !extra.isEmpty { latent = try Tensor.concatenate([latent] + extra, axis: 1) }
        var text = try textProjection(input.encoderHiddenStates)
        if let t5 = input.encoderHiddenStatesT5, let textProjectionT5 {
            text = try Tensor.concatenate([text, textProjectionT5(t5)], axis: 1)
        }
        let video = try EasyAnimateRotaryEmbedding.videoTables(
            headDim: c.attentionHeadDim, frames: grid.f, height: grid.h / p, width: grid.w / p, patch: p)
        return EasyAnimateState(
            video: try patchEmbedding(latent), text: text, temb: try timeEmbedding(timesteps),
            rope: try rotaryTables(video, unrotatedLeadingRows: textLength), grid: grid)
    }

    /// TeaCache's modulated input: the video half of `transformer_blocks[0].norm1(h_in, text, temb)`,
    /// `LN(h_in)·(1 + scale) + shift`, `[B, S, D]` (EasyAnimate's TeaCache compares it).
    /// - Throws: when the configuration has no block (`num_layers` = 0).
    public func modulatedInput(_ state: EasyAnimateState) throws(TensorError) -> Tensor {
        guard let first = blocks.first else {
            throw .invalidArgument(operation: "EasyAnimate modulated input",
                                   reason: "the configuration has no transformer block (num_layers = 0)")
        }
        return try first.norm1.video(state.video, temb: state.temb)
    }

    /// Runs every block, then the output norms (``finishBlocks(_:)``), on the state in place.
    public func runBlocks(_ state: inout EasyAnimateState) throws(TensorError) {
        for i in 0..<depth { try runBlock(i, &state) }
        try finishBlocks(&state)
    }

    /// The number of transformer blocks (`num_layers`).
    var depth: Int { blocks.count }

    /// Runs block `index` (`0 ..< num_layers`, in order) on both streams: the one loop body of
    /// ``runBlocks(_:)`` and of First-Block Cache.
    public func runBlock(_ index: Int, _ state: inout EasyAnimateState) throws(TensorError) {
        guard blocks.indices.contains(index) else {
            throw .invalidArgument(operation: "EasyAnimate block", reason: "block \(index) is outside 0..<\(blocks.count)")
        }
        try blocks[index](video: &state.video, text: &state.text, temb: state.temb, rope: state.rope)
    }

    /// `norm_out(norm_final(video), temb)`: the end of the span EasyAnimate's TeaCache caches (its
    /// `norm_final` runs over `[text; video]` and keeps the video part — per-token LayerNorm, the same values).
    public func finishBlocks(_ state: inout EasyAnimateState) throws(TensorError) {
        state.video = try normOut(normFinal(state.video), temb: state.temb)
    }

    /// `proj_out` and unpatchify to `[B, out_channels, F, H, W]` (channel-first patches, as diffusers'
    /// `reshape(B, F, h, w, C, p, p)`).
    public func outputHead(_ state: EasyAnimateState) throws(TensorError) -> Tensor {
        let p = configuration.patch
        return try Patches.unpatchify3D(projOut(state.video), grid: state.grid, patch: (1, p, p), order: .channelsFirst)
    }

    /// Checks the arguments against the configuration and the memory budget; returns the latent grid, the
    /// joint text length and one timestep per sample.
    private func validate(
        _ x: EasyAnimateInput
    ) throws(TensorError) -> (grid: (f: Int, h: Int, w: Int), textLength: Int, timesteps: [Float]) {
        let c = configuration
        func fail(_ reason: String) -> TensorError { .invalidArgument(operation: "EasyAnimate forward", reason: reason) }
        let h = x.hiddenStates.shape
        guard h.count == 5, h.allSatisfy({ $0 > 0 }) else {
            throw fail("hidden_states must be [B, C, F, H, W] with every extent > 0, got \(h)")
        }
        let (b, ch, f, hh, ww) = (h[0], h[1], h[2], h[3], h[4])
        let p = c.patch
        guard hh % p == 0, ww % p == 0 else {
            throw fail("the latent height \(hh) and width \(ww) must be multiples of patch_size \(p)")
        }
        guard ch == c.latentOutChannels else {
            throw fail("hidden_states has \(ch) channels but out_channels is \(c.latentOutChannels): diffusers unpatchifies "
                       + "the output with the channel count of hidden_states, so they must agree")
        }
        var channels = ch
        for (name, t) in [("inpaint_latents", x.inpaintLatents), ("control_latents", x.controlLatents)] {
            guard let t else { continue }
            let s = t.shape
            guard s.count == 5, s[0] == b, s[1] > 0, Array(s[2...]) == [f, hh, ww] else {
                throw fail("\(name) must be [\(b), C, \(f), \(hh), \(ww)] (the latent's batch and grid), got \(s)")
            }
            channels += s[1]
        }
        guard channels == c.patchInChannels else {
            throw fail("hidden_states (\(ch) channels) with inpaint_latents and control_latents gives \(channels) channels, "
                       + "but in_channels is \(c.patchInChannels)")
        }
        let e = x.encoderHiddenStates.shape
        guard e.count == 3, e[0] == b, e[2] == c.textEmbedDim else {
            throw fail("encoder_hidden_states must be [\(b), L, text_embed_dim = \(c.textEmbedDim)], got \(e)")
        }
        var textLength = e[1]
        if let t5 = x.encoderHiddenStatesT5 {
            guard let width = c.textEmbedDimT5 else {
                throw fail("encoder_hidden_states_t5 was given but the configuration has no text_embed_dim_t5")
            }
            guard t5.rank == 3, t5.shape[0] == b, t5.shape[2] == width else {
                throw fail("encoder_hidden_states_t5 must be [\(b), L5, text_embed_dim_t5 = \(width)], got \(t5.shape)")
            }
            textLength += t5.shape[1]
        }
        let t = x.timestep
        guard t.rank == 1, t.count == b || t.count == 1 else {
            throw fail("timestep must be [\(b)] or [1], got \(t.shape)")
        }
        let named: [(String, Tensor?)] = [("hidden_states", x.hiddenStates), ("timestep", t),
                                          ("encoder_hidden_states", x.encoderHiddenStates),
                                          ("encoder_hidden_states_t5", x.encoderHiddenStatesT5),
                                          ("inpaint_latents", x.inpaintLatents), ("control_latents", x.controlLatents)]
        for case let (name, tensor?) in named where !tensor.isFinite {
            throw fail("\(name) contains NaN or infinity")
        }
        let s = f * (hh / p) * (ww / p)
        try memoryBudget.check("EasyAnimate forward of batch \(b), \(s) video + \(textLength) text tokens",
                               bytes: Double(c.activationBytesEstimate(batch: b, videoTokens: s, textTokens: textLength)))
        let v = t.scalars
        return ((f, hh, ww), textLength, v.count == b ? v : Array(repeating: v[0], count: b))
    }
}

// MARK: Embeddings

/// `time_proj` + `time_embedding`: the sinusoidal features of the timestep (width D, `flip_sin_to_cos`,
/// shift `freq_shift`) through `linear_2(act(linear_1(·)))` into `temb` `[B, time_embed_dim]`.
private struct EasyAnimateTimeEmbedding: Sendable {
    /// `linear_1` and `linear_2`.
    let mlp: TimestepMLP
    /// `timestep_activation_fn`.
    let activation: Activation
    /// Sinusoid width (the model width D).
    let channels: Int
    /// Cosines first.
    let flipSinToCos: Bool
    /// `downscale_freq_shift`.
    let shift: Float

    /// Takes `linear_1` `[E, D]` and `linear_2` `[E, E]` of the scope.
    init(_ w: WeightScope, configuration c: EasyAnimateConfiguration) {
        mlp = TimestepMLP(w, in: c.innerDim, hidden: c.timeEmbedDim, out: c.timeEmbedDim)
        // validate() has refused any other activation name.
        activation = c.timestepActivation ?? .silu
        channels = c.innerDim
        flipSinToCos = c.flipSinToCos
        shift = Float(c.freqShift)
    }

    /// `temb` `[B, E]` for one timestep per sample.
    func callAsFunction(_ timesteps: [Float]) throws(TensorError) -> Tensor {
        let features = try sinusoidalTimestepEmbedding(timesteps, dim: channels, flipSinToCos: flipSinToCos,
                                                       downscaleFreqShift: shift)
        return try mlp.linear2(mlp.linear1(features, activation: activation))
    }
}

/// `text_proj` / `text_proj_t5`: a linear layer, preceded by an RMSNorm with a learned scale (ε = 1e-6)
/// when `add_norm_text_encoder` is set (then the scope holds `0` = the norm and `1` = the linear layer).
private struct EasyAnimateTextProjection: Sendable {
    /// The RMSNorm of `add_norm_text_encoder`.
    let norm: RMSNorm?
    /// The projection to the model width.
    let linear: Linear

    /// Takes the scope's parameters for features of width `inFeatures`. With `add_norm_text_encoder`
    /// diffusers sizes the norm by `text_embed_dim` for both text streams (validation makes the T5 width
    /// equal to it then).
    init(_ w: WeightScope, in inFeatures: Int, configuration c: EasyAnimateConfiguration) {
        if c.addNormTextEncoder {
            norm = RMSNorm(w["0"], dim: c.textEmbedDim, eps: EasyAnimateConfiguration.textNormEps)
            linear = Linear(w["1"], in: inFeatures, out: c.innerDim)
        } else {
            norm = nil
            linear = Linear(w, in: inFeatures, out: c.innerDim)
        }
    }

    /// `[B, L, in]` → `[B, L, D]`.
    func callAsFunction(_ x: Tensor) throws(TensorError) -> Tensor {
        guard let norm else { return try linear(x) }
        return try linear(norm(x))
    }
}

/// The 3-D rotary table of `EasyAnimateRotaryPosEmbed`: diffusers' `get_3d_rotary_pos_embed` (the
/// same function the CogVideoX 1.0 pipelines call, whose port ``CogVideoXRotaryEmbedding`` provides) with
/// the crop region of the patched grid inside the fixed `90/p × 60/p` base (width × height). Internal for
/// its closed-form test.
enum EasyAnimateRotaryEmbedding {
    /// cos/sin tables `[F·h·w, head_dim]` of a patched `F × h × w` grid, tokens in (frame, row, column) order.
    static func videoTables(
        headDim: Int, frames f: Int, height gh: Int, width gw: Int, patch p: Int
    ) throws(TensorError) -> (cos: Tensor, sin: Tensor) {
        let base = EasyAnimateConfiguration.rotaryBase
        let crop = CogVideoXRotaryEmbedding.resizeCropRegion(grid: (gh, gw), baseWidth: base.width / p,
                                                             baseHeight: base.height / p)
        let rows = CogVideoXRotaryEmbedding.linspace(start: Float(crop.top),
                                                     end: Float(Double(crop.bottom * (gh - 1)) / Double(gh)), steps: gh)
        let columns = CogVideoXRotaryEmbedding.linspace(start: Float(crop.left),
                                                        end: Float(Double(crop.right * (gw - 1)) / Double(gw)), steps: gw)
        let times = CogVideoXRotaryEmbedding.linspace(start: 0, end: Float(Double(f * (f - 1)) / Double(f)), steps: f)
        return try CogVideoXRotaryEmbedding.tables(headDim: headDim, frames: times, rows: rows, columns: columns)
    }
}

// MARK: Norms

/// A LayerNorm over the last axis, with a learned scale and bias when `norm_elementwise_affine` is set
/// (`nn.LayerNorm` / diffusers' `FP32LayerNorm`, the same in float32).
private struct EasyAnimateLayerNorm: Sendable {
    /// `weight` `[D]`, or nil without affine parameters.
    let weight: Tensor?
    /// `bias` `[D]`, or nil without affine parameters.
    let bias: Tensor?
    /// The variance epsilon.
    let eps: Float

    /// Takes `weight` and `bias` of the scope when `affine`.
    init(_ w: WeightScope, dim: Int, eps: Float, affine: Bool) {
        weight = affine ? w.tensor("weight", shape: [dim]) : nil
        bias = affine ? w.tensor("bias", shape: [dim]) : nil
        self.eps = eps
    }

    /// Normalises `[..., D]`.
    func callAsFunction(_ x: Tensor) throws(TensorError) -> Tensor {
        try layerNorm(x, weight: weight, bias: bias, eps: eps)
    }

    /// `LN(x)·(1 + scale) + shift` for `x` `[B, S, D]` and per-sample `scale`, `shift` `[B, D]`.
    func modulated(_ x: Tensor, scale: Tensor, shift: Tensor) throws(TensorError) -> Tensor {
        if weight == nil, bias == nil { return try layerNormModulated(x, eps: eps, scale: scale, shift: shift) }
        return try modulate(callAsFunction(x), scale: scale, shift: shift)
    }
}

/// `EasyAnimateLayerNormZero`: `linear(silu(temb))` → (shift, scale, gate, text shift, text scale, text
/// gate), and both streams normalised by the same LayerNorm and modulated by their own shift and scale.
private struct EasyAnimateNormZero: Sendable {
    /// `linear` `[6D, time_embed_dim]`.
    let linear: Linear
    /// `norm`.
    let norm: EasyAnimateLayerNorm

    /// Takes `linear` and `norm` of the scope.
    init(_ w: WeightScope, configuration c: EasyAnimateConfiguration) {
        linear = Linear(w["linear"], in: c.timeEmbedDim, out: 6 * c.innerDim)
        norm = EasyAnimateLayerNorm(w["norm"], dim: c.innerDim, eps: c.normEps, affine: c.normElementwiseAffine)
    }

    /// The modulated video and text tokens and the gates of the video and text updates.
    func callAsFunction(
        video: Tensor, text: Tensor, temb: Tensor
    ) throws(TensorError) -> (video: Tensor, text: Tensor, gate: Tensor, textGate: Tensor) {
        let m = try modulationChunks(linear, temb, count: 6)
        return (try norm.modulated(video, scale: m[1], shift: m[0]), try norm.modulated(text, scale: m[4], shift: m[3]),
                m[2], m[5])
    }

    /// The video half alone (TeaCache's modulated input).
    func video(_ x: Tensor, temb: Tensor) throws(TensorError) -> Tensor {
        let m = try modulationChunks(linear, temb, count: 6)
        return try norm.modulated(x, scale: m[1], shift: m[0])
    }
}

/// `norm_out`: diffusers' `AdaLayerNorm` with `chunk_dim=1`: `linear(silu(temb))` → (shift, scale) — shift
/// first — and `LN(x)·(1 + scale) + shift`.
private struct EasyAnimateOutputNorm: Sendable {
    /// `linear` `[2D, time_embed_dim]`.
    let linear: Linear
    /// `norm`.
    let norm: EasyAnimateLayerNorm

    /// Takes `linear` and `norm` of the scope.
    init(_ w: WeightScope, configuration c: EasyAnimateConfiguration) {
        linear = Linear(w["linear"], in: c.timeEmbedDim, out: 2 * c.innerDim)
        norm = EasyAnimateLayerNorm(w["norm"], dim: c.innerDim, eps: c.normEps, affine: c.normElementwiseAffine)
    }

    /// Applies the norm to `x` `[B, S, D]` with `temb` `[B, E]`.
    func callAsFunction(_ x: Tensor, temb: Tensor) throws(TensorError) -> Tensor {
        let m = try modulationChunks(linear, temb, count: 2)
        return try norm.modulated(x, scale: m[1], shift: m[0])
    }
}

// MARK: Blocks

/// `EasyAnimateTransformerBlock`:
///
///     (v̂, t̂, g, g_t) = norm1(v, t, temb)
///     (a_v, a_t) = attn1(v̂, t̂)                 joint attention over [text; video]
///     v = v + g·a_v,  t = t + g_t·a_t
///     (v̂, t̂, g, g_t) = norm2(v, t, temb)
///     v = v + g·N(ff(v̂)),  t = t + g_t·N(txt_ff(t̂))    N = norm3 (after_norm) or identity
///
/// An MMDiT block (`i < mmdit_layers`) has separate text projections in its attention and its own text
/// feed-forward `txt_ff`; any other block projects the joint sequence with one set of weights, leaves
/// the text part of the attention output unprojected (it has no `to_add_out`) and runs `ff` on both streams.
private struct EasyAnimateBlock: Sendable {
    /// `norm1`.
    let norm1: EasyAnimateNormZero
    /// `attn1`.
    let attention: EasyAnimateAttention
    /// `norm2`.
    let norm2: EasyAnimateNormZero
    /// `ff`.
    let ff: FeedForward
    /// `txt_ff` (MMDiT blocks only).
    let textFF: FeedForward?
    /// `norm3` (`after_norm` only).
    let norm3: EasyAnimateLayerNorm?

    /// Takes every parameter of one block's scope (`transformer_blocks.<i>`).
    init(_ w: WeightScope, configuration c: EasyAnimateConfiguration, mmdit: Bool) {
        let d = c.innerDim
        // validate() has refused any other activation name.
        let act = c.feedForwardActivation ?? .gelu(.tanh)
        norm1 = EasyAnimateNormZero(w["norm1"], configuration: c)
        attention = EasyAnimateAttention(w["attn1"], configuration: c, mmdit: mmdit)
        norm2 = EasyAnimateNormZero(w["norm2"], configuration: c)
        ff = FeedForward(w["ff"], dim: d, inner: c.feedForwardInnerDim, activation: act)
        textFF = mmdit ? FeedForward(w["txt_ff"], dim: d, inner: c.feedForwardInnerDim, activation: act) : nil
        norm3 = c.afterNorm ? EasyAnimateLayerNorm(w["norm3"], dim: d, eps: c.normEps, affine: c.normElementwiseAffine) : nil
    }

    /// Updates `video` `[B, S, D]` and `text` `[B, L, D]`.
    func callAsFunction(
        video: inout Tensor, text: inout Tensor, temb: Tensor, rope: (cos: Tensor, sin: Tensor)
    ) throws(TensorError) {
        let n1 = try norm1(video: video, text: text, temb: temb)
        let (attnVideo, attnText) = try attention(video: n1.video, text: n1.text, rope: rope)
        video = try addingGated(video, attnVideo, gate: n1.gate)
        text = try addingGated(text, attnText, gate: n1.textGate)
        let n2 = try norm2(video: video, text: text, temb: temb)
        var ffVideo = try ff(n2.video), ffText = try (textFF ?? ff)(n2.text)
        if let norm3 {
            ffVideo = try norm3(ffVideo)
            ffText = try norm3(ffText)
        }
        video = try addingGated(video, ffVideo, gate: n2.gate)
        text = try addingGated(text, ffText, gate: n2.textGate)
    }
}

/// `attn1` with `EasyAnimateAttnProcessor2_0`: q, k, v with a per-head LayerNorm (learned scale and bias,
/// ε = 1e-6) on q and k, the 3-D rotary embedding on the video part of q and k, scaled-dot-product
/// attention over `[text; video]`, and the output projections.
///
/// MMDiT: the text tokens have their own projections (`add_q_proj`, …, `norm_added_q`, `norm_added_k`)
/// and output projection `to_add_out`. Otherwise the joint sequence goes through `to_q`/`to_k`/`to_v`
/// and only the video part of the output through `to_out.0`.
private struct EasyAnimateAttention: Sendable {
    /// `to_q`, `to_k`, `to_v` as one matmul.
    let qkv: FusedLinear
    /// `norm_q`, `norm_k`.
    let normQ: EasyAnimateLayerNorm, normK: EasyAnimateLayerNorm
    /// `to_out.0`.
    let toOut: Linear
    /// MMDiT text projections: `add_q_proj`, `add_k_proj`, `add_v_proj` (one matmul), `norm_added_q`,
    /// `norm_added_k` and `to_add_out`.
    let text: (qkv: FusedLinear, normQ: EasyAnimateLayerNorm, normK: EasyAnimateLayerNorm, toAddOut: Linear)?
    /// Number of heads.
    let heads: Int
    /// Width of one head.
    let headDim: Int

    /// Takes the scope's parameters.
    init(_ w: WeightScope, configuration c: EasyAnimateConfiguration, mmdit: Bool) {
        let d = c.innerDim, dh = c.attentionHeadDim, eps = EasyAnimateConfiguration.qkNormEps
        qkv = FusedLinear(["to_q", "to_k", "to_v"].map { w[$0] }, in: d, out: [d, d, d])
        normQ = EasyAnimateLayerNorm(w["norm_q"], dim: dh, eps: eps, affine: true)
        normK = EasyAnimateLayerNorm(w["norm_k"], dim: dh, eps: eps, affine: true)
        toOut = Linear(w["to_out.0"], in: d, out: d)
        text = mmdit
            ? (FusedLinear(["add_q_proj", "add_k_proj", "add_v_proj"].map { w[$0] }, in: d, out: [d, d, d]),
               EasyAnimateLayerNorm(w["norm_added_q"], dim: dh, eps: eps, affine: true),
               EasyAnimateLayerNorm(w["norm_added_k"], dim: dh, eps: eps, affine: true),
               Linear(w["to_add_out"], in: d, out: d))
            : nil
        heads = c.numAttentionHeads
        headDim = dh
    }

    /// Attends `video` `[B, S, D]` and `text` `[B, L, D]` jointly (text first); returns the video and
    /// text outputs.
    func callAsFunction(
        video x: Tensor, text c: Tensor, rope: (cos: Tensor, sin: Tensor)
    ) throws(TensorError) -> (video: Tensor, text: Tensor) {
        // Per-head LayerNorms, the joint sequence (text first) and the rotary embedding in one pass per row.
        let queries: [HeadSegment], keys: [HeadSegment], values: [HeadSegment]
        if let text {
            let pv = try qkv.stacked(x), pt = try text.qkv.stacked(c)
            queries = [segment(pt, 0, text.normQ), segment(pv, 0, normQ)]
            keys = [segment(pt, 1, text.normK), segment(pv, 1, normK)]
            values = [segment(pt, 2, nil), segment(pv, 2, nil)]
        } else {
            let p = try qkv.stacked(Tensor.concatenate([c, x], axis: 1))
            (queries, keys, values) = ([segment(p, 0, normQ)], [segment(p, 1, normK)], [segment(p, 2, nil)])
        }
        let width = heads * headDim
        let tables = (cos: rope.cos, sin: rope.sin, layout: RotaryEmbedding.Layout.interleaved)
        let q = try preparedHeads(queries, width: width, heads: heads, rope: tables)
        let k = try preparedHeads(keys, width: width, heads: heads, rope: tables)
        let v = try AttentionOperand(joining: values, width: width, heads: heads)
        let o = try attention(query: AttentionOperand(q), key: AttentionOperand(k), value: v, width: width, heads: heads,
                              precision: toOut.weight.precision)
        let l = c.shape[1]
        let parts = try o.split(sizes: [l, o.shape[1] - l], axis: 1)
        let textOut = try text.map { t throws(TensorError) in try t.toAddOut(parts[0]) } ?? parts[0]
        return (try toOut(parts[1]), textOut)
    }

    /// Block `index` (0 q, 1 k, 2 v) of a stacked projection with its per-head LayerNorm (nil: as it is).
    private func segment(_ p: Tensor, _ index: Int, _ norm: EasyAnimateLayerNorm?) -> HeadSegment {
        HeadSegment(p, column: index * heads * headDim,
                    norm: norm.map { HeadNormalisation(.layer, weight: $0.weight, bias: $0.bias, eps: $0.eps) })
    }
}
