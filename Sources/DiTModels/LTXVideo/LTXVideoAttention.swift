import Tensors

/// Rotary tables for the full model width: `[B', S, D]` each, with `B'` 1 (shared by the batch, the
/// grid case) or B (explicit per-sample `video_coords`).
struct LTXVideoRotaryTables: Sendable {
    /// `[B', S, D]`.
    var cos: Tensor
    /// `[B', S, D]`.
    var sin: Tensor

    /// The tables of the batch elements `indices` (shared tables stay shared).
    func selecting(batch indices: [Int]) throws(TensorError) -> LTXVideoRotaryTables {
        guard cos.shape[0] > 1 else { return self }
        return LTXVideoRotaryTables(cos: try cos.gatheringRows(indices), sin: try sin.gatheringRows(indices))
    }

    /// `x` `[B, S, D]` rotated pairwise over its whole width (diffusers' LTX `apply_rotary_emb`:
    /// `x·cos + rotate(x)·sin` with `rotate(x₀, x₁) = (−x₁, x₀)`), before the heads are split.
    func apply(_ x: Tensor) throws(TensorError) -> Tensor {
        let (bt, s, d) = (cos.shape[0], cos.shape[1], cos.shape[2])
        if bt == 1 {
            return try RotaryEmbedding.apply(x, cos: cos.reshaped([s, d]), sin: sin.reshaped([s, d]), heads: 1)
        }
        guard x.rank == 3, x.shape[0] == bt else {
            throw .shapeMismatch(operation: "LTX rotary embedding", shapes: [x.shape, cos.shape],
                                 reason: "per-sample tables need one table per batch element")
        }
        var parts: [Tensor] = []
        for b in 0..<bt {
            parts.append(try RotaryEmbedding.apply(x.slice(axis: 0, b..<(b + 1)),
                                                   cos: cos.slice(axis: 0, b..<(b + 1)).reshaped([s, d]),
                                                   sin: sin.slice(axis: 0, b..<(b + 1)).reshaped([s, d]), heads: 1))
        }
        return try Tensor.concatenate(parts, axis: 0)
    }
}

/// Linear layers reading the same input, stacked into one sgemm (with or without biases, as the
/// configuration says); the parts are read from the product's column blocks.
struct LTXVideoStackedLinear: Sendable {
    let stacked: Linear
    let widths: [Int]

    init(_ scopes: [WeightScope], in inFeatures: Int, out width: Int, bias: Bool) {
        stacked = Linear.stacking(scopes.map { Linear($0, in: inFeatures, out: width, bias: bias) })
        widths = Array(repeating: width, count: scopes.count)
    }
}

/// diffusers' `LTXAttention` with `LTXVideoAttnProcessor`: q/k/v projections (biases per
/// `attention_bias`), `torch.nn.RMSNorm` of q and k over all heads together (learned scale, ε = 1e-5,
/// fixed by diffusers), the rotary embedding of q and k in self-attention, scaled-dot-product attention
/// with an optional additive bias, and `to_out.0` (bias per `attention_out_bias`).
///
/// Self-attention runs q, k and v as one sgemm; cross-attention runs k and v (which read the caption)
/// as one.
struct LTXVideoAttention: Sendable {
    /// Which input the keys and values read.
    enum Kind: Sendable { case selfAttention, crossAttention }

    /// The q/k/v (self) or k/v (cross) projections, stacked.
    let stacked: LTXVideoStackedLinear
    /// `to_q` of a cross-attention (nil for self-attention, whose q is stacked).
    let toQ: Linear?
    /// `to_out.0`.
    let toOut: Linear
    /// `[D]` scales of the query and key RMS norms.
    let normQ: Tensor
    let normK: Tensor
    let heads: Int
    let kind: Kind
    /// The ε of `norm_q` / `norm_k` (diffusers hard-codes 1e-5).
    static let qkNormEps: Float = 1e-5

    /// Takes `to_q`, `to_k`, `to_v`, `to_out.0`, `norm_q`, `norm_k` of the scope.
    init(_ w: WeightScope, kind: Kind, configuration c: LTXVideoConfiguration) {
        let d = c.innerDim
        switch kind {
        case .selfAttention:
            stacked = LTXVideoStackedLinear([w["to_q"], w["to_k"], w["to_v"]], in: d, out: d, bias: c.attentionBias)
            toQ = nil
        case .crossAttention:
            toQ = Linear(w["to_q"], in: d, out: d, bias: c.attentionBias)
            stacked = LTXVideoStackedLinear([w["to_k"], w["to_v"]], in: c.crossAttentionDim, out: d, bias: c.attentionBias)
        }
        normQ = w["norm_q"].tensor("weight", shape: [d])
        normK = w["norm_k"].tensor("weight", shape: [d])
        toOut = Linear(w["to_out.0"], in: d, out: d, bias: c.attentionOutBias)
        heads = c.numAttentionHeads
        self.kind = kind
    }

    /// Self-attention of `x` `[B, S, D]` with the rotary tables. q and k are normalised and rotated in
    /// one pass each, straight from the stacked q/k/v product.
    func selfAttention(_ x: Tensor, rotary: LTXVideoRotaryTables) throws(TensorError) -> Tensor {
        let p = try stacked.stacked(x)
        let q = try LTXVideoKernels.normalizedColumns(p, part: 0, parts: 3, weight: normQ, eps: Self.qkNormEps, rotary: rotary)
        let k = try LTXVideoKernels.normalizedColumns(p, part: 1, parts: 3, weight: normK, eps: Self.qkNormEps, rotary: rotary)
        let v = LTXVideoKernels.columns(p, part: 2, parts: 3)
        return try toOut(attention(query: q, key: k, value: v, heads: heads))
    }

    /// Cross-attention of `x` `[B, S, D]` to `context` `[B, L, D]` with an optional additive bias
    /// broadcastable to `[B, H, S, L]`.
    func crossAttention(_ x: Tensor, context: Tensor, bias: Tensor?) throws(TensorError) -> Tensor {
        guard let toQ else {
            throw .invalidArgument(operation: "LTX attention", reason: "a self-attention layer cannot attend to a context")
        }
        let q = try rmsNorm(toQ(x), weight: normQ, eps: Self.qkNormEps)
        let kv = try stacked.stacked(context)
        let k = try LTXVideoKernels.normalizedColumns(kv, part: 0, parts: 2, weight: normK, eps: Self.qkNormEps, rotary: nil)
        let v = LTXVideoKernels.columns(kv, part: 1, parts: 2)
        return try toOut(attention(query: q, key: k, value: v, heads: heads, mask: bias.map { .additive($0) }))
    }
}
