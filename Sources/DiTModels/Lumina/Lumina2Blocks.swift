import Tensors

/// diffusers' `Attention` with `Lumina2AttnProcessor2_0`: bias-free q/k/v projections, RMS
/// norms of every query and key head (`qk_norm="rms_norm"`, learned `[Dh]` scales, ε 1e-5), rotary q and
/// k, grouped-query attention with scale `1/√Dh` and an optional key mask, `to_out.0` without bias.
struct Lumina2Attention: Sendable {
    /// `to_q`, `to_k`, `to_v`.
    let toQ: Linear, toK: Linear, toV: Linear
    /// `norm_q.weight`, `norm_k.weight` `[Dh]`.
    let normQ: Tensor
    let normK: Tensor
    /// `to_out.0`.
    let toOut: Linear
    /// The head layout.
    let layout: LuminaHeads

    /// The epsilon of the query/key norms (fixed in diffusers).
    static let qkEps: Float = 1e-5

    /// Takes `to_q`, `to_k`, `to_v`, `norm_q`, `norm_k`, `to_out.0` of the scope.
    init(_ w: WeightScope, dim: Int, layout l: LuminaHeads) {
        layout = l
        toQ = Linear(w["to_q"], in: dim, out: l.queryWidth, bias: false)
        toK = Linear(w["to_k"], in: dim, out: l.kvWidth, bias: false)
        toV = Linear(w["to_v"], in: dim, out: l.kvWidth, bias: false)
        normQ = w["norm_q"].tensor("weight", shape: [l.headDim])
        normK = w["norm_k"].tensor("weight", shape: [l.headDim])
        toOut = Linear(w["to_out.0"], in: l.queryWidth, out: dim, bias: false)
    }

    /// Self-attention of `x` `[B, T, D]` with per-sample rotary tables over its T tokens and an optional
    /// key mask `[B, T]`.
    func callAsFunction(_ x: Tensor, rope: PerSampleRotary, keyMask: Tensor?) throws(TensorError) -> Tensor {
        let q = try rope.apply(headNorm(toQ(x), normQ, heads: layout.heads), heads: layout.heads)
        let k = try rope.apply(headNorm(toK(x), normK, heads: layout.kvHeads), heads: layout.kvHeads)
        return try toOut(luminaAttention(q: q, k: k, v: toV(x), layout: layout, keyMask: keyMask, scale: nil))
    }

    private func headNorm(_ t: Tensor, _ w: Tensor, heads: Int) throws(TensorError) -> Tensor {
        let shape = t.shape
        return try rmsNorm(t.reshaped(Array(shape.dropLast()) + [heads, layout.headDim]), weight: w, eps: Self.qkEps)
            .reshaped(shape)
    }
}

/// diffusers' `Lumina2TransformerBlock`. With modulation (the noise refiner and the joint layers):
///
///     (x̂, g_msa, s_mlp, g_mlp) = norm1(h, temb)                   x̂ = RMSNorm(h)·(1 + s_msa)
///     h = h + tanh(g_msa)·norm2(attn(x̂))
///     h = h + tanh(g_mlp)·ffn_norm2(ff(ffn_norm1(h)·(1 + s_mlp)))
///
/// without (the context refiner): `norm1` is a plain RMSNorm, `h = h + norm2(attn(norm1(h)))`,
/// `h = h + ffn_norm2(ff(ffn_norm1(h)))`.
struct Lumina2Block: Sendable {
    /// `norm1` with modulation.
    let modulatedNorm: LuminaRMSNormZero?
    /// `norm1` without modulation.
    let plainNorm: RMSNorm?
    /// `attn`.
    let attention: Lumina2Attention
    /// `norm2`, `ffn_norm1`, `ffn_norm2`.
    let norm2: RMSNorm
    let ffnNorm1: RMSNorm
    let ffnNorm2: RMSNorm
    /// `feed_forward`.
    let feedForward: LuminaFeedForward

    /// Takes every parameter of one block's scope (`layers.<i>`, `noise_refiner.<i>`, `context_refiner.<i>`).
    init(_ w: WeightScope, configuration c: Lumina2Configuration, modulation: Bool) {
        let d = c.hiddenSize
        modulatedNorm = modulation ? LuminaRMSNormZero(w["norm1"], dim: d, eps: c.normEps) : nil
        plainNorm = modulation ? nil : RMSNorm(w["norm1"], dim: d, eps: c.normEps)
        attention = Lumina2Attention(w["attn"], dim: d, layout: c.heads)
        norm2 = RMSNorm(w["norm2"], dim: d, eps: c.normEps)
        ffnNorm1 = RMSNorm(w["ffn_norm1"], dim: d, eps: c.normEps)
        ffnNorm2 = RMSNorm(w["ffn_norm2"], dim: d, eps: c.normEps)
        feedForward = LuminaFeedForward(w["feed_forward"], dim: d, inner: c.ffnInnerDim)
    }

    /// Runs the block on `h` `[B, T, D]` (`temb` `[B, min(D, 1024)]` is required with modulation).
    func callAsFunction(
        _ h: Tensor, rope: PerSampleRotary, keyMask: Tensor?, temb: Tensor?
    ) throws(TensorError) -> Tensor {
        if let modulatedNorm {
            guard let temb else {
                throw .invalidArgument(operation: "Lumina2 block", reason: "a modulated block needs the conditioning")
            }
            let n = try modulatedNorm(h, emb: temb)
            let a = try attention(n.normalized, rope: rope, keyMask: keyMask)
            var out = try LuminaKernels.addingGatedRMSNorm(h, a, weight: norm2.weight, eps: norm2.eps, gate: n.gateMSA)
            let mlp = try feedForward(LuminaKernels.rmsNormScaled(out, weight: ffnNorm1.weight, eps: ffnNorm1.eps, scale: n.scaleMLP))
            out = try LuminaKernels.addingGatedRMSNorm(out, mlp, weight: ffnNorm2.weight, eps: ffnNorm2.eps, gate: n.gateMLP)
            return out
        }
        guard let plainNorm else { throw .invalidArgument(operation: "Lumina2 block", reason: "the block has no norm1") }
        let a = try attention(plainNorm(h), rope: rope, keyMask: keyMask)
        let out = try LuminaKernels.addingGatedRMSNorm(h, a, weight: norm2.weight, eps: norm2.eps, gate: nil)
        let mlp = try feedForward(ffnNorm1(out))
        return try LuminaKernels.addingGatedRMSNorm(out, mlp, weight: ffnNorm2.weight, eps: ffnNorm2.eps, gate: nil)
    }
}
