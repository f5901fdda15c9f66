import Tensors

/// diffusers' `FeedForward(dim, activation_fn=…)` of the LTX blocks (width 4·D, biases): every
/// activation the class accepts. `gelu`, `gelu-approximate`, `geglu`, `swiglu` and `linear-silu` are the
/// shared ``FeedForward``; `geglu-approximate` is diffusers' `ApproximateGELU`, which despite the name
/// is not gated: `net.0.proj` is `[inner, dim]` and the activation is `x·σ(1.702·x)`.
public enum LTXVideoFeedForward: Sendable {
    case standard(FeedForward)
    /// `net.0.proj` and `net.2` around `x·σ(1.702·x)`.
    case approximateGELU(projIn: Linear, projOut: Linear)

    /// Takes `net.0.proj` and `net.2` of the scope for the configuration's `activation_fn`.
    init(_ w: WeightScope, configuration c: LTXVideoConfiguration) {
        let d = c.innerDim
        if c.activationFn == LTXVideoConfiguration.approximateGELUName {
            self = .approximateGELU(projIn: Linear(w["net.0.proj"], in: d, out: c.ffnDim), projOut: Linear(w["net.2"], in: c.ffnDim, out: d))
        } else {
            self = .standard(FeedForward(w, dim: d, inner: c.ffnDim, activation: c.feedForwardActivation ?? .gelu(.tanh)))
        }
    }

    /// `x·σ(1.702·x)` element-wise (diffusers' `ApproximateGELU` after its projection).
    public static func approximateGELU(_ x: Tensor) -> Tensor {
        x.mapVector { $0 * VectorMath.sigmoid(1.702 * $0) }
    }

    /// Applies the feed-forward to `[..., D]`.
    public func callAsFunction(_ x: Tensor) throws(TensorError) -> Tensor {
        switch self {
        case .standard(let ff): return try ff(x)
        case let .approximateGELU(projIn, projOut): return try projOut(Self.approximateGELU(projIn(x)))
        }
    }
}
