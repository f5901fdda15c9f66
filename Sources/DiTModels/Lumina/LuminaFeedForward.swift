import Foundation
import Tensors

/// diffusers' `LuminaFeedForward`: `linear_2(silu(linear_1(x)) · linear_3(x))`, no biases.
///
/// The SiLU runs in place on `linear_1`'s output and the product in place on it too, so the hidden layer
/// costs two `[..., inner]` tensors; the weights are used as loaded (not stacked into a copy).
struct LuminaFeedForward: Sendable {
    /// `linear_1`, `linear_3`: `[inner, D]`.
    let linear1: Linear
    let linear3: Linear
    /// `linear_2`: `[D, inner]`.
    let linear2: Linear

    /// Takes `linear_1`, `linear_2` and `linear_3` of the scope.
    init(_ weights: WeightScope, dim: Int, inner: Int) {
        linear1 = Linear(weights["linear_1"], in: dim, out: inner, bias: false)
        linear2 = Linear(weights["linear_2"], in: inner, out: dim, bias: false)
        linear3 = Linear(weights["linear_3"], in: dim, out: inner, bias: false)
    }

    /// The hidden width diffusers gives a `LuminaFeedForward` built with `inner_dim = base`:
    /// `int(ffn_dim_multiplier · base)` when a multiplier is set, then rounded up to a multiple of
    /// `multiple_of`.
    ///
    /// - Returns: nil when the multiplier is not finite, `multiple_of` is not positive, or the width is
    ///   negative or beyond ``SizeLimits/maximumExtent`` (diffusers fails to build such a layer). A width
    ///   of 0 (a tiny multiplier) is what diffusers builds too: a feed-forward that outputs zeros.
    static func innerDim(base: Int, multipleOf: Int, multiplier: Double?) -> Int? {
        var inner = Double(base)
        if let multiplier {
            let scaled = (multiplier * inner).rounded(.towardZero)
            guard scaled.isFinite, abs(scaled) <= Double(1 << 40) else { return nil }
            inner = scaled
        }
        guard multipleOf > 0 else { return nil }
        let m = Double(multipleOf)
        let rounded = m * ((inner + m - 1) / m).rounded(.down)
        guard rounded >= 0, rounded <= Double(SizeLimits.maximumExtent) else { return nil }
        return Int(rounded)
    }

    /// Applies the feed-forward to `[..., D]`.
    func callAsFunction(_ x: Tensor) throws(TensorError) -> Tensor {
        var hidden = try linear(x, weight: linear1.weight, bias: nil, activation: .silu)
        try LuminaKernels.multiply(&hidden, by: linear3(x))
        return try linear2(hidden)
    }
}
