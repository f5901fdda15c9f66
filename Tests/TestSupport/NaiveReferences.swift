import Foundation

// Naive Double references: the independent loops fused or vectorised kernels are checked against.

/// LayerNorm over the last axis (biased variance), with optional affine parameters.
public func naiveLayerNorm(_ x: [Double], dim: Int, weight: [Double]?, bias: [Double]?, eps: Double) -> [Double] {
    var out = x
    for r in 0..<(x.count / dim) {
        let row = x[(r * dim)..<((r + 1) * dim)]
        let mean = row.reduce(0, +) / Double(dim)
        let v = row.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(dim)
        for j in 0..<dim {
            var y = (x[r * dim + j] - mean) / (v + eps).squareRoot()
            if let weight { y *= weight[j] }
            if let bias { y += bias[j] }
            out[r * dim + j] = y
        }
    }
    return out
}

/// `x · Wᵀ + b` with PyTorch's `[out, in]` weight.
public func naiveLinear(_ x: [Double], inFeatures: Int, weight: [Double], bias: [Double]?) -> [Double] {
    let outF = weight.count / inFeatures
    let rows = x.count / inFeatures
    var out = [Double](repeating: 0, count: rows * outF)
    for r in 0..<rows {
        for o in 0..<outF {
            var s = bias?[o] ?? 0
            for i in 0..<inFeatures { s += x[r * inFeatures + i] * weight[o * inFeatures + i] }
            out[r * outF + o] = s
        }
    }
    return out
}

/// Exact GELU `x·Φ(x)`.
public func naiveGELU(_ x: Double) -> Double { 0.5 * x * (1 + erf(x / 2.0.squareRoot())) }
