import Foundation
import Tensors

/// One head-wise query or key normalisation of diffusers' `Attention` (`norm_q`, `norm_k`, `norm_added_q`,
/// `norm_added_k`) for the configuration's `qk_norm`, applied to each head's `attention_head_dim` channels
/// with ε = 1e-6.
public struct HunyuanVideoHeadNorm: Sendable {
    /// The normalisation.
    public let kind: HunyuanVideoQKNorm
    /// The learned scale (`rms_norm`, `layer_norm`).
    public let weight: Tensor?
    /// The learned bias (`layer_norm`).
    public let bias: Tensor?
    /// Channels per head.
    public let headDim: Int
    /// The epsilon diffusers passes to the blocks' attention.
    public static let eps: Float = 1e-6

    /// Takes `weight` (and for `layer_norm` `bias`) `[head_dim]` of the scope when the kind has parameters.
    public init(_ w: WeightScope, kind: HunyuanVideoQKNorm, headDim: Int) {
        self.kind = kind
        self.headDim = headDim
        weight = kind == .rms || kind == .layer ? w.tensor("weight", shape: [headDim]) : nil
        bias = kind == .layer ? w.tensor("bias", shape: [headDim]) : nil
    }

    /// Normalises every head of `t` `[B, S, H·Dh]`.
    public func callAsFunction(_ t: Tensor) throws(TensorError) -> Tensor {
        let shape = t.shape
        let heads = try t.reshaped(Array(shape.dropLast()) + [shape[shape.count - 1] / headDim, headDim])
        switch kind {
        case .identity: return t
        case .rms: return try rmsNorm(heads, weight: weight, eps: Self.eps).reshaped(shape)
        case .layer, .plainLayer: return try layerNorm(heads, weight: weight, bias: bias, eps: Self.eps).reshaped(shape)
        case .l2: return try Self.l2Normalized(t, headDim: headDim)
        }
    }

    /// `x / max(‖x‖₂, ε)` per head (`F.normalize(p=2, dim=-1)`).
    static func l2Normalized(_ t: Tensor, headDim d: Int) throws(TensorError) -> Tensor {
        let rows = d == 0 ? 0 : t.count / d
        return t.withUnsafeBufferPointer { src in
            Tensor(uninitializedShape: t.shape) { dst in
                for r in 0..<rows {
                    let s = src.baseAddress! + r * d, o = dst.baseAddress! + r * d
                    var sq: Float = 0
                    for j in 0..<d { sq += s[j] * s[j] }
                    let norm = Swift.max(sq.squareRoot(), eps)
                    for j in 0..<d { o[j] = s[j] / norm }
                }
            }
        }
    }
}

/// The query/key/value projections of one token stream, run as one ``FusedLinear`` (with any extra
/// projection reading the same input, such as a single block's `proj_mlp`), followed by the head norms of
/// queries and keys.
public struct HunyuanVideoQKV: Sendable {
    /// q, k, v (and extra) stacked.
    public let projection: FusedLinear
    /// The query and key norms.
    public let normQ: HunyuanVideoHeadNorm
    public let normK: HunyuanVideoHeadNorm

    /// Takes the projections `names.q`, `names.k`, `names.v` (`[D, D]` with bias) and the norms of the scope,
    /// then the `extra` layers.
    init(_ w: WeightScope, names: (q: String, k: String, v: String, normQ: String, normK: String),
         configuration c: HunyuanVideoConfiguration, extra: [(weights: WeightScope, width: Int)] = []) {
        let d = c.innerDim
        let kind = c.queryKeyNorm ?? .identity
        projection = FusedLinear([names.q, names.k, names.v].map { w[$0] } + extra.map(\.weights),
                                 in: d, out: [d, d, d] + extra.map(\.width))
        normQ = HunyuanVideoHeadNorm(w[names.normQ], kind: kind, headDim: c.attentionHeadDim)
        normK = HunyuanVideoHeadNorm(w[names.normK], kind: kind, headDim: c.attentionHeadDim)
    }

    /// `(q, k, v)` `[B, S, D]` with q and k normalised, then the extra outputs.
    func callAsFunction(_ x: Tensor) throws(TensorError) -> (q: Tensor, k: Tensor, v: Tensor, extra: ArraySlice<Tensor>) {
        let p = try projection(x)
        return (try normQ(p[0]), try normK(p[1]), p[2], p[3...])
    }
}

/// What every block of one forward reads besides its own streams.
public struct HunyuanVideoBlockContext: Sendable {
    /// The conditioning `temb` `[B, D]`.
    public var temb: Tensor
    /// The first frame's conditioning `[B, D]` of token-replace models, else nil.
    public var tokenReplaceEmb: Tensor?
    /// Image tokens of the first latent frame (`(H/p)·(W/p)`), the ones the token-replace conditioning modulates.
    public var firstFrameTokens: Int
    /// Rotary tables over the joint (image, text) sequence `[S + L, head_dim]` (text rows leave pairs unchanged).
    public var rope: (cos: Tensor, sin: Tensor)
    /// The joint key mask `[B, S + L]` (1 = attend), or nil when no key is masked.
    public var keyMask: Tensor?
}

/// Scaled-dot-product attention over the joint (image, text) sequence: q and k rotated by the joint tables
/// (image tokens only, in effect), keys masked by the text mask. `q`, `k`, `v` `[B, S + L, D]`.
func hunyuanVideoJointAttention(
    q: Tensor, k: Tensor, v: Tensor, context: HunyuanVideoBlockContext, heads: Int
) throws(TensorError) -> Tensor {
    let qr = try RotaryEmbedding.apply(q, cos: context.rope.cos, sin: context.rope.sin, heads: heads, layout: .interleaved)
    let kr = try RotaryEmbedding.apply(k, cos: context.rope.cos, sin: context.rope.sin, heads: heads, layout: .interleaved)
    return try attention(query: qr, key: kr, value: v, heads: heads, mask: context.keyMask.map { .keys($0) })
}
