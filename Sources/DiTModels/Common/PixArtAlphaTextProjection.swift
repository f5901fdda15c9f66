import Tensors

/// diffusers' `PixArtAlphaTextProjection`: `linear_2(act(linear_1(x)))`, the caption projection of
/// PixArt-α, LTX-Video, Wan and others.
///
/// `linear_1` maps the text-encoder width to `hidden`, `linear_2` maps `hidden` to `out` (diffusers'
/// `out_features`, default `hidden`); both have biases. The activation is diffusers' `act_fn`:
/// `"gelu_tanh"` (the default, `Activation/gelu(_:)` with `.tanh`), `"silu"` and `"silu_fp32"`
/// (both `Activation/silu`: the float32 SiLU is the SiLU in a float32 port). It is applied in place on
/// the first product.
public struct PixArtAlphaTextProjection: Sendable {
    /// `linear_1`: `[hidden, in]`.
    public let linear1: Linear
    /// `linear_2`: `[out, hidden]`.
    public let linear2: Linear
    /// The activation between the two projections.
    public let activation: Activation

    /// The activation diffusers names `actFn` (`act_fn`), or nil for a name it does not accept.
    public static func activation(diffusersName actFn: String) -> Activation? {
        switch actFn {
        case "gelu_tanh": return .gelu(.tanh)
        case "silu", "silu_fp32": return .silu
        default: return nil
        }
    }

    /// Takes `linear_1` and `linear_2` (weights and biases) of the scope.
    public init(_ weights: WeightScope, in inFeatures: Int, hidden: Int, out: Int? = nil,
                activation: Activation = .gelu(.tanh)) {
        linear1 = Linear(weights["linear_1"], in: inFeatures, out: hidden)
        linear2 = Linear(weights["linear_2"], in: hidden, out: out ?? hidden)
        self.activation = activation
    }

    /// Wraps existing layers.
    public init(linear1: Linear, linear2: Linear, activation: Activation = .gelu(.tanh)) {
        self.linear1 = linear1
        self.linear2 = linear2
        self.activation = activation
    }

    /// Projects `[..., in]` to `[..., out]`.
    public func callAsFunction(_ x: Tensor) throws(TensorError) -> Tensor {
        try linear2(linear(x, weight: linear1.weight, bias: linear1.bias, activation: activation))
    }
}
