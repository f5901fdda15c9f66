import CKernels

/// Fused element-wise passes for operations a DiT performs back to back, so memory is read once.

/// An activation applied in place right after a linear layer (see ``linear(_:weight:bias:activation:)``).
public enum Activation: Sendable, Equatable {
    case gelu(GELUApproximation)
    case silu
    case tanh

    /// Applies the activation to `n` contiguous values in place (exp-heavy cases through `CKernels`).
    func apply(_ p: UnsafeMutablePointer<Float>, _ n: Int) {
        switch self {
        case .gelu(.tanh): ck_gelu_tanh(p, p, n)
        case .silu: ck_silu(p, p, n)
        case .gelu(.none): simdMap(p, p, n) { geluVector($0, .none) }
        case .tanh: simdMap(p, p, n, VectorMath.tanh)
        }
    }
}

/// `act(x·Wᵀ + b)` with the activation applied in place on the sgemm output (no extra tensor).
public func linear(
    _ x: Tensor, weight: Tensor, bias: Tensor? = nil, activation: Activation
) throws(TensorError) -> Tensor {
    var y = try linear(x, weight: weight, bias: bias)
    applyInPlace(&y, activation)
    return y
}

/// Layer normalisation without affine parameters followed by adaptive modulation, in one pass:
/// `LayerNorm(x) · (1 + scale) + shift` (diffusers' `AdaLayerNormZero`/`AdaLayerNormContinuous` core).
///
/// - Parameters:
///   - x: `[B, S, D]`.
///   - scale, shift: `[B, D]`, `[B, 1, D]` or `[B, S, D]`; `shift` may be nil.
public func layerNormModulated(
    _ x: Tensor, eps: Float, scale: Tensor, shift: Tensor?
) throws(TensorError) -> Tensor {
    try normModulated(x, eps: eps, scale: scale, shift: shift, rms: false, name: "layerNormModulated")
}

/// RMS normalisation without a weight followed by adaptive modulation, in one pass:
/// `RMSNorm(x) · (1 + scale) + shift`.
public func rmsNormModulated(
    _ x: Tensor, eps: Float, scale: Tensor, shift: Tensor?
) throws(TensorError) -> Tensor {
    try normModulated(x, eps: eps, scale: scale, shift: shift, rms: true, name: "rmsNormModulated")
}

private func normModulated(
    _ x: Tensor, eps: Float, scale: Tensor, shift: Tensor?, rms: Bool, name: String
) throws(TensorError) -> Tensor {
    guard x.rank == 3 else {
        throw .shapeMismatch(operation: name, shapes: [x.shape], reason: "x must be [B, S, D]")
    }
    let (bsz, s, d) = (x.shape[0], x.shape[1], x.shape[2])
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
    return x.withUnsafeBufferPointer { px in
        scale.withUnsafeBufferPointer { psc in
            sh.withUnsafeBufferPointer { psh in
                Tensor(uninitializedShape: x.shape) { out in
                    Parallelism.forEachChunk(bsz * s, costPerItem: 5 * d) { rows in
                        for r in rows {
                            let b = r / max(s, 1)
                            let xi = px.baseAddress! + r * d, o = out.baseAddress! + r * d
                            let mean: Float = rms ? 0 : rowSum(xi, d) / Float(d)
                            let inv = 1 / (rowCenteredSquares(xi, d, mean) / Float(d) + eps).squareRoot()
                            let sc = psc.baseAddress! + (scaleTok ? r : b) * d
                            if hasShift {
                                let sf = psh.baseAddress! + (shiftTok ? r : b) * d
                                for j in 0..<d { o[j] = ((xi[j] - mean) * inv) * (1 + sc[j]) + sf[j] }
                            } else {
                                for j in 0..<d { o[j] = ((xi[j] - mean) * inv) * (1 + sc[j]) }
                            }
                        }
                    }
                }
            }
        }
    }
}
