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
        stacked = Linear.stacking(scopes.map { Linear($0, in: inFeatures, out: out, bias: false) })
        widths = Array(repeating: out, count: scopes.count)
    }

    /// Each part's output `[..., out]`.
    func callAsFunction(_ x: Tensor) throws(TensorError) -> [Tensor] {
        try stacked(x).split(sizes: widths, axis: -1)
    }
}

/// The visual stream's fused `[q | k | v]` projection `[B, S, 3·H·Dh]` split in one pass into q and k —
/// each head RMS-normalised (learned scale `[Dh]`, ε = 1e-5) and rotated by the tables `[S, H·Dh]`
/// (interleaved pairs: `(a·cos − b·sin, b·cos + a·sin)`) — and a copy of v.
///
/// The same arithmetic as `rmsNorm` per head followed by ``RotaryEmbedding/apply(_:cos:sin:heads:layout:)``
/// with one table row per token, without the five intermediate tensors.
func mochiNormRotateSplit(
    _ qkv: Tensor, heads: Int, headDim dh: Int, normQ: Tensor, normK: Tensor, cos: Tensor, sin: Tensor
) throws(TensorError) -> (q: Tensor, k: Tensor, v: Tensor) {
    let d = heads * dh
    guard qkv.rank == 3, qkv.shape[2] == 3 * d, dh % 2 == 0, normQ.shape == [dh], normK.shape == [dh],
          cos.shape == [qkv.shape[1], d], sin.shape == cos.shape else {
        throw .shapeMismatch(operation: "Mochi q/k norm and rotary", shapes: [qkv.shape, normQ.shape, cos.shape, sin.shape],
                             reason: "expected [B, S, 3·H·Dh], norms [Dh] and tables [S, H·Dh] with Dh even")
    }
    let (b, s) = (qkv.shape[0], qkv.shape[1])
    let eps = MochiConfiguration.qkEps
    let shape = [b, s, d]
    var q = try Tensor(zeros: shape), k = try Tensor(zeros: shape), v = try Tensor(zeros: shape)
    qkv.withUnsafeBufferPointer { px in
        cos.withUnsafeBufferPointer { pc in
            sin.withUnsafeBufferPointer { ps in
                normQ.withUnsafeBufferPointer { pwq in
                    normK.withUnsafeBufferPointer { pwk in
                        q.withUnsafeMutableBufferPointer { pq in
                            k.withUnsafeMutableBufferPointer { pk in
                                v.withUnsafeMutableBufferPointer { pv in
                                    let outs = (pq.baseAddress!, pk.baseAddress!, pv.baseAddress!)
                                    Parallelism.forEachChunk(b * s, costPerItem: 12 * d) { rows in
                                        for r in rows {
                                            let src = px.baseAddress! + r * 3 * d
                                            let c = pc.baseAddress! + (r % s) * d, sn = ps.baseAddress! + (r % s) * d
                                            for part in 0..<2 {
                                                let weight = part == 0 ? pwq.baseAddress! : pwk.baseAddress!
                                                let out = part == 0 ? outs.0 : outs.1
                                                for h in 0..<heads {
                                                    let x = src + part * d + h * dh, o = out + r * d + h * dh
                                                    let ch = c + h * dh, sh = sn + h * dh
                                                    let inv = RowReductions.inverseRMS(x, dh, eps: eps)
                                                    var i = 0
                                                    while i < dh {
                                                        let a = (x[i] * inv) * weight[i], bb = (x[i + 1] * inv) * weight[i + 1]
                                                        o[i] = a * ch[i] - bb * sh[i]
                                                        o[i + 1] = bb * ch[i + 1] + a * sh[i + 1]
                                                        i += 2
                                                    }
                                                }
                                            }
                                            (outs.2 + r * d).update(from: src + 2 * d, count: d)
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    return (q, k, v)
}

/// The text mask as the joint attention uses it: which caption tokens of each sample are valid
/// (`encoder_attention_mask ≠ 0`).
///
/// diffusers' processor attends each sample separately over `[visual tokens; its valid caption tokens]`
/// and writes the caption outputs of the valid tokens *in order to the first rows*, zero-padded to L.
/// This port does the same: ``validRows(_:sample:)`` selects the valid rows (a view for the usual mask of
/// ones then trailing zeros), ``padded(_:length:)`` lays the outputs out as diffusers' `F.pad` does. A
/// mask with holes therefore moves rows forward exactly as in diffusers.
struct MochiTextMask: Sendable {
    /// The valid caption-token indices of each sample, ascending.
    let validTokens: [[Int]]
    /// Caption tokens per sample (L).
    let textLength: Int

    /// The mask of `mask` `[B, L]`.
    init(_ mask: Tensor) {
        let (b, l) = (mask.shape[0], mask.shape[1])
        let m = mask.scalars
        validTokens = (0..<b).map { bi in (0..<l).filter { m[bi * l + $0] != 0 } }
        textLength = l
    }

    private init(validTokens: [[Int]], textLength: Int) {
        self.validTokens = validTokens
        self.textLength = textLength
    }

    /// The rows of the selected batch elements.
    func selecting(batch indices: [Int]) -> MochiTextMask {
        MochiTextMask(validTokens: indices.map { validTokens[$0] }, textLength: textLength)
    }

    /// The valid caption rows of sample `b` of `t` `[B, L, W]`, as `[1, n, W]`.
    func validRows(_ t: Tensor, sample b: Int) throws(TensorError) -> Tensor {
        let valid = validTokens[b]
        let one = try t.slice(axis: 0, b..<(b + 1))
        if valid.last.map({ $0 + 1 == valid.count }) ?? true { return try one.slice(axis: 1, 0..<valid.count) }
        let w = t.shape[2]
        return one.withUnsafeBufferPointer { src in
            Tensor(uninitializedShape: [1, valid.count, w]) { dst in
                for (j, token) in valid.enumerated() {
                    (dst.baseAddress! + j * w).update(from: src.baseAddress! + token * w, count: w)
                }
            }
        }
    }

    /// `[1, n, W]` outputs zero-padded to `[1, length, W]`.
    static func padded(_ t: Tensor?, length: Int, width: Int) throws(TensorError) -> Tensor {
        guard let t, t.shape[1] > 0 else { return try Tensor(zeros: [1, length, width]) }
        if t.shape[1] == length { return t }
        return try Tensor.concatenate([t, Tensor(zeros: [1, length - t.shape[1], width])], axis: 1)
    }
}

/// diffusers' `MochiAttention` with `MochiAttnProcessor2_0`: asymmetric joint attention.
///
/// The visual stream (width D) is projected by `to_q`/`to_k`/`to_v`, the text stream (width P) by
/// `add_q_proj`/`add_k_proj`/`add_v_proj`, both to D = H·Dh without bias; each head's queries and keys are
/// RMS-normalised (`norm_q`, `norm_k`, `norm_added_q`, `norm_added_k`, ε = 1e-5, learned scale); the visual
/// queries and keys are rotated by the learned 3-D rotary tables. Each sample attends over
/// `[visual tokens; its valid caption tokens]`. The visual output goes through `to_out.0` (with bias, back
/// to D); the caption output (laid out as ``MochiTextMask`` describes) through `to_add_out` (with bias, to P),
/// except in the `context_pre_only` block, which has no `to_add_out` and whose caption output nobody reads
/// (only the visual queries are computed there).
struct MochiAttention: Sendable {
    /// `to_q`, `to_k`, `to_v` stacked.
    let visual: MochiStackedProjection
    /// `add_q_proj`, `add_k_proj`, `add_v_proj` stacked.
    let text: MochiStackedProjection
    /// `[Dh]` per-head RMS norm scales.
    let normQ: Tensor
    let normK: Tensor
    let normAddedQ: Tensor
    let normAddedK: Tensor
    /// `to_out.0` `[D, D]` with bias.
    let toOut: Linear
    /// `to_add_out` `[P, D]` with bias; nil in the `context_pre_only` block.
    let toAddOut: Linear?
    let heads: Int
    let headDim: Int

    /// Takes the parameters of the scope (`transformer_blocks.<i>.attn1`).
    init(_ w: WeightScope, dim: Int, heads: Int, headDim: Int, textDim: Int, contextPreOnly: Bool) {
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

    /// Attends the normalised visual tokens `x` `[B, S, D]` and caption tokens `c` `[B, L, P]` jointly, each
    /// sample over its visual and valid caption tokens. Returns the visual output `[B, S, D]` and, unless
    /// `context_pre_only`, the caption output `[B, L, P]`.
    func callAsFunction(
        visual x: Tensor, text c: Tensor, rotary: (cos: Tensor, sin: Tensor), mask: MochiTextMask
    ) throws(TensorError) -> (visual: Tensor, text: Tensor?) {
        let (qv, kv, vv) = try mochiNormRotateSplit(visual.stacked(x), heads: heads, headDim: headDim, normQ: normQ,
                                                    normK: normK, cos: rotary.cos, sin: rotary.sin)
        let pt = try text(c)
        let kt = try headNorm(pt[1], normAddedK)
        let qt = toAddOut == nil ? nil : try headNorm(pt[0], normAddedQ)
        let (b, l, width) = (x.shape[0], c.shape[1], qv.shape[2])
        var visualOut: [Tensor] = [], textOut: [Tensor] = []
        for i in 0..<b {
            // diffusers' per-sample attention over [visual; valid caption tokens]: no key mask needed.
            let keys = try Tensor.concatenate([kv.slice(axis: 0, i..<(i + 1)), mask.validRows(kt, sample: i)], axis: 1)
            let values = try Tensor.concatenate([vv.slice(axis: 0, i..<(i + 1)), mask.validRows(pt[2], sample: i)], axis: 1)
            visualOut.append(try attention(query: qv.slice(axis: 0, i..<(i + 1)), key: keys, value: values, heads: heads))
            if let qt {
                let q = try mask.validRows(qt, sample: i)
                let o = q.shape[1] == 0 ? nil : try attention(query: q, key: keys, value: values, heads: heads)
                textOut.append(try MochiTextMask.padded(o, length: l, width: width))
            }
        }
        let v = try toOut(b == 1 ? visualOut[0] : Tensor.concatenate(visualOut, axis: 0))
        guard let toAddOut else { return (v, nil) }
        return (v, try toAddOut(b == 1 ? textOut[0] : Tensor.concatenate(textOut, axis: 0)))
    }
}
