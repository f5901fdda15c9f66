import Tensors

/// The rows of one q|k|v projection output that go into the joint attention sequence.
struct HunyuanVideoQKVSource {
    /// `[B, n, 3D]`: the q, k and v columns of one stream's projection.
    var projection: Tensor
    /// The token rows of each sample taken from it, in order.
    var rows: Range<Int>
    /// The head norms of its queries and keys.
    var normQ: HunyuanVideoHeadNorm
    var normK: HunyuanVideoHeadNorm
}

/// Fused passes of the HunyuanVideo blocks: the joint (image, text) q, k and v are assembled while the
/// stacked projections are read once, with the head norms applied on the way (instead of a split copy, a
/// norm and a concatenation each making their own tensor), and gated residuals are added in place.
enum HunyuanVideoKernels {
    /// The joint `q`, `k`, `v` `[B, T, D]` from the sources in order (their row counts add up to T), q and
    /// k normalised per head with each source's norms and, with `rope` (`[T, Dh]` tables), rotated
    /// (interleaved pairs, `RotaryEmbedding.rotateRow`) while the row is in the cache; v copied.
    static func jointQKV(
        _ sources: [HunyuanVideoQKVSource], heads: Int, rope: (cos: Tensor, sin: Tensor)? = nil
    ) throws(TensorError) -> (q: Tensor, k: Tensor, v: Tensor) {
        guard let first = sources.first, first.projection.rank == 3, first.projection.shape[2] % 3 == 0,
              heads > 0, first.projection.shape[2] % (3 * heads) == 0 else {
            throw .invalidArgument(operation: "HunyuanVideo joint q/k/v", reason: "needs [B, n, 3D] projections with D divisible by the heads")
        }
        let b = first.projection.shape[0], d = first.projection.shape[2] / 3
        let t = sources.reduce(0) { $0 + $1.rows.count }
        let dh = d / heads
        for s in sources {
            guard s.projection.shape == [b, s.projection.shape[1], 3 * d], s.rows.upperBound <= s.projection.shape[1] else {
                throw .shapeMismatch(operation: "HunyuanVideo joint q/k/v", shapes: sources.map(\.projection.shape),
                                     reason: "every projection must be [B, n, 3D] with the same B and D")
            }
        }
        if let rope, rope.cos.shape != [t, dh] || rope.sin.shape != [t, dh] || dh % 2 != 0 {
            throw .shapeMismatch(operation: "HunyuanVideo joint rotary", shapes: [rope.cos.shape, rope.sin.shape],
                                 reason: "tables must be [T, Dh] = [\(t), \(dh)] with Dh even")
        }
        let cosT = rope?.cos ?? Tensor(scalar: 1), sinT = rope?.sin ?? Tensor(scalar: 0)
        func pass(column: Int, rotate: Bool, norm: (HunyuanVideoQKVSource) -> HunyuanVideoHeadNorm?) -> Tensor {
            Tensor(uninitializedShape: [b, t, d]) { out in
                var offset = 0
                for s in sources {
                    let n = s.projection.shape[1], lo = s.rows.lowerBound, count = s.rows.count, start = offset
                    let headNorm = norm(s)
                    s.projection.withUnsafeBufferPointer { pp in
                        cosT.withUnsafeBufferPointer { pc in
                            sinT.withUnsafeBufferPointer { ps in
                                Parallelism.forEachChunk(b * count, costPerItem: 4 * d) { range in
                                    for r in range {
                                        let (bi, i) = (r / count, r % count)
                                        let src = pp.baseAddress! + (bi * n + lo + i) * 3 * d + column
                                        let dst = out.baseAddress! + (bi * t + start + i) * d
                                        if let headNorm {
                                            for h in 0..<heads { headNorm.apply(src + h * dh, dst + h * dh) }
                                        } else {
                                            dst.update(from: src, count: d)
                                        }
                                        if rotate {
                                            let row = (start + i) * dh
                                            RotaryEmbedding.rotateRow(dst, heads: heads, headDim: dh, cos: pc.baseAddress! + row,
                                                                      sin: ps.baseAddress! + row)
                                        }
                                    }
                                }
                            }
                        }
                    }
                    offset += count
                }
            }
        }
        let rotate = rope != nil
        return (pass(column: 0, rotate: rotate) { $0.normQ }, pass(column: d, rotate: rotate) { $0.normK },
                pass(column: 2 * d, rotate: false) { _ in nil })
    }
}

extension HunyuanVideoHeadNorm {
    /// Normalises one head `src[0 ..< headDim]` into `dst`: RMS `x/√(mean x² + ε)·w`, LayerNorm
    /// `(x − μ)/√(var + ε)` (`·w + b` when affine), L2 `x / max(‖x‖₂, ε)`, or a copy.
    @inline(__always)
    func apply(_ src: UnsafePointer<Float>, _ dst: UnsafeMutablePointer<Float>) {
        let n = headDim
        switch kind {
        case .identity:
            dst.update(from: src, count: n)
        case .rms:
            let ss = RowReductions.sumOfSquares(src, n)
            let inv = 1 / (ss / Float(n) + Self.eps).squareRoot()
            weight!.withUnsafeBufferPointer { w in for j in 0..<n { dst[j] = (src[j] * inv) * w[j] } }
        case .layer, .plainLayer:
            let mean = RowReductions.sum(src, n) / Float(n)
            let ss = RowReductions.centeredSquares(src, n, centre: mean)
            let inv = 1 / (ss / Float(n) + Self.eps).squareRoot()
            for j in 0..<n { dst[j] = (src[j] - mean) * inv }
            if let weight, let bias {
                weight.withUnsafeBufferPointer { w in
                    bias.withUnsafeBufferPointer { bb in for j in 0..<n { dst[j] = dst[j] * w[j] + bb[j] } }
                }
            }
        case .l2:
            let ss = RowReductions.sumOfSquares(src, n)
            let norm = Swift.max(ss.squareRoot(), Self.eps)
            for j in 0..<n { dst[j] = src[j] / norm }
        }
    }
}
