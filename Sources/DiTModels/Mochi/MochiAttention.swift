import Tensors

/// Several bias-free linear layers reading the same input as one sgemm over their stacked weights
/// (diffusers' `to_q`/`to_k`/`to_v` and `add_q_proj`/`add_k_proj`/`add_v_proj` of Mochi have no bias).
struct MochiStackedProjection: Sendable {
    /// The stacked `[Σ outᵢ, in]` weight.
    let stacked: Linear
    /// The output width of each part.
    let widths: [Int]

    /// Takes `weight` `[out, in]` of every scope (no bias), in order.
    init(_ scopes: [WeightScope], in inFeatures: Int, out: Int) {
        let parts = scopes.map { Linear($0, in: inFeatures, out: out, bias: false).weight }
        let weight = (try? Tensor.concatenate(parts, axis: 0)) ?? Tensor(scalar: 0)
        stacked = Linear(weight: weight, bias: nil)
        widths = Array(repeating: out, count: scopes.count)
    }

    /// Each part's output `[..., out]`.
    func callAsFunction(_ x: Tensor) throws(TensorError) -> [Tensor] {
        try stacked(x).split(sizes: widths, axis: -1)
    }
}

/// The text mask as the joint attention uses it: which caption tokens of each sample are valid
/// (`encoder_attention_mask ≠ 0`), and the key mask `[B, S + L]` of the joint sequence (visual tokens
/// always attend).
public struct MochiTextMask: Sendable {
    /// The valid caption-token indices of each sample, ascending.
    public let validTokens: [[Int]]
    /// `[B, S + L]`: 1 for every visual token and every valid caption token, else 0.
    public let jointKeys: Tensor
    /// Caption tokens per sample (L).
    public let textLength: Int

    /// The mask of `mask` `[B, L]` for `visualTokens` S visual tokens per sample.
    public init(_ mask: Tensor, visualTokens s: Int) throws(TensorError) {
        let (b, l) = (mask.shape[0], mask.shape[1])
        let m = mask.scalars
        var valid: [[Int]] = []
        var keys = [Float](repeating: 1, count: b * (s + l))
        for bi in 0..<b {
            var v: [Int] = []
            for j in 0..<l {
                if m[bi * l + j] != 0 { v.append(j) } else { keys[bi * (s + l) + s + j] = 0 }
            }
            valid.append(v)
        }
        validTokens = valid
        jointKeys = try Tensor(shape: [b, s + l], scalars: keys)
        textLength = l
    }

    /// The rows of the selected batch elements.
    func selecting(batch indices: [Int]) throws(TensorError) -> MochiTextMask {
        MochiTextMask(validTokens: indices.map { validTokens[$0] }, jointKeys: try jointKeys.gatheringRows(indices),
                      textLength: textLength)
    }

    private init(validTokens: [[Int]], jointKeys: Tensor, textLength: Int) {
        self.validTokens = validTokens
        self.jointKeys = jointKeys
        self.textLength = textLength
    }

    /// diffusers' layout of the caption part of the attention output: it attends only the valid tokens
    /// of each sample, and writes their outputs *in order to the first rows*, zero-padded to L. For the
    /// usual mask (ones, then trailing zeros) that only zeroes the padding rows; a mask with holes moves
    /// rows forward, exactly as diffusers' `F.pad` after the per-sample selection does.
    func compacted(_ text: Tensor) -> Tensor {
        let (b, l, w) = (text.shape[0], text.shape[1], text.shape[2])
        return text.withUnsafeBufferPointer { src in
            Tensor(uninitializedShape: text.shape) { dst in
                dst.update(repeating: 0)
                for bi in 0..<b {
                    for (j, token) in validTokens[bi].enumerated() {
                        (dst.baseAddress! + (bi * l + j) * w).update(from: src.baseAddress! + (bi * l + token) * w, count: w)
                    }
                }
            }
        }
    }
}

