import Tensors

/// Query/key/value projections of one token stream with FLUX's per-head RMS norms on queries and keys.
public struct FluxQKVProjection: Sendable {
    public let toQ: Linear
    public let toK: Linear
    public let toV: Linear
    /// RMSNorm scales `[headDim]` for queries and keys.
    public let normQ: Tensor
    public let normK: Tensor
    public let heads: Int
    public let headDim: Int
    /// RMSNorm epsilon.
    public let eps: Float

    /// Takes `<prefix>.<q>`, `<k>`, `<v>` (weights `[D·, in]` with bias) and `<prefix>.<normQ>.weight`,
    /// `<normK>.weight`.
    init(_ loader: WeightLoader, _ prefix: String, names: (q: String, k: String, v: String, normQ: String, normK: String),
         inDim: Int, heads: Int, headDim: Int, eps: Float) {
        let inner = heads * headDim
        normQ = loader.take("\(prefix).\(names.normQ).weight", shape: [headDim])
        normK = loader.take("\(prefix).\(names.normK).weight", shape: [headDim])
        toQ = Linear(loader, "\(prefix).\(names.q)", in: inDim, out: inner)
        toK = Linear(loader, "\(prefix).\(names.k)", in: inDim, out: inner)
        toV = Linear(loader, "\(prefix).\(names.v)", in: inDim, out: inner)
        self.heads = heads
        self.headDim = headDim
        self.eps = eps
    }

    /// `(q, k, v)`, each `[B, S, H·Dh]`, with q and k RMS-normalised per head.
    func callAsFunction(_ x: Tensor) throws(TensorError) -> (q: Tensor, k: Tensor, v: Tensor) {
        (try headNorm(toQ(x), normQ), try headNorm(toK(x), normK), try toV(x))
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
public struct FluxJointAttention: Sendable {
    /// Image-stream projections (`to_q`, `to_k`, `to_v`, `norm_q`, `norm_k`).
    public let image: FluxQKVProjection
    /// Text-stream projections (`add_q_proj`, …, `norm_added_q`, `norm_added_k`).
    public let text: FluxQKVProjection
    /// `to_out.0`.
    public let toOut: Linear
    /// `to_add_out`.
    public let toAddOut: Linear

    /// Takes `<prefix>.*` in diffusers' parameter order.
    public init(_ loader: WeightLoader, _ prefix: String, dim: Int, heads: Int, headDim: Int, eps: Float = 1e-6) {
        let inner = heads * headDim
        image = FluxQKVProjection(loader, prefix, names: ("to_q", "to_k", "to_v", "norm_q", "norm_k"),
                                  inDim: dim, heads: heads, headDim: headDim, eps: eps)
        toOut = Linear(loader, "\(prefix).to_out.0", in: inner, out: dim)
        text = FluxQKVProjection(loader, prefix, names: ("add_q_proj", "add_k_proj", "add_v_proj", "norm_added_q",
                                                         "norm_added_k"),
                                 inDim: dim, heads: heads, headDim: headDim, eps: eps)
        toAddOut = Linear(loader, "\(prefix).to_add_out", in: inner, out: dim)
    }

    /// Attends `image` `[B, S, D]` and `text` `[B, L, D]` jointly; returns the projected outputs.
    public func callAsFunction(
        image x: Tensor, text c: Tensor, rope: (cos: Tensor, sin: Tensor)
    ) throws(TensorError) -> (image: Tensor, text: Tensor) {
        let (qi, ki, vi) = try image(x)
        let (qt, kt, vt) = try text(c)
        let q = try Tensor.concatenate([qt, qi], axis: 1)
        let k = try Tensor.concatenate([kt, ki], axis: 1)
        let v = try Tensor.concatenate([vt, vi], axis: 1)
        let o = try fluxRotaryAttention(q: q, k: k, v: v, rope: rope, heads: image.heads)
        let l = c.shape[1]
        let parts = try o.split(sizes: [l, o.shape[1] - l], axis: 1)
        return (try toOut(parts[1]), try toAddOut(parts[0]))
    }
}
