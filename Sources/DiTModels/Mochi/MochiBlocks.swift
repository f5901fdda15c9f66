import Tensors

/// `h + RMSNorm(x) · tanh(gate)` in one pass over the rows (diffusers' `h + norm2(x, tanh(gate)[:, None])`
/// with `MochiModulatedRMSNorm`: no weight, ε = 1e-6), `gate` `[B, D]` per sample.
///
/// The product is formed as diffusers orders it: `(x · rsqrt(mean(x²) + ε)) · tanh(gate)`, then added.
func mochiGatedRMSResidual(_ h: Tensor, _ x: Tensor, gate: Tensor) throws(TensorError) -> Tensor {
    guard h.rank == 3, x.shape == h.shape, gate.shape == [h.shape[0], h.shape[2]] else {
        throw .shapeMismatch(operation: "Mochi gated residual", shapes: [h.shape, x.shape, gate.shape],
                             reason: "expected h, x [B, S, D] and gate [B, D]")
    }
    let (b, s, d) = (h.shape[0], h.shape[1], h.shape[2])
    let g = tanh(gate)
    let eps = MochiConfiguration.blockEps
    return h.withUnsafeBufferPointer { ph in
        x.withUnsafeBufferPointer { px in
            g.withUnsafeBufferPointer { pg in
                Tensor(uninitializedShape: h.shape) { out in
                    Parallelism.forEachChunk(b * s, costPerItem: 5 * d) { rows in
                        for r in rows {
                            let xi = px.baseAddress! + r * d, hi = ph.baseAddress! + r * d
                            let gi = pg.baseAddress! + (r / max(s, 1)) * d, o = out.baseAddress! + r * d
                            let inv = RowReductions.inverseRMS(xi, d, eps: eps)
                            for j in 0..<d { o[j] = hi[j] + (xi[j] * inv) * gi[j] }
                        }
                    }
                }
            }
        }
    }
}

/// diffusers' `MochiRMSNormZero`: `linear(silu(temb))` → (scale_msa, gate_msa, scale_mlp, gate_mlp), each
/// `[B, W]`, and `x̂ = RMSNorm(x) · (1 + scale_msa)` (no weight, no shift, ε = 1e-6). W is the width of
/// the stream it normalises (D for the visual stream, P for the text stream); the conditioning is `temb`
/// (width D) for both.
struct MochiRMSNormZero: Sendable {
    /// `linear` `[4W, D]`.
    let linear: Linear

    /// The modulated input and the remaining modulation parameters.
    struct Output: Sendable {
        /// `RMSNorm(x)·(1 + scale_msa)`, `[B, S, W]`.
        let normalized: Tensor
        /// Gate of the attention update (tanh applied by the block).
        let gateMSA: Tensor
        /// Scale of the feed-forward input norm.
        let scaleMLP: Tensor
        /// Gate of the feed-forward update.
        let gateMLP: Tensor
    }

    /// Takes `linear` of the scope (`norm1` or `norm1_context`).
    init(_ weights: WeightScope, conditioningDim: Int, width: Int) {
        linear = Linear(weights["linear"], in: conditioningDim, out: 4 * width)
    }

    /// Applies the norm to `x` `[B, S, W]` with `temb` `[B, D]`.
    func callAsFunction(_ x: Tensor, emb: Tensor) throws(TensorError) -> Output {
        let c = try linear(silu(emb)).chunked(4, axis: 1)
        let n = try rmsNormModulated(x, eps: MochiConfiguration.blockEps, scale: c[0], shift: nil)
        return Output(normalized: n, gateMSA: c[1], scaleMLP: c[2], gateMLP: c[3])
    }
}

