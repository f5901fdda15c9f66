import Tensors

/// The activation of diffusers' `FeedForward` (its `activation_fn`).
public enum FeedForwardActivation: Sendable, Equatable {
    /// `"gelu"` (`.none`) and `"gelu-approximate"` (`.tanh`): `net.0.proj` is `[inner, dim]`.
    case gelu(GELUApproximation)
    /// `"geglu"`: `net.0.proj` is `[2·inner, dim]`, output `value · gelu(gate)` of its two halves.
    case geglu(GELUApproximation)
    /// `"swiglu"`: `net.0.proj` is `[2·inner, dim]`, output `value · silu(gate)`.
    case swiglu
    /// `"linear-silu"`: `silu(net.0.proj(x))`.
    case silu
    /// `"geglu-approximate"`: diffusers' `ApproximateGELU`, which despite the name is not gated:
    /// `h·σ(1.702·h)` of `h = net.0.proj(x)` (`[inner, dim]`).
    case approximateGELU

    /// The activation diffusers names `name`, or nil for one this package does not implement.
    public init?(diffusersName name: String) {
        switch name {
        case "gelu": self = .gelu(.none)
        case "gelu-approximate": self = .gelu(.tanh)
        case "geglu": self = .geglu(.none)
        case "swiglu": self = .swiglu
        case "linear-silu": self = .silu
        case "geglu-approximate": self = .approximateGELU
        default: return nil
        }
    }

    /// Whether `net.0.proj` produces a value and a gate half.
    public var isGated: Bool {
        switch self {
        case .geglu, .swiglu: return true
        case .gelu, .silu, .approximateGELU: return false
        }
    }
}

/// diffusers' `FeedForward`: `net.2(act(net.0.proj(x)))`.
public struct FeedForward: Sendable {
    /// `net.0.proj`: `[inner, dim]`, or `[2·inner, dim]` for a gated activation.
    public let projIn: Linear
    /// `net.2`: `[out, inner]`.
    public let projOut: Linear
    /// The activation between the two projections.
    public let activation: FeedForwardActivation

    /// Takes `net.0.proj` and `net.2` of the scope (with biases unless `bias` is false).
    public init(_ weights: WeightScope, dim: Int, inner: Int, out: Int? = nil, activation: FeedForwardActivation,
                bias: Bool = true) {
        projIn = Linear(weights["net.0.proj"], in: dim, out: activation.isGated ? 2 * inner : inner, bias: bias)
        projOut = Linear(weights["net.2"], in: inner, out: out ?? dim, bias: bias)
        self.activation = activation
    }

    /// `x·σ(1.702·x)` element-wise (diffusers' `ApproximateGELU` after its projection).
    public static func approximateGELU(_ x: Tensor) -> Tensor {
        x.mapVector { $0 * VectorMath.sigmoid(1.702 * $0) }
    }

    /// Applies the feed-forward to `[..., dim]`.
    public func callAsFunction(_ x: Tensor) throws(TensorError) -> Tensor {
        let hidden: Tensor
        switch activation {
        case .gelu(let a): hidden = try linear(x, weight: projIn.weight, bias: projIn.bias, activation: .gelu(a))
        case .silu: hidden = try linear(x, weight: projIn.weight, bias: projIn.bias, activation: .silu)
        case .geglu(let a): hidden = try geglu(projIn(x), approximation: a)
        case .swiglu: hidden = try swiglu(projIn(x))
        case .approximateGELU: hidden = Self.approximateGELU(try projIn(x))
        }
        return try projOut(hidden)
    }
}
