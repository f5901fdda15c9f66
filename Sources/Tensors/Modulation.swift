import CKernels

/// Adaptive (timestep) modulation `x · (1 + scale) + shift`, alone or fused with the normalisation
/// that precedes it in every adaLN block, so the row is read once.

/// Adaptive modulation `x · (1 + scale) + shift` with per-sample parameters broadcast over tokens.
///
/// - Parameters:
///   - x: `[B, S, D]`.
///   - scale: `[B, D]` or `[B, 1, D]` (per sample), or `[B, S, D]` (per token).
///   - shift: the same shapes as `scale`, or nil.
public func modulate(_ x: Tensor, scale: Tensor, shift: Tensor?) throws(TensorError) -> Tensor {
    try modulatedRows(x, norm: .none, eps: 0, scale: scale, shift: shift, name: "modulate")
}

/// Layer normalisation without affine parameters followed by adaptive modulation, in one pass:
/// `LayerNorm(x) · (1 + scale) + shift` (diffusers' `AdaLayerNormZero`/`AdaLayerNormContinuous` core).
///
/// - Parameters:
///   - x: `[B, S, D]`.
///   - eps: added to the variance.
///   - scale: `[B, D]`, `[B, 1, D]` or `[B, S, D]`.
///   - shift: the same shapes as `scale`, or nil.
public func layerNormModulated(
    _ x: Tensor, eps: Float, scale: Tensor, shift: Tensor?
) throws(TensorError) -> Tensor {
    try modulatedRows(x, norm: .layer, eps: eps, scale: scale, shift: shift, name: "layerNormModulated")
}

/// RMS normalisation without a weight followed by adaptive modulation, in one pass:
/// `RMSNorm(x) · (1 + scale) + shift`.
public func rmsNormModulated(
    _ x: Tensor, eps: Float, scale: Tensor, shift: Tensor?
) throws(TensorError) -> Tensor {
    try modulatedRows(x, norm: .rms, eps: eps, scale: scale, shift: shift, name: "rmsNormModulated")
}

/// The normalisation applied to each row before modulation.
private enum RowNorm {
    case none, layer, rms

    /// The `ck_norm_rows` mode.
    var mode: Int32 {
        switch self {
        case .none: CK_NORM_NONE
        case .layer: CK_NORM_LAYER
        case .rms: CK_NORM_RMS
        }
    }
}

private func modulatedRows(
    _ x: Tensor, norm: RowNorm, eps: Float, scale: Tensor, shift: Tensor?, name: String
) throws(TensorError) -> Tensor {
    guard x.rank == 3 else {
        throw .shapeMismatch(operation: name, shapes: [x.shape], reason: "x must be [B, S, D]")
    }
    let (bsz, s, d) = (x.shape[0], x.shape[1], x.shape[2])
    /// Whether a parameter is per token (`[B, S, D]`) rather than per sample (`[B, D]`, `[B, 1, D]`).
    func perToken(_ t: Tensor) throws(TensorError) -> Bool {
        if t.shape == [bsz, d] || t.shape == [bsz, 1, d] { return false }
        if t.shape == [bsz, s, d] { return true }
        throw .shapeMismatch(operation: name, shapes: [x.shape, t.shape],
                             reason: "scale/shift must be [B, D], [B, 1, D] or [B, S, D]")
    }
    let scaleTok = try perToken(scale)
    let shiftTok = try shift.map { t throws(TensorError) in try perToken(t) } ?? false
    let hasShift = shift != nil
    let sh = shift ?? scale
    let mode = norm.mode
    return x.withUnsafeBufferPointer { px in
        scale.withUnsafeBufferPointer { psc in
            sh.withUnsafeBufferPointer { psh in
                Tensor(uninitializedShape: x.shape) { out in
                    Parallelism.forEachChunk(bsz * s, costPerItem: 5 * d) { rows in
                        for r in rows {
                            let b = r / max(s, 1)
                            let sc = psc.baseAddress! + (scaleTok ? r : b) * d
                            let sf = hasShift ? psh.baseAddress! + (shiftTok ? r : b) * d : nil
                            ck_norm_rows(px.baseAddress! + r * d, Int64(d), out.baseAddress! + r * d, Int64(d), 1, d, mode, eps, nil, nil,
                                         sc, sf)
                        }
                    }
                }
            }
        }
    }
}
