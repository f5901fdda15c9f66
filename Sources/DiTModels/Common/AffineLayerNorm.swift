import Tensors

/// A LayerNorm over the last axis with learned scale and bias (`torch.nn.LayerNorm` with
/// `elementwise_affine=True`, and diffusers' `FP32LayerNorm`, which is the same in float32).
public struct AffineLayerNorm: Sendable {
    /// `[D]`.
    public let weight: Tensor
    /// `[D]`.
    public let bias: Tensor
    /// The variance epsilon.
    public let eps: Float

    /// Takes `weight` and `bias` of the scope, both `[dim]`.
    public init(_ weights: WeightScope, dim: Int, eps: Float) {
        weight = weights.tensor("weight", shape: [dim])
        bias = weights.tensor("bias", shape: [dim])
        self.eps = eps
    }

    /// Normalises `[..., D]`.
    public func callAsFunction(_ x: Tensor) throws(TensorError) -> Tensor {
        try layerNorm(x, weight: weight, bias: bias, eps: eps)
    }
}