/// diffusers' `MochiAttention` with `MochiAttnProcessor2_0`: asymmetric joint attention.
///
/// The visual stream (width D) is projected by `to_q`/`to_k`/`to_v`, the text stream (width P) by
/// `add_q_proj`/`add_k_proj`/`add_v_proj`, both to D = H·Dh without bias; each head's queries and keys are
/// RMS-normalised (`norm_q`, `norm_k`, `norm_added_q`, `norm_added_k`, ε = 1e-5, learned scale); the visual
/// queries and keys are rotated by the learned 3-D rotary tables. Each sample attends over
/// `[visual tokens; its valid caption tokens]`. The visual output goes through `to_out.0` (with bias, back
/// to D); the caption output (``MochiTextMask/compacted(_:)``) through `to_add_out` (with bias, to P),
/// except in the `context_pre_only` block, which has no `to_add_out` and whose caption output nobody reads
/// (only the visual queries are computed there).
public struct MochiAttention: Sendable {
    /// `to_q`, `to_k`, `to_v` stacked.
    let visual: MochiStackedProjection
    /// `add_q_proj`, `add_k_proj`, `add_v_proj` stacked.
    let text: MochiStackedProjection
    /// `[Dh]` per-head RMS norm scales.
    public let normQ: Tensor
    public let normK: Tensor
    public let normAddedQ: Tensor
    public let normAddedK: Tensor
    /// `to_out.0` `[D, D]` with bias.
    public let toOut: Linear
    /// `to_add_out` `[P, D]` with bias; nil in the `context_pre_only` block.
    public let toAddOut: Linear?
    public let heads: Int
    public let headDim: Int

    /// Takes the parameters of the scope (`transformer_blocks.<i>.attn1`).
    public init(_ w: WeightScope, dim: Int, heads: Int, headDim: Int, textDim: Int, contextPreOnly: Bool) {
        let inner = heads * headDim
        normQ = w["norm_q"].tensor("weight", shape: [headDim])
        normK = w["norm_k"].tensor("weight", shape: [headDim])
        normAddedQ = w["norm_added_q"].tensor("weight", shape: [headDim])
        normAddedK = w["norm_added_k"].tensor("weight", shape: [headDim])
        visual = MochiStackedProjection([w["to_q"], w["to_k"], w["to_v"]], in: dim, out: inner)
        text = MochiStackedProjection([w["add_q_proj"], w["add_k_proj"], w["add_v_proj"]], in: textDim, out: inner)
        toOut = Linear(w["to_out.0"], in: inner, out: dim)
        toAddOut = contextPreOnly ? nil : Linear(w["to_add_out"], in: inner, out: textDim)
        self.heads = heads
        self.headDim = headDim
    }

    /// Per-head RMS norm of `[B, S, H·Dh]`.
    private func headNorm(_ t: Tensor, _ weight: Tensor) throws(TensorError) -> Tensor {
        let shape = t.shape
        return try rmsNorm(t.reshaped([shape[0], shape[1], heads, headDim]), weight: weight, eps: MochiConfiguration.qkEps)
            .reshaped(shape)
    }

    /// Attends the normalised visual tokens `x` `[B, S, D]` and caption tokens `c` `[B, L, P]` jointly.
    /// Returns the visual output `[B, S, D]` and, unless `context_pre_only`, the caption output `[B, L, P]`.
    public func callAsFunction(
        visual x: Tensor, text c: Tensor, rotary: (cos: Tensor, sin: Tensor), mask: MochiTextMask
    ) throws(TensorError) -> (visual: Tensor, text: Tensor?) {
        let pv = try visual(x)
        let pt = try text(c)
        let qv = try RotaryEmbedding.apply(headNorm(pv[0], normQ), cos: rotary.cos, sin: rotary.sin, heads: 1)
        let kv = try RotaryEmbedding.apply(headNorm(pv[1], normK), cos: rotary.cos, sin: rotary.sin, heads: 1)
        let kt = try headNorm(pt[1], normAddedK)
        let keys = try Tensor.concatenate([kv, kt], axis: 1)
        let values = try Tensor.concatenate([pv[2], pt[2]], axis: 1)
        let keyMask = AttentionMask.keys(mask.jointKeys)
        let visualOut = try toOut(attention(query: qv, key: keys, value: values, heads: heads, mask: keyMask))
        guard let toAddOut else { return (visualOut, nil) }
        let qt = try headNorm(pt[0], normAddedQ)
        let textOut = try attention(query: qt, key: keys, value: values, heads: heads, mask: keyMask)
        return (visualOut, try toAddOut(mask.compacted(textOut)))
    }
}
