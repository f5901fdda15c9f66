import Tensors

/// diffusers' `RMSNorm` with a learned scale (`elementwise_affine=True`, no bias), in float32:
/// `x · 1/√(mean(x²) + ε) · weight` over the last axis.
public struct RMSNorm: Sendable {
    /// `[D]`.
    public let weight: Tensor
    /// The epsilon added to the mean square.
    public let eps: Float

    /// Takes `weight` `[dim]` of the scope.
    public init(_ weights: WeightScope, dim: Int, eps: Float) {
        weight = weights.tensor("weight", shape: [dim])
        self.eps = eps
    }

    /// Normalises `[..., D]`.
    public func callAsFunction(_ x: Tensor) throws(TensorError) -> Tensor {
        try rmsNorm(x, weight: weight, eps: eps)
    }
}
