import Tensors

/// The adaLN modulation parameters of one block for one call: each `[B, D]` (per sample) or, in
/// token-replace models, `[B, T, D]` (per token: the first-frame tokens take the parameters of the
/// timestep-0 conditioning, the other tokens those of `temb`).
struct HunyuanVideoModulation {
    /// The parameters in the order of the projection's rows (shift, scale, gate, …).
    let parameters: [Tensor]

    /// `chunk(linear(silu(temb)))`; for a token-replace context each parameter laid out per token over
    /// `tokens` tokens, the first `firstFrameTokens` of which take the chunks of the first frame's conditioning.
    init(_ linear: Linear, count: Int, context c: HunyuanVideoBlockContext, tokens: Int) throws(TensorError) {
        let regular = try modulationChunks(linear, c.temb, count: count)
        guard let tr = c.tokenReplaceEmb else { parameters = regular; return }
        let replaced = try modulationChunks(linear, tr, count: count)
        parameters = try zip(replaced, regular).map { (r, p) throws(TensorError) in
            try Self.perToken(first: r, rest: p, firstTokens: c.firstFrameTokens, tokens: tokens)
        }
    }

    /// `[B, T, D]` whose token rows `< firstTokens` are `first[b]` and the others `rest[b]` (both `[B, D]`).
    static func perToken(first: Tensor, rest: Tensor, firstTokens n: Int, tokens t: Int) throws(TensorError) -> Tensor {
        let (b, d) = (rest.shape[0], rest.shape[1])
        return first.withUnsafeBufferPointer { pf in
            rest.withUnsafeBufferPointer { pr in
                Tensor(uninitializedShape: [b, t, d]) { out in
                    for bi in 0..<b {
                        for ti in 0..<t {
                            let src = (ti < n ? pf : pr).baseAddress! + bi * d
                            (out.baseAddress! + (bi * t + ti) * d).update(from: src, count: d)
                        }
                    }
                }
            }
        }
    }

    /// `LN(x)·(1 + scale) + shift` with parameters `scale`, `shift` of this set (LayerNorm without affine, ε 1e-6).
    func modulatedNorm(_ x: Tensor, shift: Int, scale: Int) throws(TensorError) -> Tensor {
        try layerNormModulated(x, eps: 1e-6, scale: parameters[scale], shift: parameters[shift])
    }

    /// `residual += x · gate` with the gate `gate` of this set (diffusers' order: multiply, then add).
    func addGated(_ residual: inout Tensor, _ x: Tensor, gate: Int) throws(TensorError) {
        try HunyuanVideoKernels.addGated(&residual, x, gate: parameters[gate])
    }
}

/// diffusers' `HunyuanVideoTransformerBlock` (and, with a token-replace context,
/// `HunyuanVideoTokenReplaceTransformerBlock`): a dual-stream block.
///
///     (shift, scale, gate, shift₂, scale₂, gate₂) = chunk₆(norm1.linear(silu(temb)))   (likewise norm1_context)
///     attn_img, attn_txt = joint attention of (LN(img)·(1+scale)+shift, LN(txt)·(1+c_scale)+c_shift)
///     img = img + attn_img·gate;   img = img + gate₂·ff(LN(img)·(1+scale₂)+shift₂)        (txt alike)
///
/// The joint sequence is image tokens first, then text; only the image queries/keys are rotated, and keys
/// beyond the valid text tokens are masked.
struct HunyuanVideoDualStreamBlock: Sendable {
    /// `norm1` (image) and `norm1_context` (text): their `linear` projections `[6D, D]`.
    let norm1: AdaLayerNormZero
    let norm1Context: AdaLayerNormZero
    /// `attn.to_q/k/v` with `norm_q/k`, and `attn.add_q/k/v_proj` with `norm_added_q/k`.
    let image: HunyuanVideoQKV
    let text: HunyuanVideoQKV
    /// `attn.to_out.0` and `attn.to_add_out`.
    let toOut: Linear
    let toAddOut: Linear
    /// `ff` and `ff_context` (tanh-GELU, `int(D·mlp_ratio)` wide).
    let ff: FeedForward
    let ffContext: FeedForward
    /// Attention heads.
    let heads: Int

    /// Takes one block's scope (`transformer_blocks.<i>`).
    init(_ w: WeightScope, configuration c: HunyuanVideoConfiguration) {
        let d = c.innerDim
        norm1 = AdaLayerNormZero(w["norm1"], dim: d)
        norm1Context = AdaLayerNormZero(w["norm1_context"], dim: d)
        image = HunyuanVideoQKV(w["attn"], names: ("to_q", "to_k", "to_v", "norm_q", "norm_k"), configuration: c)
        text = HunyuanVideoQKV(w["attn"], names: ("add_q_proj", "add_k_proj", "add_v_proj", "norm_added_q", "norm_added_k"),
                               configuration: c)
        toOut = Linear(w["attn"]["to_out.0"], in: d, out: d)
        toAddOut = Linear(w["attn"]["to_add_out"], in: d, out: d)
        ff = FeedForward(w["ff"], dim: d, inner: c.mlpHiddenDim, activation: .gelu(.tanh))
        ffContext = FeedForward(w["ff_context"], dim: d, inner: c.mlpHiddenDim, activation: .gelu(.tanh))
        heads = c.numAttentionHeads
    }

