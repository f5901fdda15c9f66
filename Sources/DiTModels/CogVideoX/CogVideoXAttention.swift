import Tensors

/// diffusers' `Attention` with `CogVideoXAttnProcessor2_0` on the joint `[text; video]` sequence: one
/// set of q/k/v projections for both streams (run as one sgemm), a LayerNorm over each head of q and k
/// (learned scale and bias, ε = 1e-6), the rotary embedding on the video rows of q and k only,
/// scaled-dot-product attention over all tokens, and `to_out.0`.
struct CogVideoXAttention: Sendable {
    /// `to_q`, `to_k`, `to_v` stacked into one `[3D, D]` projection (biases when `attention_bias`).
    let qkv: Linear
    /// `to_out.0` (always with a bias).
    let toOut: Linear
    /// `norm_q` weight and bias `[Dh]`.
    let normQ: (weight: Tensor, bias: Tensor)
    /// `norm_k` weight and bias `[Dh]`.
    let normK: (weight: Tensor, bias: Tensor)
    /// Attention heads.
    let heads: Int
    /// The q/k LayerNorm epsilon (fixed by `CogVideoXBlock`).
    static let eps: Float = 1e-6

    /// Takes `to_q`, `to_k`, `to_v`, `to_out.0`, `norm_q`, `norm_k` of the scope (`attn1`).
    init(_ w: WeightScope, dim: Int, heads: Int, headDim: Int, bias: Bool) {
        qkv = Linear.stacking(["to_q", "to_k", "to_v"].map { Linear(w[$0], in: dim, out: dim, bias: bias) })
        toOut = Linear(w["to_out.0"], in: dim, out: dim)
        normQ = (w["norm_q"].tensor("weight", shape: [headDim]), w["norm_q"].tensor("bias", shape: [headDim]))
        normK = (w["norm_k"].tensor("weight", shape: [headDim]), w["norm_k"].tensor("bias", shape: [headDim]))
        self.heads = heads
    }

    /// Attends the joint sequence `x` `[B, L + S, D]` (text first, `textLength` = L) with the video
    /// rotary tables `[S, Dh]` (or none); returns `[B, L + S, D]` after `to_out.0`.
    func callAsFunction(
        _ x: Tensor, textLength: Int, rope: (cos: Tensor, sin: Tensor)?
    ) throws(TensorError) -> Tensor {
        let (q, k, v) = try JointSequence.splitQKV(qkv(x), heads: heads, leadingRows: textLength,
                                                    normQ: normQ, normK: normK, eps: Self.eps, rope: rope)
        return try toOut(attention(query: q, key: k, value: v, heads: heads))
    }
}
