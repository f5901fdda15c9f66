import Tensors

/// Query/key/value projections of one token stream with FLUX's per-head RMS norms on queries and keys.
///
/// The three projections (and, for single-stream blocks, the MLP input projection that reads the same
/// normalised tokens) run as one ``FusedLinear``.
struct FluxQKVProjection: Sendable {
    /// q, k, v (and optional extra) projections stacked into one sgemm.
    let projection: FusedLinear
    /// RMSNorm scales `[headDim]` for queries and keys.
    let normQ: Tensor
    let normK: Tensor
    let heads: Int
    let headDim: Int
    /// RMSNorm epsilon.
    let eps: Float

    /// Takes `<normQ>.weight`, `<normK>.weight` and `<q>`, `<k>`, `<v>` (weights `[H·Dh, in]` with
    /// bias) of the scope, then any `extra` layers (their scopes with their output widths) that read the
    /// same input.
    init(_ weights: WeightScope, names: (q: String, k: String, v: String, normQ: String, normK: String),
         inDim: Int, heads: Int, headDim: Int, eps: Float, extra: [(weights: WeightScope, width: Int)] = []) {
        let inner = heads * headDim
        normQ = weights[names.normQ].tensor("weight", shape: [headDim])
        normK = weights[names.normK].tensor("weight", shape: [headDim])
        projection = FusedLinear([names.q, names.k, names.v].map { weights[$0] } + extra.map(\.weights),
                                 in: inDim, out: [inner, inner, inner] + extra.map(\.width))
        self.heads = heads
        self.headDim = headDim
        self.eps = eps
    }

    /// `(q, k, v)`, each `[B, S, H·Dh]`, with q and k RMS-normalised per head, followed by the outputs of
    /// the extra projections.
    func callAsFunction(_ x: Tensor) throws(TensorError) -> (q: Tensor, k: Tensor, v: Tensor, extra: ArraySlice<Tensor>) {
        let p = try projection(x)
        return (try headNorm(p[0], normQ), try headNorm(p[1], normK), p[2], p[3...])
    }

    private func headNorm(_ t: Tensor, _ w: Tensor) throws(TensorError) -> Tensor {
        let shape = t.shape
        return try rmsNorm(t.reshaped(Array(shape.dropLast()) + [heads, headDim]), weight: w, eps: eps).reshaped(shape)
    }
}

/// Scaled-dot-product attention over the rotary-embedded joint sequence (`q`, `k`, `v` all
/// `[B, L+S, H·Dh]` with the rotary tables `[L+S, Dh]`). Returns `[B, L+S, H·Dh]`.
func fluxRotaryAttention(
    q: Tensor, k: Tensor, v: Tensor, rope: (cos: Tensor, sin: Tensor), heads: Int
) throws(TensorError) -> Tensor {
    let qr = try RotaryEmbedding.apply(q, cos: rope.cos, sin: rope.sin, heads: heads, layout: .interleaved)
    let kr = try RotaryEmbedding.apply(k, cos: rope.cos, sin: rope.sin, heads: heads, layout: .interleaved)
    return try attention(query: qr, key: kr, value: v, heads: heads)
}

/// The joint attention of a double-stream block (`FluxAttention` with `added_kv_proj_dim`): text and
/// image streams are projected separately, attended jointly (text tokens first), and projected out
/// separately (`to_out.0` for the image, `to_add_out` for the text).
struct FluxJointAttention: Sendable {
    /// Image-stream projections (`to_q`, `to_k`, `to_v`, `norm_q`, `norm_k`).
    let image: FluxQKVProjection
    /// Text-stream projections (`add_q_proj`, …, `norm_added_q`, `norm_added_k`).
    let text: FluxQKVProjection
    /// `to_out.0`.
    let toOut: Linear
    /// `to_add_out`.
    let toAddOut: Linear

    /// Takes the scope's parameters in diffusers' order.
    init(_ weights: WeightScope, dim: Int, heads: Int, headDim: Int, eps: Float = 1e-6) {
        let inner = heads * headDim
        image = FluxQKVProjection(weights, names: ("to_q", "to_k", "to_v", "norm_q", "norm_k"),
                                  inDim: dim, heads: heads, headDim: headDim, eps: eps)
        toOut = Linear(weights["to_out.0"], in: inner, out: dim)
        text = FluxQKVProjection(weights, names: ("add_q_proj", "add_k_proj", "add_v_proj", "norm_added_q",
                                                  "norm_added_k"),
                                 inDim: dim, heads: heads, headDim: headDim, eps: eps)
        toAddOut = Linear(weights["to_add_out"], in: inner, out: dim)
    }

    /// Attends `image` `[B, S, D]` and `text` `[B, L, D]` jointly; returns the projected outputs.
    func callAsFunction(
        image x: Tensor, text c: Tensor, rope: (cos: Tensor, sin: Tensor)
    ) throws(TensorError) -> (image: Tensor, text: Tensor) {
        let (qi, ki, vi, _) = try image(x)
        let (qt, kt, vt, _) = try text(c)
        let q = try Tensor.concatenate([qt, qi], axis: 1)
        let k = try Tensor.concatenate([kt, ki], axis: 1)
        let v = try Tensor.concatenate([vt, vi], axis: 1)
        let o = try fluxRotaryAttention(q: q, k: k, v: v, rope: rope, heads: image.heads)
        let l = c.shape[1]
        let parts = try o.split(sizes: [l, o.shape[1] - l], axis: 1)
        return (try toOut(parts[1]), try toAddOut(parts[0]))
    }
}
