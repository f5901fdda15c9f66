import Tensors

/// A fully connected layer `y = x·Wᵀ + b` with PyTorch's `[out, in]` weight layout.
///
/// The weight is a `WeightMatrix` in the precision the model was loaded in (``WeightLoader/precision``):
/// a family's code is the same for float32, bfloat16, float16 and int8 weights. The bias stays float32.
public struct Linear: Sendable {
    /// `[out, in]`, in the model's weight precision.
    public let weight: WeightMatrix
    /// `[out]`, or nil for a layer without bias.
    public let bias: Tensor?

    /// Takes `weight` `[out, in]` (and `bias` `[out]` when `bias` is true) of the scope.
    public init(_ weights: WeightScope, in inFeatures: Int, out outFeatures: Int, bias: Bool = true) {
        weight = weights.matrix("weight", rows: outFeatures, columns: inFeatures)
        self.bias = bias ? weights.tensor("bias", shape: [outFeatures]) : nil
    }

    /// Wraps existing parameters.
    public init(weight: WeightMatrix, bias: Tensor?) {
        self.weight = weight
        self.bias = bias
    }

    /// Wraps a float32 `[out, in]` weight (a reshaped convolution kernel, for example). A tensor that is
    /// not 2-D can only be a loader's placeholder for a missing weight, which the load reports; the
    /// layer then holds an empty matrix.
    public init(weight: Tensor, bias: Tensor?) {
        self.weight = (try? WeightMatrix(weight)) ?? WeightMatrix.placeholder  // not 2-D: a reported placeholder
        self.bias = bias
    }

    /// The layers `parts` (same input width) as one layer whose output is their outputs side by side:
    /// weights stacked by rows, biases concatenated (all parts with bias, or none).
    ///
    /// Parts can only disagree when one holds a loader's placeholder for a missing or mis-shaped weight,
    /// which the load reports; the stacked layer is then a placeholder too.
    public static func stacking(_ parts: [Linear]) -> Linear {
        guard let weight = try? WeightMatrix.concatenatingRows(parts.map(\.weight)) else {  // placeholders only
            return Linear(weight: WeightMatrix.placeholder, bias: nil)
        }
        let biases = parts.compactMap(\.bias)
        guard !biases.isEmpty else { return Linear(weight: weight, bias: nil) }
        guard biases.count == parts.count, let bias = try? Tensor.concatenate(biases, axis: 0) else {  // placeholders only
            return Linear(weight: WeightMatrix.placeholder, bias: nil)
        }
        return Linear(weight: weight, bias: bias)
    }

    /// Output features.
    public var outFeatures: Int { weight.rows }
    /// Input features.
    public var inFeatures: Int { weight.columns }

    /// Applies the layer to `[..., in]`.
    public func callAsFunction(_ x: Tensor) throws(TensorError) -> Tensor {
        try linear(x, weight: weight, bias: bias)
    }

    /// Applies the layer and then `activation` in place on its output.
    public func callAsFunction(_ x: Tensor, activation: Activation) throws(TensorError) -> Tensor {
        try linear(x, weight: weight, bias: bias, activation: activation)
    }
}

extension WeightMatrix {
    /// An empty `[0, 0]` float32 matrix: what a layer holds in place of a weight the loader reported
    /// missing or mis-shaped (never a requested shape, so nothing of that size is allocated).
    static let placeholder: WeightMatrix = {
        // A [0, 0] tensor is always a valid 2-D matrix.
        try! WeightMatrix(Tensor(zeros: [0, 0]))
    }()
}
