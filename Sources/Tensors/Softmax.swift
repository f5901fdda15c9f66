import CKernels

/// Numerically stable softmax over the last axis.
public func softmax(_ x: Tensor) throws(TensorError) -> Tensor {
    guard x.rank >= 1 else { throw .invalidArgument(operation: "softmax", reason: "needs rank >= 1") }
    let d = x.shape[x.rank - 1]
    let rows = d == 0 ? 0 : x.count / d
    var out = x.copy()
    out.withUnsafeMutableBufferPointer { buf in
        Parallelism.forEachChunk(rows, costPerItem: 8 * d) { range in
            for r in range { softmaxRowInPlace(buf.baseAddress! + r * d, d) }
        }
    }
    return out
}

/// Softmax of one row in place. A row whose entries are all −∞ (fully masked) becomes all zeros.
///
/// Runs the widest `CKernels` version the CPU has (AVX-512F, AVX2+FMA, or portable; chosen at run time);
/// all use the same ~1 ulp exp.
@inlinable @inline(__always)
public func softmaxRowInPlace(_ p: UnsafeMutablePointer<Float>, _ n: Int) {
    ck_softmax_row(p, n)
}

/// The unnormalised part of a row softmax: `p := exp(p − max p)` in place; returns `1/Σ p`, for the
/// caller to apply later (attention scales the narrow rows of P·V instead of P). A row of only −∞
/// becomes zeros and returns 0.
@inlinable @inline(__always)
public func softmaxExpRowInPlace(_ p: UnsafeMutablePointer<Float>, _ n: Int) -> Float {
    ck_softmax_exp_row(p, n)
}
