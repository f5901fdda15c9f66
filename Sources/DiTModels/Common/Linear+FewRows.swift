import Tensors

extension Linear {
    /// The layer applied to a few rows (per-sample conditioning vectors) with matrix-vector products
    /// (`linearFewRows(_:weight:bias:)`: several times faster than sgemm there; sgemm beyond
    /// `fewRowsLimit` rows).
    public func fewRows(_ x: Tensor) throws(TensorError) -> Tensor {
        try linearFewRows(x, weight: weight, bias: bias)
    }
}
