import Foundation
import Testing
@testable import DiTModels
import Tensors

/// A tiny image-to-video configuration: 2 heads × 12 channels (rotary split 4/4/4), image tokens
/// through separate key/value projections.
func tinyI2VConfiguration(posEmbedSeqLen: Int? = nil) -> WanConfiguration {
    WanConfiguration(patchSize: [1, 2, 2], numAttentionHeads: 2, attentionHeadDim: 12, inChannels: 3, outChannels: 3,
                     textDim: 8, freqDim: 16, ffnDim: 20, numLayers: 2, crossAttnNorm: true, eps: 1e-6,
                     imageDim: 10, addedKVProjDim: 24, ropeMaxSeqLen: 64, posEmbedSeqLen: posEmbedSeqLen)
}

/// Seeded normal test data.
func randomTensor(_ shape: [Int], seed: UInt64) -> Tensor {
    var g = SeededGenerator(seed: seed)
    return try! Tensor.randomNormal(shape: shape, mean: 0, standardDeviation: 1, using: &g)
}

/// Relative L2 distance in Double.
func relL2(_ a: Tensor, _ b: Tensor) -> Double { (try? Tensor.relativeL2(a, b)) ?? .infinity }

// MARK: - Naive Double references

/// LayerNorm over the last axis (biased variance), with optional affine parameters.
func naiveLayerNorm(_ x: [Double], dim: Int, weight: [Double]?, bias: [Double]?, eps: Double) -> [Double] {
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
func naiveLinear(_ x: [Double], inFeatures: Int, weight: [Double], bias: [Double]?) -> [Double] {
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
func naiveGELU(_ x: Double) -> Double { 0.5 * x * (1 + erf(x / 2.0.squareRoot())) }

func doubles(_ t: Tensor) -> [Double] { t.scalars.map(Double.init) }
