import Tensors

/// Fused element-wise passes of the CogVideoX blocks, which run one joint sequence per sample — the
/// text tokens (leading rows) followed by the video tokens (trailing rows) — with separate per-sample
/// modulation for the two segments (`CogVideoXLayerNormZero`).
///
/// The per-sample modulation is one `[B, k·D]` tensor (the output of the block's `linear(silu(temb))`);
/// each parameter is addressed by its chunk index (of width D), so no chunk is copied out. The gated
/// residual of the same blocks is `JointSequence.addGated` (module `Tensors`).
enum CogVideoXKernels {
    /// Chunk indices of a shift and a scale within a `[B, k·D]` modulation tensor.
    struct Chunks: Sendable, Equatable {
        /// The chunk holding the shift.
        var shift: Int
        /// The chunk holding the scale.
        var scale: Int

        /// Indices.
        init(shift: Int, scale: Int) {
            self.shift = shift
            self.scale = scale
        }
    }

    /// `LN(x)·(1 + scale) + shift` for every row of `x` `[B, T, D]`, `LN` a LayerNorm over D (biased
    /// variance) with optional affine `weight`/`bias` `[D]`; rows `0 ..< leadingRows` of each sample take
    /// the `leading` chunks of `modulation` `[B, k·D]`, the other rows the `trailing` chunks.
    static func layerNormModulated(
        _ x: Tensor, leadingRows l: Int, eps: Float, weight: Tensor?, bias: Tensor?,
        modulation m: Tensor, leading: Chunks, trailing: Chunks
    ) throws(TensorError) -> Tensor {
        guard x.rank == 3, m.rank == 2, m.shape[0] == x.shape[0], x.shape[2] > 0, m.shape[1] % x.shape[2] == 0,
              (0...x.shape[1]).contains(l) else {
            throw .shapeMismatch(operation: "joint modulated norm", shapes: [x.shape, m.shape],
                                 reason: "x must be [B, T, D], the modulation [B, k·D], and 0 ≤ leading rows ≤ T")
        }
        let (b, t, d, k) = (x.shape[0], x.shape[1], x.shape[2], m.shape[1] / x.shape[2])
        guard [leading.shift, leading.scale, trailing.shift, trailing.scale].allSatisfy({ (0..<k).contains($0) }) else {
            throw .invalidArgument(operation: "joint modulated norm", reason: "chunk indices must be in 0..<\(k)")
        }
        for p in [weight, bias].compactMap({ $0 }) where p.shape != [d] {
            throw .shapeMismatch(operation: "joint modulated norm", shapes: [x.shape, p.shape], reason: "affine parameters must be [\(d)]")
        }
        let w = weight?.scalars, bi = bias?.scalars
        return x.withUnsafeBufferPointer { px in
            m.withUnsafeBufferPointer { pm in
                Tensor(uninitializedShape: x.shape) { out in
                    Parallelism.forEachChunk(b * t, costPerItem: 6 * d) { rows in
                        for r in rows {
                            let chunks = r % t < l ? leading : trailing
                            let base = pm.baseAddress! + (r / t) * k * d
                            let shift = base + chunks.shift * d, scale = base + chunks.scale * d
                            let xi = px.baseAddress! + r * d, o = out.baseAddress! + r * d
                            let mean = RowReductions.sum(xi, d) / Float(d)
                            let inv = 1 / (RowReductions.centeredSquares(xi, d, centre: mean) / Float(d) + eps).squareRoot()
                            for j in 0..<d { o[j] = (xi[j] - mean) * inv }
                            if let w { for j in 0..<d { o[j] *= w[j] } }
                            if let bi { for j in 0..<d { o[j] += bi[j] } }
                            for j in 0..<d { o[j] = o[j] * (1 + scale[j]) + shift[j] }
                        }
                    }
                }
            }
        }
    }

    /// Splits a fused projection `p` `[B, T, 3·H·Dh]` (q, k, v side by side) into q, k `[B, T, H·Dh]` and
    /// the value block of `p` (read in place by attention): q and k get a LayerNorm over each head (affine
    /// `weight`, `bias` `[Dh]`) and, on the trailing rows `t ≥ leadingRows`, the interleaved rotation
    /// (`RotaryEmbedding.Layout.interleaved`) by row `t − leadingRows` of `rope` (`[T − leadingRows, Dh]`
    /// each); the leading rows are not rotated. One pass over each of q and k (``preparedHeads(_:width:heads:rope:rotatedFrom:)``).
    static func splitQKV(
        _ p: Tensor, heads: Int, leadingRows l: Int, normQ: (weight: Tensor, bias: Tensor),
        normK: (weight: Tensor, bias: Tensor), eps: Float, rope: (cos: Tensor, sin: Tensor)?
    ) throws(TensorError) -> (q: Tensor, k: Tensor, v: AttentionOperand) {
        guard p.rank == 3, heads > 0, p.shape[2] % (3 * heads) == 0, (0...p.shape[1]).contains(l) else {
            throw .shapeMismatch(operation: "joint q/k/v split", shapes: [p.shape],
                                 reason: "expected [B, T, 3·H·Dh] with H = \(heads) and 0 ≤ leading rows ≤ T")
        }
        let width = p.shape[2] / 3
        let tables = rope.map { (cos: $0.cos, sin: $0.sin, layout: RotaryEmbedding.Layout.interleaved) }
        func prepared(_ column: Int, _ norm: (weight: Tensor, bias: Tensor)) throws(TensorError) -> Tensor {
            try preparedHeads([HeadSegment(p, column: column,
                                           norm: HeadNormalisation(.layer, weight: norm.weight, bias: norm.bias, eps: eps))],
                              width: width, heads: heads, rope: tables, rotatedFrom: l)
        }
        return (try prepared(0, normQ), try prepared(width, normK), AttentionOperand(p, column: 2 * width))
    }
}
