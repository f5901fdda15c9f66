import CKernels

/// Activation functions and their gated variants (vectorised, parallel over blocks).

/// The GELU approximation to use.
public enum GELUApproximation: Sendable {
    /// `x · Φ(x)` with the exact normal CDF (`torch.nn.GELU()`).
    case none
    /// `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))` (`approximate="tanh"`).
    case tanh
}

/// GELU, exact or tanh-approximated.
public func gelu(_ x: Tensor, approximation: GELUApproximation = .none) -> Tensor {
    activated(x, .gelu(approximation))
}

/// SiLU (swish): `x · sigmoid(x)`.
public func silu(_ x: Tensor) -> Tensor {
    activated(x, .silu)
}

/// `activation` of every element of `x`, written straight into a new tensor (one pass, no copy first).
func activated(_ x: Tensor, _ activation: Activation) -> Tensor {
    let n = x.count
    return x.withUnsafeBufferPointer { src in
        Tensor(uninitializedShape: x.shape) { dst in
            Parallelism.forEachBlock(n, costPerElement: 8) { r in
                activation.apply(src.baseAddress! + r.lowerBound, to: dst.baseAddress! + r.lowerBound, r.count)
            }
        }
    }
}

/// `activation` of `width` columns of `x` `[..., C]` starting at `column`: `[..., width]`, read in place
/// (for example the MLP block of a stacked projection, without slicing it out first).
///
/// - Throws: ``TensorError/invalidArgument(operation:reason:)`` when the columns exceed the last axis.
public func activated(_ x: Tensor, column: Int, width: Int, _ activation: Activation) throws(TensorError) -> Tensor {
    guard x.rank >= 1, column >= 0, width >= 0, column + width <= x.shape[x.rank - 1] else {
        throw .invalidArgument(operation: "activated", reason: "columns \(column)..<\(column + width) exceed the last axis of \(x.shape)")
    }
    let c = x.shape[x.rank - 1]
    let rows = c == 0 ? 0 : x.count / c
    var shape = x.shape
    shape[x.rank - 1] = width
    return x.withUnsafeBufferPointer { src in
        Tensor(uninitializedShape: shape) { dst in
            guard width > 0 else { return }
            Parallelism.forEachChunk(rows, costPerItem: 8 * width) { range in
                for r in range {
                    activation.apply(src.baseAddress! + r * c + column, to: dst.baseAddress! + r * width, width)
                }
            }
        }
    }
}

/// Applies `activation` to every element of `t` in place, in parallel blocks.
func applyInPlace(_ t: inout Tensor, _ activation: Activation) {
    let n = t.count
    t.withUnsafeMutableBufferPointer { buf in
        Parallelism.forEachBlock(n, costPerElement: 8) { r in
            activation.apply(buf.baseAddress! + r.lowerBound, r.count)
        }
    }
}

/// Hyperbolic tangent.
public func tanh(_ x: Tensor) -> Tensor { x.mapVector(VectorMath.tanh) }

/// Applies `value · act(gate)` where the last axis of `x` holds `[value, gate]` halves
/// (the layout of diffusers' `GEGLU`/`SwiGLU` projections). Output last axis is half the input's.
/// The activation runs through ``Activation/apply(_:to:_:)`` (the `CKernels` vector paths for SiLU
/// and tanh-GELU), then each value multiplies its activated gate.
func gated(_ x: Tensor, name: String, _ activation: Activation) throws(TensorError) -> Tensor {
    guard x.rank >= 1, x.shape[x.rank - 1] % 2 == 0 else {
        throw .invalidArgument(operation: name, reason: "last axis of \(x.shape) must be even")
    }
    let d2 = x.shape[x.rank - 1], d = d2 / 2
    let rows = d2 == 0 ? 0 : x.count / d2
    var outShape = x.shape
    outShape[x.rank - 1] = d
    return x.withUnsafeBufferPointer { src in
        Tensor(uninitializedShape: outShape) { dst in
            Parallelism.forEachChunk(rows, costPerItem: 8 * d) { range in
                for r in range {
                    let v = src.baseAddress! + r * d2, g = v + d, o = dst.baseAddress! + r * d
                    activation.apply(g, to: o, d)
                    for j in 0..<d { o[j] *= v[j] }
                }
            }
        }
    }
}

/// GEGLU: `value · gelu(gate)` over `[value, gate]` halves of the last axis.
public func geglu(_ x: Tensor, approximation: GELUApproximation = .none) throws(TensorError) -> Tensor {
    try gated(x, name: "geglu", .gelu(approximation))
}

/// SwiGLU: `value · silu(gate)` over `[value, gate]` halves of the last axis.
public func swiglu(_ x: Tensor) throws(TensorError) -> Tensor {
    try gated(x, name: "swiglu", .silu)
}
