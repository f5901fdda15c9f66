import Tensors

/// What every block of one forward call shares.
struct LTXVideoBlockContext: Sendable {
    /// The block modulation input `temb` `[B, T, 6D]`, T = 1 (one timestep per sample) or S (per token).
    var temb: Tensor
    /// The projected caption `[B, L, D]`.
    var context: Tensor
    /// The caption attention bias `[B, 1, 1, L]` or `[B, 1, Sq, L]`, or nil (no mask).
    var attentionBias: Tensor?
    /// The rotary tables.
    var rotary: LTXVideoRotaryTables
}

/// The six modulation vectors of one block, each `[B, T, D]`: `scale_shift_table + temb` unbound in
/// diffusers' order.
struct LTXVideoBlockModulation: Sendable {
    var shiftMSA: Tensor, scaleMSA: Tensor, gateMSA: Tensor
    var shiftMLP: Tensor, scaleMLP: Tensor, gateMLP: Tensor
}

/// An RMS norm over the last axis without a weight (`elementwise_affine = false`) or with a learned
/// scale, followed by the block's `·(1 + scale) + shift` modulation.
struct LTXVideoModulatedRMSNorm: Sendable {
    /// `[D]`, or nil without affine parameters.
    let weight: Tensor?
    let eps: Float

    func callAsFunction(_ x: Tensor, scale: Tensor, shift: Tensor) throws(TensorError) -> Tensor {
        if let weight {
            return try modulate(rmsNorm(x, weight: weight, eps: eps), scale: scale, shift: shift)
        }
        return try rmsNormModulated(x, eps: eps, scale: scale, shift: shift)
    }
}

/// diffusers' `LTXVideoTransformerBlock` (float32 throughout):
///
///     (shift, scale, gate, shift_mlp, scale_mlp, gate_mlp) = unbind(scale_shift_table + temb)
///     h = h + attn1(norm1(h)·(1 + scale) + shift) · gate
///     h = h + attn2(h, caption)                              (no norm before the cross-attention)
///     h = h + ff(norm2(h)·(1 + scale_mlp) + shift_mlp) · gate_mlp
///
/// `norm1`/`norm2` are diffusers' `RMSNorm` (`norm_eps`, a weight only with `norm_elementwise_affine`).
struct LTXVideoTransformerBlock: Sendable {
    let attn1: LTXVideoAttention
    let attn2: LTXVideoAttention
    let norm1: LTXVideoModulatedRMSNorm
    let norm2: LTXVideoModulatedRMSNorm
    let ff: FeedForward
    /// `[6, D]`.
    let scaleShiftTable: Tensor
    let dim: Int

    /// Takes every parameter of one block's scope (`transformer_blocks.<i>`).
    init(_ w: WeightScope, configuration c: LTXVideoConfiguration) {
        let d = c.innerDim
        dim = d
        let affine = c.normElementwiseAffine
        norm1 = LTXVideoModulatedRMSNorm(weight: affine ? w["norm1"].tensor("weight", shape: [d]) : nil, eps: c.normEps)
        attn1 = LTXVideoAttention(w["attn1"], kind: .selfAttention, configuration: c)
        norm2 = LTXVideoModulatedRMSNorm(weight: affine ? w["norm2"].tensor("weight", shape: [d]) : nil, eps: c.normEps)
        attn2 = LTXVideoAttention(w["attn2"], kind: .crossAttention, configuration: c)
        ff = FeedForward(w["ff"], dim: c.innerDim, inner: c.ffnDim, activation: c.feedForwardActivation ?? .gelu(.tanh))
        scaleShiftTable = w["scale_shift_table"].tensor(shape: [6, d])
    }

    /// `scale_shift_table[None, None] + temb.reshape(B, T, 6, D)`, unbound over the 6.
    func modulation(_ temb: Tensor) throws(TensorError) -> LTXVideoBlockModulation {
        guard temb.rank == 3, temb.shape[2] == 6 * dim else {
            throw .shapeMismatch(operation: "LTX block", shapes: [temb.shape], reason: "temb must be [B, T, 6·D = \(6 * dim)]")
        }
        let (b, t) = (temb.shape[0], temb.shape[1])
        let ada = try scaleShiftTable + temb.reshaped([b, t, 6, dim])
        let m = try ada.chunked(6, axis: 2).map { c throws(TensorError) in try c.reshaped([b, t, dim]) }
        return LTXVideoBlockModulation(shiftMSA: m[0], scaleMSA: m[1], gateMSA: m[2],
                                       shiftMLP: m[3], scaleMLP: m[4], gateMLP: m[5])
    }

    /// `norm1(h)·(1 + scale_msa) + shift_msa`: the self-attention input (block 0's is TeaCache's
    /// modulated input).
    func attentionInput(_ h: Tensor, _ m: LTXVideoBlockModulation) throws(TensorError) -> Tensor {
        try norm1(h, scale: m.scaleMSA, shift: m.shiftMSA)
    }

    /// Runs the block on `h` `[B, S, D]`.
    func callAsFunction(_ h: Tensor, _ ctx: LTXVideoBlockContext) throws(TensorError) -> Tensor {
        let m = try modulation(ctx.temb)
        var h = h
        h = try LTXVideoKernels.gatedResidual(h, attn1.selfAttention(attentionInput(h, m), rotary: ctx.rotary), gate: m.gateMSA)
        var cross = try attn2.crossAttention(h, context: ctx.context, bias: ctx.attentionBias)
        try cross.add(h)
        h = cross
        h = try LTXVideoKernels.gatedResidual(h, ff(norm2(h, scale: m.scaleMLP, shift: m.shiftMLP)), gate: m.gateMLP)
        return h
    }
}
