import Tensors

/// One head-wise query or key normalisation of diffusers' `Attention` (`norm_q`, `norm_k`, `norm_added_q`,
/// `norm_added_k`) for the configuration's `qk_norm`, applied to each head's `attention_head_dim` channels
/// with ε = 1e-6.
struct HunyuanVideoHeadNorm: Sendable {
    /// The normalisation.
    let kind: HunyuanVideoQKNorm
    /// The learned scale (`rms_norm`, `layer_norm`).
    let weight: Tensor?
    /// The learned bias (`layer_norm`).
    let bias: Tensor?
    /// Channels per head.
    let headDim: Int
    /// The epsilon diffusers passes to the blocks' attention.
    static let eps: Float = 1e-6

    /// Takes `weight` (and for `layer_norm` `bias`) `[head_dim]` of the scope when the kind has parameters.
    init(_ w: WeightScope, kind: HunyuanVideoQKNorm, headDim: Int) {
        self.kind = kind
        self.headDim = headDim
        weight = kind == .rms || kind == .layer ? w.tensor("weight", shape: [headDim]) : nil
        bias = kind == .layer ? w.tensor("bias", shape: [headDim]) : nil
    }
}

/// The query/key/value projections of one token stream, run as one ``FusedLinear``, and the head norms
/// of its queries and keys (applied while the joint sequence is assembled).
struct HunyuanVideoQKV: Sendable {
    /// q, k, v stacked.
    let projection: FusedLinear
    /// The query and key norms.
    let normQ: HunyuanVideoHeadNorm
    let normK: HunyuanVideoHeadNorm

    /// Takes the projections `names.q`, `names.k`, `names.v` (`[D, D]` with bias) and the norms of the scope.
    init(_ w: WeightScope, names: (q: String, k: String, v: String, normQ: String, normK: String),
         configuration c: HunyuanVideoConfiguration) {
        let d = c.innerDim
        let kind = c.queryKeyNorm ?? .identity
        projection = FusedLinear([names.q, names.k, names.v].map { w[$0] }, in: d, out: [d, d, d])
        normQ = HunyuanVideoHeadNorm(w[names.normQ], kind: kind, headDim: c.attentionHeadDim)
        normK = HunyuanVideoHeadNorm(w[names.normK], kind: kind, headDim: c.attentionHeadDim)
    }
    /// The stacked projection `[B, n, 3D]` (q | k | v columns) of `x` `[B, n, D]`.
    func project(_ x: Tensor) throws(TensorError) -> Tensor { try projection.stacked(x) }

    /// This stream's rows `rows` as a source of the joint q/k/v.
    func source(_ projected: Tensor, rows: Range<Int>) -> HunyuanVideoQKVSource {
        HunyuanVideoQKVSource(projection: projected, rows: rows, normQ: normQ, normK: normK)
    }
}

/// What every block of one forward reads besides its own streams.
struct HunyuanVideoBlockContext: Sendable {
    /// The conditioning `temb` `[B, D]`.
    var temb: Tensor
    /// The first frame's conditioning `[B, D]` of token-replace models, else nil.
    var tokenReplaceEmb: Tensor?
    /// Image tokens of the first latent frame (`(H/p)·(W/p)`), the ones the token-replace conditioning modulates.
    var firstFrameTokens: Int
    /// Rotary tables over the joint (image, text) sequence `[S + L, head_dim]` (text rows leave pairs unchanged).
    var rope: (cos: Tensor, sin: Tensor)
    /// The joint key mask `[B, S + L]` (1 = attend), or nil when no key is masked.
    var keyMask: Tensor?
}

/// Scaled-dot-product attention over the joint (image, text) sequence: q and k rotated by the joint
/// tables (whose text rows leave the text tokens unchanged, as diffusers rotates only the image tokens),
/// keys masked by the text mask.
func hunyuanVideoJointAttention(
    _ sources: [HunyuanVideoQKVSource], context c: HunyuanVideoBlockContext, heads: Int
) throws(TensorError) -> Tensor {
    let (q, k, v) = try HunyuanVideoKernels.jointQKV(sources, heads: heads)
    let qr = try RotaryEmbedding.apply(q, cos: c.rope.cos, sin: c.rope.sin, heads: heads, layout: .interleaved)
    let kr = try RotaryEmbedding.apply(k, cos: c.rope.cos, sin: c.rope.sin, heads: heads, layout: .interleaved)
    return try attention(query: qr, key: kr, value: v, heads: heads, mask: c.keyMask.map { .keys($0) })
}
