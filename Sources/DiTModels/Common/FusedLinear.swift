import Tensors

/// Several linear layers that read the same input, evaluated as one sgemm over their stacked weights.
///
/// `y = x · [W₀; W₁; …]ᵀ + [b₀; b₁; …]`, then split along the last axis. One wide product runs closer
/// to sgemm peak than several narrow ones and reads `x` once (used for FLUX's q/k/v and MLP input
/// projections). The parameters are still taken from the loader under their own names.
public struct FusedLinear: Sendable {
    /// The stacked `[Σ outᵢ, in]` weight and `[Σ outᵢ]` bias.
    public let stacked: Linear
    /// The output width of each part, in order.
    public let widths: [Int]

    /// Takes `weight` / `bias` of every scope (in that order), each `[out, in]` with bias.
    public init(_ scopes: [WeightScope], in inFeatures: Int, out outFeatures: [Int]) {
        stacked = Linear.stacking(zip(scopes, outFeatures).map { Linear($0.0, in: inFeatures, out: $0.1) })
        widths = outFeatures
    }

    /// The outputs of every part, `[..., outᵢ]` each (contiguous copies).
    public func callAsFunction(_ x: Tensor) throws(TensorError) -> [Tensor] {
        try stacked(x).split(sizes: widths, axis: -1)
    }
}
