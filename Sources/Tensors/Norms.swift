import CKernels

/// Normalisations over the last axis, and the row reductions shared by the kernels.

/// Layer normalisation over the last axis: `(x − mean) / sqrt(var + eps) · weight + bias`.
///
/// Statistics use the biased variance, like `torch.nn.LayerNorm`. `weight`/`bias` are `[D]` or nil
/// (a LayerNorm without affine parameters).
public func layerNorm(
    _ x: Tensor, weight: Tensor? = nil, bias: Tensor? = nil, eps: Float
) throws(TensorError) -> Tensor {
    guard x.rank >= 1 else { throw .invalidArgument(operation: "layerNorm", reason: "needs rank >= 1") }
    let d = x.shape[x.rank - 1]
    for p in [weight, bias].compactMap({ $0 }) where p.shape != [d] {
        throw .shapeMismatch(operation: "layerNorm", shapes: [x.shape, p.shape], reason: "affine parameters must be [\(d)]")
    }
    return normalisedRows(x, mode: CK_NORM_LAYER, eps: eps, weight: weight, bias: bias)
}

/// RMS normalisation over the last axis: `x / sqrt(mean(x²) + eps) · weight`.
public func rmsNorm(_ x: Tensor, weight: Tensor? = nil, eps: Float) throws(TensorError) -> Tensor {
    guard x.rank >= 1 else { throw .invalidArgument(operation: "rmsNorm", reason: "needs rank >= 1") }
    let d = x.shape[x.rank - 1]
    if let weight, weight.shape != [d] {
        throw .shapeMismatch(operation: "rmsNorm", shapes: [x.shape, weight.shape], reason: "weight must be [\(d)]")
    }
    return normalisedRows(x, mode: CK_NORM_RMS, eps: eps, weight: weight, bias: nil)
}

/// Every row of `x` through `ck_norm_rows` (AVX-512, AVX2 or portable, chosen at run time).
private func normalisedRows(_ x: Tensor, mode: Int32, eps: Float, weight: Tensor?, bias: Tensor?) -> Tensor {
    let d = x.shape[x.rank - 1]
    let rows = d == 0 ? 0 : x.count / d
    return x.withUnsafeBufferPointer { src in
        withOptionalPointer(weight) { w in
            withOptionalPointer(bias) { b in
                Tensor(uninitializedShape: x.shape) { dst in
                    Parallelism.forEachChunk(rows, costPerItem: 4 * d) { range in
                        let first = range.lowerBound * d
                        ck_norm_rows(src.baseAddress! + first, Int64(d), dst.baseAddress! + first, Int64(d), range.count, d, mode, eps,
                                     w, b, nil, nil)
                    }
                }
            }
        }
    }
}

/// Sum of a row with 16-lane accumulators.
@inlinable @inline(__always)
func rowSum(_ p: UnsafePointer<Float>, _ n: Int) -> Float {
    var acc = SIMD16<Float>(repeating: 0)
    var i = 0
    while i + 16 <= n { acc += UnsafeRawPointer(p + i).loadUnaligned(as: SIMD16<Float>.self); i += 16 }
    var s = acc.sum()
    while i < n { s += p[i]; i += 1 }
    return s
}

/// Sum of x² over a row with 16-lane accumulators.
@inlinable @inline(__always)
func rowSumOfSquares(_ p: UnsafePointer<Float>, _ n: Int) -> Float {
    var acc = SIMD16<Float>(repeating: 0)
    var i = 0
    while i + 16 <= n {
        let v = UnsafeRawPointer(p + i).loadUnaligned(as: SIMD16<Float>.self)
        acc += v * v
        i += 16
    }
    var s = acc.sum()
    while i < n { s += p[i] * p[i]; i += 1 }
    return s
}

/// Sum of (x − c)² over a row with 16-lane accumulators.
@inlinable @inline(__always)
func rowCenteredSquares(_ p: UnsafePointer<Float>, _ n: Int, _ c: Float) -> Float {
    var acc = SIMD16<Float>(repeating: 0)
    let vc = SIMD16<Float>(repeating: c)
    var i = 0
    while i + 16 <= n {
        let v = UnsafeRawPointer(p + i).loadUnaligned(as: SIMD16<Float>.self) - vc
        acc += v * v
        i += 16
    }
    var s = acc.sum()
    while i < n { let v = p[i] - c; s += v * v; i += 1 }
    return s
}
