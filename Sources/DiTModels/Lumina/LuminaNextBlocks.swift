import Foundation
import Tensors

/// What every Lumina-Next block of one call reads besides the image tokens.
struct LuminaNextBlockContext: Sendable {
    /// The conditioning `temb` `[B, min(D, 1024)]`.
    public var temb: Tensor
    /// The raw caption features `[B, L, cross_attention_dim]` (each block normalises them itself).
    public var caption: Tensor
    /// The caption key mask `[B, L]` (1 = attend).
    public var captionMask: Tensor
    /// Rotary tables `[S, Dh]` of the image tokens (interleaved pairs).
    public var rope: (cos: Tensor, sin: Tensor)
    /// The self-attention softmax scale (proportional attention, or `1/√Dh`).
    public var selfAttentionScale: Float
}

/// diffusers' `LuminaNextDiTBlock`:
///
///     (x̂, g_msa, s_mlp, g_mlp) = norm1(h, temb)                   x̂ = RMSNorm(h)·(1 + s_msa)
///     a = attn1(x̂)  (self, rotary q and k, proportional scale)
///     c = attn2(x̂, norm1_context(caption))  (rotary q only, caption key mask)
///     h = h + tanh(g_msa)·norm2(to_out(a + tanh(gate)·c))          gate per head
///     h = h + tanh(g_mlp)·ffn_norm2(ff(ffn_norm1(h)·(1 + s_mlp)))
///
/// Both attentions have `heads` query heads over `kv_heads` key/value heads, optional LayerNorms of the
/// full query/key widths (`qk_norm`), no biases; `attn1` has no output projection, `attn2`'s `to_out.0`
/// projects their gated sum. The norms are fused with their modulation and gated residual updates
/// (``LuminaKernels``).
struct LuminaNextBlock: Sendable {
    /// `norm1`.
    let norm1: LuminaRMSNormZero
    /// `attn1.to_q`, `attn1.to_k`, `attn1.to_v`, `attn2.to_q` (all read `x̂`).
    let toQ1: Linear, toK1: Linear, toV1: Linear, toQ2: Linear
    /// `attn2.to_k`, `attn2.to_v` (read the normalised caption).
    let toK2: Linear, toV2: Linear
    /// `attn1.norm_q`, `attn1.norm_k`, `attn2.norm_q`, `attn2.norm_k` (with `qk_norm`).
    let qkNorms: (q1: AffineLayerNorm, k1: AffineLayerNorm, q2: AffineLayerNorm, k2: AffineLayerNorm)?
    /// `attn2.to_out.0`.
    let toOut: Linear
    /// `tanh(gate)` repeated over each head's channels, `[heads·Dh]`.
    let crossGate: Tensor
    /// `norm1_context`, `norm2`, `ffn_norm1`, `ffn_norm2`.
    let norm1Context: RMSNorm
    let norm2: RMSNorm
    let ffnNorm1: RMSNorm
    let ffnNorm2: RMSNorm
    /// `feed_forward`.
    let feedForward: LuminaFeedForward
    /// The head layout.
    let layout: LuminaHeads

    /// Takes every parameter of one block's scope (`layers.<i>`).
    init(_ w: WeightScope, configuration c: LuminaNextConfiguration) {
        let d = c.hiddenSize, l = c.heads
        let (qw, kvw) = (l.queryWidth, l.kvWidth)
        layout = l
        norm1 = LuminaRMSNormZero(w["norm1"], dim: d, eps: c.normEps)
        toQ1 = Linear(w["attn1.to_q"], in: d, out: qw, bias: false)
        toK1 = Linear(w["attn1.to_k"], in: d, out: kvw, bias: false)
        toV1 = Linear(w["attn1.to_v"], in: d, out: kvw, bias: false)
        toQ2 = Linear(w["attn2.to_q"], in: d, out: qw, bias: false)
        toK2 = Linear(w["attn2.to_k"], in: c.crossAttentionDim, out: kvw, bias: false)
        toV2 = Linear(w["attn2.to_v"], in: c.crossAttentionDim, out: kvw, bias: false)
        qkNorms = c.qkNorm
            ? (AffineLayerNorm(w["attn1.norm_q"], dim: qw, eps: 1e-5), AffineLayerNorm(w["attn1.norm_k"], dim: kvw, eps: 1e-5),
               AffineLayerNorm(w["attn2.norm_q"], dim: qw, eps: 1e-5), AffineLayerNorm(w["attn2.norm_k"], dim: kvw, eps: 1e-5))
            : nil
        toOut = Linear(w["attn2.to_out.0"], in: qw, out: d, bias: false)
        let gate = w["gate"].tensor(shape: [l.heads])
        let g = gate.count == l.heads ? gate.scalars.map { Foundation.tanh($0) } : []
        crossGate = (try? Tensor(shape: [qw], scalars: g.flatMap { Array(repeating: $0, count: l.headDim) }))
            ?? Tensor(scalar: 0)
        norm1Context = RMSNorm(w["norm1_context"], dim: c.crossAttentionDim, eps: c.normEps)
        norm2 = RMSNorm(w["norm2"], dim: d, eps: c.normEps)
        ffnNorm1 = RMSNorm(w["ffn_norm1"], dim: d, eps: c.normEps)
        ffnNorm2 = RMSNorm(w["ffn_norm2"], dim: d, eps: c.normEps)
        feedForward = LuminaFeedForward(w["feed_forward"], dim: d, inner: c.ffnInnerDim)
    }

    /// Runs the block on the image tokens `h` `[B, S, D]`.
    func callAsFunction(_ h: Tensor, _ ctx: LuminaNextBlockContext) throws(TensorError) -> Tensor {
        let n = try norm1(h, emb: ctx.temb)
        let x = n.normalized
        var (q1, k1, q2) = (try toQ1(x), try toK1(x), try toQ2(x))
        let v1 = try toV1(x)
        let caption = try norm1Context(ctx.caption)
        var k2 = try toK2(caption)
        let v2 = try toV2(caption)
        if let qk = qkNorms {
            (q1, k1, q2, k2) = (try qk.q1(q1), try qk.k1(k1), try qk.q2(q2), try qk.k2(k2))
        }
        let (cos, sin) = ctx.rope
        q1 = try RotaryEmbedding.apply(q1, cos: cos, sin: sin, heads: layout.heads)
        k1 = try RotaryEmbedding.apply(k1, cos: cos, sin: sin, heads: layout.kvHeads)
        q2 = try RotaryEmbedding.apply(q2, cos: cos, sin: sin, heads: layout.heads)
        let selfOut = try luminaAttention(q: q1, k: k1, v: v1, layout: layout, keyMask: nil, scale: ctx.selfAttentionScale)
        let crossOut = try luminaAttention(q: q2, k: k2, v: v2, layout: layout, keyMask: ctx.captionMask, scale: nil)
        let mixed = try LuminaKernels.addingScaledColumns(selfOut, crossOut, columns: crossGate)
        var out = try LuminaKernels.addingGatedRMSNorm(h, toOut(mixed), weight: norm2.weight, eps: norm2.eps, gate: n.gateMSA)
        let mlp = try feedForward(LuminaKernels.rmsNormScaled(out, weight: ffnNorm1.weight, eps: ffnNorm1.eps, scale: n.scaleMLP))
        out = try LuminaKernels.addingGatedRMSNorm(out, mlp, weight: ffnNorm2.weight, eps: ffnNorm2.eps, gate: n.gateMLP)
        return out
    }
}