/// diffusers' `MochiTransformerBlock` (float32 throughout). Visual stream `h` `[B, S, D]`, text stream
/// `c` `[B, L, P]`:
///
///     (scale, gate, scale_mlp, gate_mlp) = norm1(temb)             (and the text stream's own norm1_context)
///     a_h, a_c = attn1(RMS(h)·(1 + scale), RMS(c)·(1 + c_scale))
///     h = h + RMS(a_h)·tanh(gate)
///     h = h + RMS(ff(RMS(h)·(1 + scale_mlp)))·tanh(gate_mlp)
///     c likewise with its own modulation and ff_context
///
/// RMS has no weight and ε = 1e-6. In the last block (`context_pre_only`) the text stream is only
/// normalised — `norm1_context` is then `MochiLayerNormContinuous`: `RMS(c)·(1 + linear_1(silu(temb)))`
/// — to serve as keys and values; it is not updated (there is no `to_add_out`, no `ff_context`).
struct MochiTransformerBlock: Sendable {
    /// `norm1` (visual modulation `[4D, D]`).
    let norm1: MochiRMSNormZero
    /// `norm1_context` of a full block (`[4P, D]`), nil in the `context_pre_only` block.
    let norm1Context: MochiRMSNormZero?
    /// `norm1_context.linear_1` `[P, D]` of the `context_pre_only` block (its scale), else nil.
    let contextScale: Linear?
    /// `attn1`.
    let attention: MochiAttention
    /// `ff` (visual) and `ff_context` (text, nil in the `context_pre_only` block); no biases.
    let ff: FeedForward
    let ffContext: FeedForward?
    /// Whether this is the last block.
    let contextPreOnly: Bool

    /// Takes every parameter of one block's scope (`transformer_blocks.<i>`).
    init(_ w: WeightScope, configuration c: MochiConfiguration, contextPreOnly: Bool) {
        let d = c.innerDim, p = c.pooledProjectionDim
        self.contextPreOnly = contextPreOnly
        norm1 = MochiRMSNormZero(w["norm1"], conditioningDim: d, width: d)
        if contextPreOnly {
            norm1Context = nil
            contextScale = Linear(w["norm1_context"]["linear_1"], in: d, out: p)
        } else {
            norm1Context = MochiRMSNormZero(w["norm1_context"], conditioningDim: d, width: p)
            contextScale = nil
        }
        attention = MochiAttention(w["attn1"], dim: d, heads: c.numAttentionHeads, headDim: c.attentionHeadDim,
                                   textDim: p, contextPreOnly: contextPreOnly)
        let act = c.feedForwardActivation
        ff = FeedForward(w["ff"], dim: d, inner: c.feedForwardInnerDim, activation: act, bias: false)
        ffContext = contextPreOnly ? nil
            : FeedForward(w["ff_context"], dim: p, inner: c.contextFeedForwardInnerDim, activation: act, bias: false)
    }

    /// Updates `visual` `[B, S, D]` and (unless `context_pre_only`) `text` `[B, L, P]`.
    func callAsFunction(
        visual h: inout Tensor, text c: inout Tensor, temb: Tensor, rotary: (cos: Tensor, sin: Tensor), mask: MochiTextMask
    ) throws(TensorError) {
        let m = try norm1(h, emb: temb)
        let eps = MochiConfiguration.blockEps
        var mc: MochiRMSNormZero.Output? = nil
        let normalizedText: Tensor
        if let norm1Context {
            let o = try norm1Context(c, emb: temb)
            mc = o
            normalizedText = o.normalized
        } else if let contextScale {
            normalizedText = try rmsNormModulated(c, eps: eps, scale: contextScale(silu(temb)), shift: nil)
        } else {
            throw .invalidArgument(operation: "Mochi block", reason: "the text-stream norm is missing")
        }
        let (attnVisual, attnText) = try attention(visual: m.normalized, text: normalizedText, rotary: rotary, mask: mask)
        h = try mochiGatedRMSResidual(h, attnVisual, gate: m.gateMSA)
        h = try mochiGatedRMSResidual(h, ff(rmsNormModulated(h, eps: eps, scale: m.scaleMLP, shift: nil)), gate: m.gateMLP)
        guard let mc, let attnText, let ffContext else { return }
        c = try mochiGatedRMSResidual(c, attnText, gate: mc.gateMSA)
        c = try mochiGatedRMSResidual(c, ffContext(rmsNormModulated(c, eps: eps, scale: mc.scaleMLP, shift: nil)),
                                      gate: mc.gateMLP)
    }
}
