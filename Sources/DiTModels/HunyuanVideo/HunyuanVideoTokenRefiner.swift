import Tensors

/// One block of diffusers' `HunyuanVideoIndividualTokenRefiner` (`HunyuanVideoIndividualTokenRefinerBlock`):
///
///     (gate_msa, gate_mlp) = chunk₂(norm_out.linear(silu(temb)))
///     h = h + attn(norm1(h), mask) · gate_msa
///     h = h + ff(norm2(h)) · gate_mlp
///
/// `norm1`/`norm2` are affine LayerNorms (ε = 1e-6), `attn` a plain self-attention with biased
/// projections and no q/k norm, `ff` a `"linear-silu"` feed-forward of width `4·D`.
struct HunyuanVideoRefinerBlock: Sendable {
    /// `norm1`, `norm2`.
    let norm1: AffineLayerNorm
    let norm2: AffineLayerNorm
    /// `attn.to_q`, `attn.to_k`, `attn.to_v` as one product.
    let qkv: FusedLinear
    /// `attn.to_out.0`.
    let toOut: Linear
    /// `ff`.
    let ff: FeedForward
    /// `norm_out.linear`: `temb` → the two gates.
    let gates: Linear
    /// Attention heads.
    let heads: Int

    /// Takes one block's scope (`context_embedder.token_refiner.refiner_blocks.<i>`).
    init(_ w: WeightScope, configuration c: HunyuanVideoConfiguration) {
        let d = c.innerDim
        norm1 = AffineLayerNorm(w["norm1"], dim: d, eps: 1e-6)
        norm2 = AffineLayerNorm(w["norm2"], dim: d, eps: 1e-6)
        qkv = FusedLinear([w["attn"]["to_q"], w["attn"]["to_k"], w["attn"]["to_v"]], in: d, out: [d, d, d])
        toOut = Linear(w["attn"]["to_out.0"], in: d, out: d)
        ff = FeedForward(w["ff"], dim: d, inner: c.refinerMLPHiddenDim, activation: .silu)
        gates = Linear(w["norm_out"]["linear"], in: d, out: 2 * d)
        heads = c.numAttentionHeads
    }

    /// Refines `h` `[B, L, D]` with the refiner's conditioning `temb` `[B, D]` and the self-attention rule
    /// of the text mask.
    func callAsFunction(
        _ h: Tensor, temb: Tensor, mask: HunyuanVideoTokenRefiner.SelfAttentionMask
    ) throws(TensorError) -> Tensor {
        let p = try qkv(norm1(h))
        let a = try toOut(mask.attend(p[0], p[1], p[2], heads: heads))
        let g = try modulationChunks(gates, temb, count: 2)
        let h1 = try addingGated(h, a, gate: g[0])
        return try addingGated(h1, ff(norm2(h1)), gate: g[1])
    }
}

/// diffusers' `HunyuanVideoTokenRefiner` (the model's `context_embedder`): the text tokens are pooled by
/// their mask, embedded with the timestep into their own conditioning
/// (`CombinedTimestepTextProjEmbeddings`), projected to the model width (`proj_in`) and refined by
/// self-attention blocks that honour the mask.
struct HunyuanVideoTokenRefiner: Sendable {
    /// `time_text_embed.timestep_embedder`.
    let timestepEmbedder: TimestepMLP
    /// `time_text_embed.text_embedder` (PixArt-α projection with SiLU) of the pooled text.
    let textEmbedder: PixArtAlphaTextProjection
    /// `proj_in`.
    let projIn: Linear
    /// `token_refiner.refiner_blocks`.
    let blocks: [HunyuanVideoRefinerBlock]

    /// Takes the `context_embedder` scope.
    init(_ w: WeightScope, configuration c: HunyuanVideoConfiguration) {
        let d = c.innerDim, ch = HunyuanVideoConfiguration.timestepChannels
        timestepEmbedder = TimestepMLP(w["time_text_embed"]["timestep_embedder"], in: ch, hidden: d, out: d)
        textEmbedder = PixArtAlphaTextProjection(w["time_text_embed"]["text_embedder"], in: c.textEmbedDim, hidden: d, activation: .silu)
        projIn = Linear(w["proj_in"], in: c.textEmbedDim, out: d)
        blocks = (0..<c.numRefinerLayers).map { HunyuanVideoRefinerBlock(w["token_refiner"]["refiner_blocks"][$0], configuration: c) }
    }