    /// The image stream's modulation (token-replace aware) for `tokens` image tokens.
    func imageModulation(_ c: HunyuanVideoBlockContext, tokens: Int) throws(TensorError) -> HunyuanVideoModulation {
        try HunyuanVideoModulation(norm1.linear, count: 6, context: c, tokens: tokens)
    }

    /// `norm1(image, temb)[0]`: TeaCache's modulated input when this is the first block.
    func modulatedImage(_ image: Tensor, _ c: HunyuanVideoBlockContext) throws(TensorError) -> Tensor {
        try imageModulation(c, tokens: image.shape[1]).modulatedNorm(image, shift: 0, scale: 1)
    }

    /// Updates `image` `[B, S, D]` and `text` `[B, L, D]`.
    func callAsFunction(image x: inout Tensor, text y: inout Tensor, context c: HunyuanVideoBlockContext) throws(TensorError) {
        let s = x.shape[1]
        let mi = try imageModulation(c, tokens: s)
        var textContext = c
        textContext.tokenReplaceEmb = nil  // the text stream always uses temb
        let mt = try HunyuanVideoModulation(norm1Context.linear, count: 6, context: textContext, tokens: y.shape[1])
        let pi = try image.project(mi.modulatedNorm(x, shift: 0, scale: 1))
        let pt = try text.project(mt.modulatedNorm(y, shift: 0, scale: 1))
        let o = try hunyuanVideoJointAttention(
            [image.source(pi, rows: 0..<s), text.source(pt, rows: 0..<y.shape[1])],
            context: c, heads: heads)
        let parts = try o.split(sizes: [s, o.shape[1] - s], axis: 1)
        try mi.addGated(&x, toOut(parts[0]), gate: 2)
        try mt.addGated(&y, toAddOut(parts[1]), gate: 2)
        try mi.addGated(&x, ff(mi.modulatedNorm(x, shift: 3, scale: 4)), gate: 5)
        try mt.addGated(&y, ffContext(mt.modulatedNorm(y, shift: 3, scale: 4)), gate: 5)
    }
}

/// diffusers' `HunyuanVideoSingleTransformerBlock` (and `HunyuanVideoTokenReplaceSingleTransformerBlock`)
/// on the joint sequence `[image; text]`:
///
///     (shift, scale, gate) = chunk₃(norm.linear(silu(temb)));  x̂ = LN(x)·(1+scale)+shift
///     x = x + gate · proj_out([attention(x̂), gelu_tanh(proj_mlp(x̂))])
///
/// The tanh-GELU is applied in place on `proj_mlp`'s output, and `proj_out` is applied to the two halves
/// without building their concatenation.
struct HunyuanVideoSingleStreamBlock: Sendable {
    /// `norm.linear` `[3D, D]`.
    let norm: AdaLayerNormZeroSingle
    /// `attn.to_q/k/v` and `norm_q/k`.
    let attention: HunyuanVideoQKV
    /// `proj_mlp` `[mlp, D]`.
    let projMLP: Linear
    /// `proj_out` `[D, D + mlp]`.
    let projOut: Linear
    /// Attention heads.
    let heads: Int

    /// Takes one block's scope (`single_transformer_blocks.<i>`).
    init(_ w: WeightScope, configuration c: HunyuanVideoConfiguration) {
        let d = c.innerDim
        norm = AdaLayerNormZeroSingle(w["norm"], dim: d)
        attention = HunyuanVideoQKV(w["attn"], names: ("to_q", "to_k", "to_v", "norm_q", "norm_k"), configuration: c)
        projMLP = Linear(w["proj_mlp"], in: d, out: c.mlpHiddenDim)
        projOut = Linear(w["proj_out"], in: d + c.mlpHiddenDim, out: d)
        heads = c.numAttentionHeads
    }

    /// Updates the joint sequence `x` `[B, S + L, D]` (image tokens first).
    func callAsFunction(_ x: inout Tensor, context c: HunyuanVideoBlockContext) throws(TensorError) {
        let m = try HunyuanVideoModulation(norm.linear, count: 3, context: c, tokens: x.shape[1])
        let n = try m.modulatedNorm(x, shift: 0, scale: 1)
        let p = try attention.project(n)
        let mlp = try linear(n, weight: projMLP.weight, bias: projMLP.bias, activation: .gelu(.tanh))
        let a = try hunyuanVideoJointAttention([attention.source(p, rows: 0..<x.shape[1])], context: c, heads: heads)
        try m.addGated(&x, linear(concatenating: [a, mlp], weight: projOut.weight, bias: projOut.bias), gate: 2)
    }
}
