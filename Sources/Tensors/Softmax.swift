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
@inlinable @inline(__always)
public func softmaxRowInPlace(_ p: UnsafeMutablePointer<Float>, _ n: Int) {
    let m = rowMax(p, n)
    if m == -.infinity {
        p.update(repeating: 0, count: n)
        return
    }
    let vm = SIMD16<Float>(repeating: m)
    var acc = SIMD16<Float>(repeating: 0)
    var i = 0
    while i + 16 <= n {
        let e = VectorMath.exp(UnsafeRawPointer(p + i).loadUnaligned(as: SIMD16<Float>.self) - vm)
        UnsafeMutableRawPointer(p + i).storeBytes(of: e, as: SIMD16<Float>.self)
        acc += e
        i += 16
    }
    var s = acc.sum()
    if i < n {
        var v = SIMD16<Float>(repeating: -.infinity)
        for j in 0..<(n - i) { v[j] = p[i + j] }
        let e = VectorMath.exp(v - vm)
        for j in 0..<(n - i) { p[i + j] = e[j]; s += e[j] }
    }
    let inv = SIMD16<Float>(repeating: 1 / s)
    i = 0
    while i + 16 <= n {
        let v = UnsafeRawPointer(p + i).loadUnaligned(as: SIMD16<Float>.self) * inv
        UnsafeMutableRawPointer(p + i).storeBytes(of: v, as: SIMD16<Float>.self)
        i += 16
    }
    while i < n { p[i] *= inv[0]; i += 1 }
}
