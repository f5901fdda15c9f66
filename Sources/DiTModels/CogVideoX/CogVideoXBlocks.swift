import Tensors

/// diffusers' `CogVideoXLayerNormZero`: `linear(silu(temb))` → (shift, scale, gate, enc_shift,
/// enc_scale, enc_gate), one LayerNorm (affine when `norm_elementwise_affine`) for both streams,
/// `x̂ = LN(x)·(1 + scale) + shift` for the video tokens and the `enc_*` version for the text tokens.
struct CogVideoXLayerNormZero: Sendable {
    /// `linear` `[6D, time_embed_dim]` (with bias).
    let linear: Linear
    /// `norm.weight` `[D]`, or nil without elementwise affine.
    let weight: Tensor?
    /// `norm.bias` `[D]`, or nil without elementwise affine.
    let bias: Tensor?
    /// The LayerNorm epsilon (`norm_eps`).
    let eps: Float

    /// Chunk indices of the projection: video (shift 0, scale 1, gate 2), text (3, 4, 5).
    static let video = JointSequence.Chunks(shift: 0, scale: 1), text = JointSequence.Chunks(shift: 3, scale: 4)
    static let videoGate = 2, textGate = 5

    /// Takes `linear` and `norm` of the scope (`norm1`, `norm2`).
    init(_ w: WeightScope, conditioningDim: Int, dim: Int, affine: Bool, eps: Float) {
        linear = Linear(w["linear"], in: conditioningDim, out: 6 * dim)
        weight = affine ? w["norm"].tensor("weight", shape: [dim]) : nil
        bias = affine ? w["norm"].tensor("bias", shape: [dim]) : nil
        self.eps = eps
    }

    /// The six modulation vectors `[B, 6D]` for the activated conditioning `silu(temb)` `[B, T]`
    /// (matrix-vector products: one row per sample).
    func modulation(_ activatedEmb: Tensor) throws(TensorError) -> Tensor { try linear.fewRows(activatedEmb) }

    /// The modulated norm of the joint sequence `[B, L + S, D]` (text rows first).
    func normalized(_ x: Tensor, textLength l: Int, modulation m: Tensor) throws(TensorError) -> Tensor {
        try JointSequence.layerNormModulated(x, leadingRows: l, eps: eps, weight: weight, bias: bias,
                                             modulation: m, leading: Self.text, trailing: Self.video)
    }

    /// `x += gate · y` with the video gate on the video rows and the text gate on the text rows.
    func addGated(_ x: inout Tensor, _ y: Tensor, textLength l: Int, modulation m: Tensor) throws(TensorError) {
        try JointSequence.addGated(&x, y, leadingRows: l, modulation: m, leadingGate: Self.textGate, trailingGate: Self.videoGate)
    }
}

/// diffusers' `CogVideoXBlock` on the joint sequence `h = [text; video]` `[B, L + S, D]`:
///
///     h = h + gate₁ ⊙ attn1(norm1(h))        (text rows: enc_gate₁; rotary on the video rows)
///     h = h + gate₂ ⊙ ff(norm2(h))           (one feed-forward for both streams)
///
/// diffusers keeps the two streams apart and concatenates them for the attention and the feed-forward;
/// every row gets the same values either way, so the stack runs on the joint tensor throughout.
struct CogVideoXBlock: Sendable {
    /// The adaptive norms of the attention and the feed-forward branch.
    let norm1: CogVideoXLayerNormZero, norm2: CogVideoXLayerNormZero
    /// The joint attention, and the feed-forward shared by both streams.
    let attn1: CogVideoXAttention, ff: FeedForward

    /// Takes every parameter of one block's scope (`transformer_blocks.<i>`).
    init(_ w: WeightScope, configuration c: CogVideoXConfiguration) {
        let d = c.innerDim
        norm1 = CogVideoXLayerNormZero(w["norm1"], conditioningDim: c.timeEmbedDim, dim: d,
                                       affine: c.normElementwiseAffine, eps: c.normEps)
        attn1 = CogVideoXAttention(w["attn1"], dim: d, heads: c.numAttentionHeads, headDim: c.attentionHeadDim,
                                   bias: c.attentionBias)
        norm2 = CogVideoXLayerNormZero(w["norm2"], conditioningDim: c.timeEmbedDim, dim: d,
                                       affine: c.normElementwiseAffine, eps: c.normEps)
        ff = FeedForward(w["ff"], dim: d, inner: 4 * d, activation: c.feedForwardActivation ?? .gelu(.tanh))
    }

    /// Runs the block on the joint sequence `h` with `silu(emb)` `[B, time_embed_dim]`.
    func callAsFunction(
        _ h: inout Tensor, textLength l: Int, activatedEmb: Tensor, rope: (cos: Tensor, sin: Tensor)?
    ) throws(TensorError) {
        let m1 = try norm1.modulation(activatedEmb)
        let a = try attn1(norm1.normalized(h, textLength: l, modulation: m1), textLength: l, rope: rope)
        try norm1.addGated(&h, a, textLength: l, modulation: m1)
        let m2 = try norm2.modulation(activatedEmb)
        let f = try ff(norm2.normalized(h, textLength: l, modulation: m2))
        try norm2.addGated(&h, f, textLength: l, modulation: m2)
    }
}