    /// The refined text tokens `[B, L, D]`.
    ///
    /// - Parameters:
    ///   - text: `encoder_hidden_states` `[B, L, text_embed_dim]`.
    ///   - timesteps: one value per sample.
    ///   - mask: `encoder_attention_mask` `[B, L]` of 0/1 with at least one 1 per sample (checked by the caller).
    func callAsFunction(_ text: Tensor, timesteps: [Float], mask: Tensor) throws(TensorError) -> Tensor {
        let temb = try timestepEmbedder(hunyuanVideoSinusoid(timesteps)) + textEmbedder(Self.maskedMean(text, mask: mask))
        var h = try projIn(text)
        guard !blocks.isEmpty else { return h }
        let attnMask = try SelfAttentionMask(mask)
        for block in blocks { h = try block(h, temb: temb, mask: attnMask) }
        return h
    }

    /// `Σₗ mask·x / Σₗ mask` over the tokens `[B, L, E]` → `[B, E]`, summed in float32 in token order as
    /// torch's `sum(dim=1)` does for these sizes.
    static func maskedMean(_ x: Tensor, mask: Tensor) throws(TensorError) -> Tensor {
        let (b, l, e) = (x.shape[0], x.shape[1], x.shape[2])
        let m = mask.scalars, v = x.scalars
        var out = [Float](repeating: 0, count: b * e)
        for bi in 0..<b {
            var count: Float = 0
            for t in 0..<l { count += m[bi * l + t] }
            for j in 0..<e {
                var s: Float = 0
                for t in 0..<l { s += v[(bi * l + t) * e + j] * m[bi * l + t] }
                out[bi * e + j] = s / count
            }
        }
        return try Tensor(shape: [b, e], scalars: out)
    }

    /// The refiner's self-attention rule, after diffusers: query i may attend key j when both tokens are
    /// valid, and every query may attend key 0 (diffusers sets that column to true, so a padded query still
    /// has one key).
    ///
    /// Rather than the `[B, 1, L, L]` boolean mask diffusers builds, this is a key mask `[B, L]` (valid keys
    /// and key 0) for the valid queries plus the list of padded queries per sample: a padded query's only
    /// key is key 0, so its softmax weight is exactly 1 and its output is exactly `v₀`.
    struct SelfAttentionMask: Sendable {
        /// `[B, L]`: 1 for a valid key or key 0, else 0.
        let keys: Tensor
        /// The padded query positions of each sample.
        let paddedQueries: [[Int]]

        /// The rule for `encoder_attention_mask` `[B, L]` (nonzero = valid).
        init(_ mask: Tensor) throws(TensorError) {
            let (b, l) = (mask.shape[0], mask.shape[1])
            let m = mask.scalars
            var k = [Float](repeating: 0, count: b * l)
            var padded = [[Int]](repeating: [], count: b)
            for bi in 0..<b {
                for j in 0..<l {
                    let valid = m[bi * l + j] != 0
                    k[bi * l + j] = valid || j == 0 ? 1 : 0
                    if !valid { padded[bi].append(j) }
                }
            }
            keys = try Tensor(shape: [b, l], scalars: k)
            paddedQueries = padded
        }

        /// Attention of `q`, `k`, `v` `[B, L, H·Dh]` under this rule.
        func attend(_ q: Tensor, _ k: Tensor, _ v: Tensor, heads: Int) throws(TensorError) -> Tensor {
            var out = try attention(query: q, key: k, value: v, heads: heads, mask: .keys(keys))
            guard paddedQueries.contains(where: { !$0.isEmpty }) else { return out }
            let (l, width) = (v.shape[1], v.shape[2])
            v.withUnsafeBufferPointer { pv in
                out.withUnsafeMutableBufferPointer { po in
                    for (bi, rows) in paddedQueries.enumerated() {
                        let v0 = pv.baseAddress! + bi * l * width
                        for i in rows { (po.baseAddress! + (bi * l + i) * width).update(from: v0, count: width) }
                    }
                }
            }
            return out
        }
    }
}
