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

    /// Splits a fused projection `p` `[B, T, 3·H·Dh]` (q, k, v side by side) into q, k, v `[B, T, H·Dh]`:
    /// q and k get a LayerNorm over each head (affine `weight`, `bias` `[Dh]`) and, on the trailing rows
    /// `t ≥ leadingRows`, the interleaved rotation (`RotaryEmbedding.Layout.interleaved`) by row
    /// `t − leadingRows` of `rope` (`[T − leadingRows, Dh]` each); the leading rows are not rotated.
    ///
    /// One pass over `p`; the three results are views of one buffer.
    static func splitQKV(
        _ p: Tensor, heads: Int, leadingRows l: Int, normQ: (weight: Tensor, bias: Tensor),
        normK: (weight: Tensor, bias: Tensor), eps: Float, rope: (cos: Tensor, sin: Tensor)?
    ) throws(TensorError) -> (q: Tensor, k: Tensor, v: Tensor) {
        guard p.rank == 3, heads > 0, p.shape[2] % (3 * heads) == 0, (0...p.shape[1]).contains(l) else {
            throw .shapeMismatch(operation: "joint q/k/v split", shapes: [p.shape],
                                 reason: "expected [B, T, 3·H·Dh] with H = \(heads) and 0 ≤ leading rows ≤ T")
        }
        let (b, t) = (p.shape[0], p.shape[1])
        let width = p.shape[2] / 3, dh = width / heads
        for n in [normQ.weight, normQ.bias, normK.weight, normK.bias] where n.shape != [dh] {
            throw .shapeMismatch(operation: "joint q/k norm", shapes: [n.shape], reason: "expected [\(dh)]")
        }
        if let rope, rope.cos.shape != [t - l, dh] || rope.sin.shape != [t - l, dh] || dh % 2 != 0 {
            throw .shapeMismatch(operation: "joint rotary", shapes: [rope.cos.shape, rope.sin.shape],
                                 reason: "tables must be [trailing rows = \(t - l), head dim = \(dh)] with an even head dim")
        }
        let cosT = rope?.cos ?? Tensor(scalar: 1), sinT = rope?.sin ?? Tensor(scalar: 0)
        let hasRope = rope != nil
        let n = b * t * width
        let norms = [(normQ.weight.scalars, normQ.bias.scalars), (normK.weight.scalars, normK.bias.scalars)]
        let qkv = p.withUnsafeBufferPointer { pp in
            cosT.withUnsafeBufferPointer { pc in
                sinT.withUnsafeBufferPointer { ps in
                    Tensor(uninitializedShape: [3, b, t, width]) { out in
                        let o0 = out.baseAddress!
                        Parallelism.forEachChunk(b * t, costPerItem: 12 * width) { rows in
                            let y = UnsafeMutablePointer<Float>.allocate(capacity: dh)
                            defer { y.deallocate() }
                            for r in rows {
                                let src = pp.baseAddress! + r * 3 * width
                                (o0 + 2 * n + r * width).update(from: src + 2 * width, count: width)
                                let tok = r % t
                                let rotate = hasRope && tok >= l
                                let c = pc.baseAddress! + (rotate ? (tok - l) * dh : 0)
                                let s = ps.baseAddress! + (rotate ? (tok - l) * dh : 0)
                                for (part, (w, bias)) in norms.enumerated() {
                                    for h in 0..<heads {
                                        let x = src + part * width + h * dh, o = o0 + part * n + r * width + h * dh
                                        let mean = RowReductions.sum(x, dh) / Float(dh)
                                        let inv = 1 / (RowReductions.centeredSquares(x, dh, centre: mean) / Float(dh) + eps).squareRoot()
                                        for j in 0..<dh { y[j] = ((x[j] - mean) * inv) * w[j] + bias[j] }
                                        guard rotate else { o.update(from: y, count: dh); continue }
                                        var j = 0
                                        while j < dh {
                                            o[j] = y[j] * c[j] - y[j + 1] * s[j]
                                            o[j + 1] = y[j + 1] * c[j + 1] + y[j] * s[j + 1]
                                            j += 2
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        let q = try qkv.slice(axis: 0, 0..<1).reshaped([b, t, width])
        let k = try qkv.slice(axis: 0, 1..<2).reshaped([b, t, width])
        let v = try qkv.slice(axis: 0, 2..<3).reshaped([b, t, width])
        return (q, k, v)
    }
}
