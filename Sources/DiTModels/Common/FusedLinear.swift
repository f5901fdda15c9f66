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
        let parts = zip(scopes, outFeatures).map { Linear($0.0, in: inFeatures, out: $0.1) }
        widths = outFeatures
        let weight = (try? Tensor.concatenate(parts.map(\.weight), axis: 0)) ?? Tensor(scalar: 0)
        let bias = (try? Tensor.concatenate(parts.compactMap(\.bias), axis: 0)) ?? Tensor(scalar: 0)
        stacked = Linear(weight: weight, bias: bias)
    }

    /// The outputs of every part, `[..., outᵢ]` each (contiguous copies).
    public func callAsFunction(_ x: Tensor) throws(TensorError) -> [Tensor] {
        try stacked(x).split(sizes: widths, axis: -1)
    }
}

/// `linear(concatenate(parts, axis: -1), weight, bias)` without materialising the concatenation: one
/// accumulating sgemm per part against the matching column block of `weight` (`[out, Σ inᵢ]`).
///
/// - Parameters:
///   - parts: `[..., inᵢ]` tensors with equal leading dimensions.
///   - weight: `[out, Σ inᵢ]` (PyTorch layout).
///   - bias: `[out]` or nil.
public func linear(concatenating parts: [Tensor], weight: Tensor, bias: Tensor?) throws(TensorError) -> Tensor {
    guard let first = parts.first, weight.rank == 2 else {
        throw .invalidArgument(operation: "linear of concatenation", reason: "needs at least one part and a 2-D weight")
    }
    let lead = Array(first.shape.dropLast())
    let widths = parts.map { $0.shape.last ?? 0 }
    guard parts.allSatisfy({ $0.rank == first.rank && Array($0.shape.dropLast()) == lead }),
          widths.reduce(0, +) == weight.shape[1] else {
        throw .shapeMismatch(operation: "linear of concatenation", shapes: parts.map(\.shape) + [weight.shape],
                             reason: "parts must share leading dimensions and their widths must add up to the weight's input width")
    }
    let out = weight.shape[0], total = weight.shape[1]
    if let bias, bias.shape != [out] {
        throw .shapeMismatch(operation: "linear of concatenation", shapes: [weight.shape, bias.shape], reason: "bias must be [out]")
    }
    let rows = lead.reduce(1, *)
    // Start from the bias broadcast over the rows (or zeros), then accumulate each part's product.
    var result = try Tensor(zeros: lead + [out])
    if let bias, rows > 0 {
        result.withUnsafeMutableBufferPointer { py in
            bias.withUnsafeBufferPointer { pb in
                for r in 0..<rows { (py.baseAddress! + r * out).update(from: pb.baseAddress!, count: out) }
            }
        }
    }
    guard rows > 0, out > 0 else { return result }
    result.withUnsafeMutableBufferPointer { py in
        weight.withUnsafeBufferPointer { pw in
            var column = 0
            for (part, w) in zip(parts, widths) {
                if w > 0 {
                    part.withUnsafeBufferPointer { px in
                        sgemm(transposeA: false, transposeB: true, m: rows, n: out, k: w, alpha: 1,
                              a: px.baseAddress!, lda: w, b: pw.baseAddress! + column, ldb: total,
                              beta: 1, c: py.baseAddress!, ldc: out)
                    }
                }
                column += w
            }
        }
    }
    return result
}
