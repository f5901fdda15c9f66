import Tensors

/// diffusers' `WanAttention` with `WanAttnProcessor`: q/k/v projections, RMS norms of q and k over
/// all heads together (`rms_norm_across_heads`, learned scale), optional rotary embedding of q and k,
/// scaled-dot-product attention, output projection. With the image projections (`add_k_proj`,
/// `add_v_proj`, `norm_added_k`; Wan2.1 I2V) the queries also attend to the image tokens separately and
/// the two attention outputs are summed before `to_out`.
struct WanAttention: Sendable {
    let toQ: Linear
    let toK: Linear
    let toV: Linear
    let toOut: Linear
    /// `[D]` scale of the query RMS norm.
    let normQ: Tensor
    /// `[D]` scale of the key RMS norm.
    let normK: Tensor
    /// The image key/value projections and the image-key norm scale, for I2V cross-attention.
    let added: (key: Linear, value: Linear, normKey: Tensor)?
    let heads: Int
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
        let q = try RotaryEmbedding.apply(rmsNorm(toQ(x), weight: normQ, eps: eps),
                                          cos: rotary.cos, sin: rotary.sin, heads: heads)
        let k = try RotaryEmbedding.apply(rmsNorm(toK(x), weight: normK, eps: eps),
                                          cos: rotary.cos, sin: rotary.sin, heads: heads)
        let v = try toV(x)
        return try toOut(attention(query: q, key: k, value: v, heads: heads))
    }

    /// Cross-attention of `x` `[B, S, D]` to `context` `[B, L, D]`, plus, for I2V, to `image` `[B, N, D]`
    /// through the image projections.
    func crossAttention(_ x: Tensor, context: Tensor, image: Tensor?) throws(TensorError) -> Tensor {
        let q = try rmsNorm(toQ(x), weight: normQ, eps: eps)
        let k = try rmsNorm(toK(context), weight: normK, eps: eps)
        let v = try toV(context)
        var out = try attention(query: q, key: k, value: v, heads: heads)
        switch (added, image) {
        case let (added?, image?):
            let ki = try rmsNorm(added.key(image), weight: added.normKey, eps: eps)
            let vi = try added.value(image)
            out = try attention(query: q, key: ki, value: vi, heads: heads) + out
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
    /// Rotary tables `[S, head_dim]`.
    public var rotaryCos: Tensor
    public var rotarySin: Tensor
}

/// diffusers' `WanTransformerBlock` (float32 throughout):
///
///     (shift, scale, gate, c_shift, c_scale, c_gate) = chunk₆(scale_shift_table + timestep_proj)
///     h = h + attn1(LN(h)·(1 + scale) + shift) · gate
///     h = h + attn2(norm2(h), context)              norm2: affine LayerNorm, or identity
///     h = h + ffn(LN(h)·(1 + c_scale) + c_shift) · c_gate
///
/// LN is a LayerNorm without affine parameters (ε from the configuration); each gated update multiplies
/// first and adds second, as diffusers does.
struct WanTransformerBlock: Sendable {
    let attn1: WanAttention
    let attn2: WanAttention
    /// The cross-attention input norm (`cross_attn_norm`), or nil for identity.
    let norm2: AffineLayerNorm?
    let ffn: FeedForward
    /// `[1, 6, D]`.
    let scaleShiftTable: Tensor
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
        h = try h + attn1.selfAttention(attnIn, rotary: (ctx.rotaryCos, ctx.rotarySin)) * m[2]
        let crossIn = try norm2.map { n throws(TensorError) in try n(h) } ?? h
        h = try h + attn2.crossAttention(crossIn, context: ctx.context, image: ctx.image)
        let ffIn = try layerNormModulated(h, eps: eps, scale: m[4], shift: m[3])
        h = try h + ffn(ffIn) * m[5]
        return h
    }
}
