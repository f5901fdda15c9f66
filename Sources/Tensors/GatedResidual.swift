import CKernels

/// Where each row of a gated residual (``addGated(_:_:gate:)``) takes its gate.
public enum ResidualGate: Sendable {
    /// One gate per sample, `[B, D]` or `[B, 1, D]`, broadcast over the tokens.
    case perSample(Tensor)
    /// One gate per token, `[B, T, D]`.
    case perToken(Tensor)
    /// Chunks of a per-sample modulation `modulation` `[B, k·D]` (the output of a block's
    /// `linear(silu(temb))`, addressed in place): chunk `leading` on rows `0 ..< leadingRows` of each
    /// sample and chunk `trailing` on the others — a joint `[text; video]` sequence with separate gates.
    case chunks(of: Tensor, leadingRows: Int, leading: Int, trailing: Int)
}

/// `residual += x · gate` in place for `residual`, `x` `[B, T, D]`: the gated residual update of
/// adaLN-Zero blocks, computed as diffusers' `residual + x * gate` in float32 (the product rounded
/// before the sum, no fused multiply-add). One vectorised kernel (AVX-512F, AVX2, portable, chosen at run
/// time) for every family.
/// - Throws: `TensorError.shapeMismatch` when `x` differs from `residual` or the gate does not fit them.
public func addGated(_ residual: inout Tensor, _ x: Tensor, gate: ResidualGate) throws(TensorError) {
    let rowGate = try GatedRows(residual: residual, x: x, gate: gate)
    x.withUnsafeBufferPointer { px in
        rowGate.gateTensor.withUnsafeBufferPointer { pg in
            residual.withUnsafeMutableBufferPointer { pr in
                rowGate.run(h: UnsafePointer(pr.baseAddress!), x: px.baseAddress!, g: pg.baseAddress!, out: pr.baseAddress!)
            }
        }
    }
}

/// `residual + x · gate` as a new tensor (see ``addGated(_:_:gate:)``).
public func addingGated(_ residual: Tensor, _ x: Tensor, gate: ResidualGate) throws(TensorError) -> Tensor {
    let rowGate = try GatedRows(residual: residual, x: x, gate: gate)
    return residual.withUnsafeBufferPointer { ph in
        x.withUnsafeBufferPointer { px in
            rowGate.gateTensor.withUnsafeBufferPointer { pg in
                Tensor(uninitializedShape: residual.shape) { out in
                    rowGate.run(h: ph.baseAddress!, x: px.baseAddress!, g: pg.baseAddress!, out: out.baseAddress!)
                }
            }
        }
    }
}

/// The checked shapes of a gated residual and the gate row of every token row.
private struct GatedRows {
    let samples: Int, tokens: Int, width: Int
    let gateTensor: Tensor
    /// The gate row of token row `r` (of `samples · tokens`), in rows of `width`.
    let gateRow: @Sendable (Int) -> Int

    init(residual: Tensor, x: Tensor, gate: ResidualGate) throws(TensorError) {
        guard residual.rank == 3, x.shape == residual.shape else {
            throw .shapeMismatch(operation: "gated residual", shapes: [residual.shape, x.shape],
                                 reason: "expected residual and x of one shape [B, T, D]")
        }
        let (b, t, d) = (residual.shape[0], residual.shape[1], residual.shape[2])
        (samples, tokens, width) = (b, t, d)
        switch gate {
        case .perSample(let g):
            guard g.shape == [b, d] || g.shape == [b, 1, d] else {
                throw .shapeMismatch(operation: "gated residual", shapes: [residual.shape, g.shape],
                                     reason: "a per-sample gate must be [B, D] or [B, 1, D] = [\(b), \(d)]")
            }
            gateTensor = g
            gateRow = { r in r / max(t, 1) }
        case .perToken(let g):
            guard g.shape == residual.shape else {
                throw .shapeMismatch(operation: "gated residual", shapes: [residual.shape, g.shape],
                                     reason: "a per-token gate must have the residual's shape [B, T, D]")
            }
            gateTensor = g
            gateRow = { r in r }
        case .chunks(let m, let l, let leading, let trailing):
            guard m.rank == 2, m.shape[0] == b, d > 0, m.shape[1] % d == 0, (0...t).contains(l),
                  (0..<(m.shape[1] / d)).contains(leading), (0..<(m.shape[1] / d)).contains(trailing) else {
                throw .shapeMismatch(operation: "gated residual", shapes: [residual.shape, m.shape],
                                     reason: "the modulation must be [B, k·D], 0 ≤ leading rows ≤ T and both chunks in 0..<k")
            }
            let k = m.shape[1] / d
            gateTensor = m
            gateRow = { r in (r / t) * k + (r % t < l ? leading : trailing) }
        }
    }

    /// Every row: `out = h + x · g(row)` (out may be h).
    func run(h: UnsafePointer<Float>, x: UnsafePointer<Float>, g: UnsafePointer<Float>, out: UnsafeMutablePointer<Float>) {
        let d = width
        guard d > 0 else { return }
        Parallelism.forEachChunk(samples * tokens, costPerItem: 3 * d) { rows in
            for r in rows { ck_add_gated(h + r * d, x + r * d, g + gateRow(r) * d, out + r * d, d) }
        }
    }
}
