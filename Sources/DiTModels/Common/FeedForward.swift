import Tensors

/// diffusers' `FeedForward` with a non-gated activation: `net.2(act(net.0.proj(x)))`.
public struct FeedForward: Sendable {
    /// `net.0.proj`: `[inner, dim]`.
    public let projIn: Linear
    /// `net.2`: `[out, inner]`.
    public let projOut: Linear
    /// The GELU variant applied between the two projections.
    public let approximation: GELUApproximation

    /// Takes `net.0.proj` and `net.2` of the scope.
    public init(_ weights: WeightScope, dim: Int, inner: Int, out: Int? = nil, approximation: GELUApproximation) {
        projIn = Linear(weights["net.0.proj"], in: dim, out: inner)
        projOut = Linear(weights["net.2"], in: inner, out: out ?? dim)
        self.approximation = approximation
    }

    /// Applies the feed-forward to `[..., dim]`.
    public func callAsFunction(_ x: Tensor) throws(TensorError) -> Tensor {
        try projOut(linear(x, weight: projIn.weight, bias: projIn.bias, activation: .gelu(approximation)))
    }
}
