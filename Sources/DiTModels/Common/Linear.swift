import Tensors

/// A fully connected layer `y = x·Wᵀ + b` with PyTorch's `[out, in]` weight layout.
public struct Linear: Sendable {
    /// `[out, in]`.
    public let weight: Tensor
    /// `[out]`, or nil for a layer without bias.
    public let bias: Tensor?

    /// Takes `weight` `[out, in]` (and `bias` `[out]` when `bias` is true) of the scope.
    public init(_ weights: WeightScope, in inFeatures: Int, out outFeatures: Int, bias: Bool = true) {
        weight = weights.tensor("weight", shape: [outFeatures, inFeatures])
        self.bias = bias ? weights.tensor("bias", shape: [outFeatures]) : nil
    }

    /// Wraps existing parameters.
    public init(weight: Tensor, bias: Tensor?) {
        self.weight = weight
        self.bias = bias
    }

    /// Output features.
    public var outFeatures: Int { weight.shape[0] }
    /// Input features.
    public var inFeatures: Int { weight.shape[1] }

    /// Applies the layer to `[..., in]`.
    public func callAsFunction(_ x: Tensor) throws(TensorError) -> Tensor {
        try linear(x, weight: weight, bias: bias)
    }
}
