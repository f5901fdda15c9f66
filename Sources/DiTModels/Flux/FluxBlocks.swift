import Tensors

/// A FLUX double-stream block (`FluxTransformerBlock`): separate adaLN-Zero modulation, projections and
/// feed-forwards for the image and text streams, joint attention across both.
struct FluxDoubleStreamBlock: Sendable {
    /// `norm1` (image stream) and `norm1_context` (text stream).
    let norm1: AdaLayerNormZero
    let norm1Context: AdaLayerNormZero
    /// `attn`.
    let attention: FluxJointAttention
    /// `ff` and `ff_context` (GELU-tanh, 4× width).
    let ff: FeedForward
    let ffContext: FeedForward
    /// Epsilon of the non-affine LayerNorms `norm2` / `norm2_context`.
    static let eps: Float = 1e-6

    /// Takes the parameters of one block's scope (e.g. `transformer_blocks.0`).
    init(_ weights: WeightScope, configuration c: FluxConfiguration) {
        let d = c.innerDim
        norm1 = AdaLayerNormZero(weights["norm1"], dim: d)
        norm1Context = AdaLayerNormZero(weights["norm1_context"], dim: d)
        attention = FluxJointAttention(weights["attn"], dim: d, heads: c.numAttentionHeads, headDim: c.attentionHeadDim)
        ff = FeedForward(weights["ff"], dim: d, inner: c.mlpHiddenDim, activation: .gelu(.tanh))
        ffContext = FeedForward(weights["ff_context"], dim: d, inner: c.mlpHiddenDim, activation: .gelu(.tanh))
    }

    /// Updates `image` `[B, S, D]` and `text` `[B, L, D]` with conditioning `temb` `[B, D]`.
    func callAsFunction(
        image: inout Tensor, text: inout Tensor, temb: Tensor, rope: (cos: Tensor, sin: Tensor)
    ) throws(TensorError) {
        let m = try norm1(image, emb: temb)
        let mc = try norm1Context(text, emb: temb)
        let (attnImage, attnText) = try attention(image: m.normalized, text: mc.normalized, rope: rope)
        image = try Self.feedForwardUpdate(addingGated(image, attnImage, gate: m.gateMSA), ff, m)
        text = try Self.feedForwardUpdate(addingGated(text, attnText, gate: mc.gateMSA), ffContext, mc)
    }

    /// `h + gate_mlp · ff(LN(h)·(1 + scale_mlp) + shift_mlp)`.
    private static func feedForwardUpdate(
        _ h: Tensor, _ ff: FeedForward, _ m: AdaLayerNormZero.Output
    ) throws(TensorError) -> Tensor {
        let n = try layerNormModulated(h, eps: eps, scale: m.scaleMLP, shift: m.shiftMLP)
        return try addingGated(h, ff(n), gate: m.gateMLP)
    }
}

/// A FLUX single-stream block (`FluxSingleTransformerBlock`) on the joint sequence (text tokens first):
/// `x + gate · proj_out([attention(x̂), gelu_tanh(proj_mlp(x̂))])` with `x̂` the adaLN-Zero-single output.
///
/// `proj_mlp` shares one sgemm with the q/k/v projections (they read the same `x̂`), and `proj_out`
/// is applied to the two halves without building their concatenation.
struct FluxSingleStreamBlock: Sendable {
    /// `norm`.
    let norm: AdaLayerNormZeroSingle
    /// `proj_out` `[D, D + 4D]` over the concatenated attention and MLP outputs.
    let projOut: Linear
    /// `attn` (no output projection: `pre_only`), fused with `proj_mlp` `[4D, D]`.
    let attention: FluxQKVProjection

    /// Takes the parameters of one block's scope (e.g. `single_transformer_blocks.0`).
    init(_ weights: WeightScope, configuration c: FluxConfiguration) {
        let d = c.innerDim
        norm = AdaLayerNormZeroSingle(weights["norm"], dim: d)
        projOut = Linear(weights["proj_out"], in: d + c.mlpHiddenDim, out: d)
        attention = FluxQKVProjection(weights["attn"], names: ("to_q", "to_k", "to_v", "norm_q", "norm_k"),
                                      inDim: d, heads: c.numAttentionHeads, headDim: c.attentionHeadDim, eps: 1e-6,
                                      extra: [(weights["proj_mlp"], c.mlpHiddenDim)])
    }

    /// Updates the joint sequence `x` `[B, L+S, D]`.
    func callAsFunction(_ x: inout Tensor, temb: Tensor, rope: (cos: Tensor, sin: Tensor)) throws(TensorError) {
        let (n, gate) = try norm(x, emb: temb)
        let (q, k, v, extra) = try attention(n)
        guard let mlpIn = extra.first else {
            throw .invalidArgument(operation: "FLUX single block", reason: "the MLP projection is missing")
        }
        let mlp = gelu(mlpIn, approximation: .tanh)
        let a = try fluxRotaryAttention(q: q, k: k, v: v, rope: rope, heads: attention.heads)
        let out = try linear(concatenating: [a, mlp], weight: projOut.weight, bias: projOut.bias)
        x = try addingGated(x, out, gate: gate)
    }
}
