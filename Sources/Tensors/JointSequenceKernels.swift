/// The fused gated residual of blocks that run one joint sequence per sample — a leading segment
/// (text tokens) followed by a trailing one (image or video tokens) — with separate per-sample gates
/// for the two segments (CogVideoX's blocks).
///
/// The per-sample modulation is one `[B, k·D]` tensor (the output of the block's `linear(silu(temb))`);
/// each gate is addressed by its chunk index (of width D), so no chunk is copied out.
public enum JointSequence {
    /// `x += gate · y` in place for `x`, `y` `[B, T, D]` (multiply first, then add), the gate chunk
    /// `leadingGate` of `modulation` `[B, k·D]` on rows `0 ..< leadingRows` of each sample and
    /// `trailingGate` on the others.
    public static func addGated(
        _ x: inout Tensor, _ y: Tensor, leadingRows l: Int, modulation m: Tensor, leadingGate: Int, trailingGate: Int
    ) throws(TensorError) {
        let (b, t, d, k) = try shapes(x, m, leadingRows: l, name: "joint gated residual")
        guard y.shape == x.shape, (0..<k).contains(leadingGate), (0..<k).contains(trailingGate) else {
            throw .shapeMismatch(operation: "joint gated residual", shapes: [x.shape, y.shape, m.shape],
                                 reason: "y must have x's shape and the gate chunks must be in 0..<\(k)")
        }
        y.withUnsafeBufferPointer { py in
            m.withUnsafeBufferPointer { pm in
                x.withUnsafeMutableBufferPointer { px in
                    Parallelism.forEachChunk(b * t, costPerItem: 2 * d) { rows in
                        for r in rows {
                            let g = pm.baseAddress! + ((r / t) * k + (r % t < l ? leadingGate : trailingGate)) * d
                            let xi = px.baseAddress! + r * d, yi = py.baseAddress! + r * d
                            for j in 0..<d { xi[j] += g[j] * yi[j] }
                        }
                    }
                }
            }
        }
    }

    /// `(B, T, D, k)` of a joint sequence `x` `[B, T, D]` and its modulation `m` `[B, k·D]`.
    private static func shapes(
        _ x: Tensor, _ m: Tensor, leadingRows l: Int, name: String
    ) throws(TensorError) -> (Int, Int, Int, Int) {
        guard x.rank == 3, m.rank == 2, m.shape[0] == x.shape[0], x.shape[2] > 0, m.shape[1] % x.shape[2] == 0,
              (0...x.shape[1]).contains(l) else {
            throw .shapeMismatch(operation: name, shapes: [x.shape, m.shape],
                                 reason: "x must be [B, T, D], the modulation [B, k·D], and 0 ≤ leading rows ≤ T")
        }
        return (x.shape[0], x.shape[1], x.shape[2], m.shape[1] / x.shape[2])
    }
}
