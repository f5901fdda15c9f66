import CKernels

/// Fused element-wise passes for operations a DiT performs back to back, so memory is read once.

/// An activation applied in place right after a linear layer (see ``linear(_:weight:bias:activation:)-(Tensor,WeightMatrix,Tensor?,Activation)``).
public enum Activation: Sendable, Equatable {
    case gelu(GELUApproximation)
    case silu
    case tanh

    /// Applies the activation to `n` contiguous values in place (exp-heavy cases through `CKernels`).
    func apply(_ p: UnsafeMutablePointer<Float>, _ n: Int) { apply(p, to: p, n) }

    /// `y[i] = act(x[i])` for `n` contiguous values; `x` and `y` may be the same.
    func apply(_ x: UnsafePointer<Float>, to y: UnsafeMutablePointer<Float>, _ n: Int) {
        switch self {
        case .gelu(.tanh): ck_gelu_tanh(x, y, n)
        case .silu: ck_silu(x, y, n)
        case .gelu(.none): ck_gelu_erf(x, y, n)
        case .tanh: simdMap(x, y, n, VectorMath.tanh)
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
