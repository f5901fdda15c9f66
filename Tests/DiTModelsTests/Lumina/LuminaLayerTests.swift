import Foundation
import Testing
import Tensors
@testable import DiTModels
import TestSupport

/// The Lumina layers against naive Double compositions of diffusers' formulas: RMSNorm (Common),
/// LuminaRMSNormZero, LuminaLayerNormContinuous, the SwiGLU feed-forward and its width rule, grouped-query
/// attention with key masks, the proportional-attention scale, the masked caption mean and the 2-D rotary
/// table. Float32 kernels against Double: relative L2 ≤ 1e-5 (the kernels' own rounding is ~1e-7).
@Suite struct LuminaLayerTests {
    static func naiveSiLU(_ x: Double) -> Double { x / (1 + Foundation.exp(-x)) }

    static func naiveRMSNorm(_ x: [Double], dim: Int, weight: [Double], eps: Double) -> [Double] {
        var out = x
        for r in 0..<(x.count / dim) {
            let row = x[(r * dim)..<((r + 1) * dim)]
            let inv = 1 / (row.map { $0 * $0 }.reduce(0, +) / Double(dim) + eps).squareRoot()
            for j in 0..<dim { out[r * dim + j] = x[r * dim + j] * inv * weight[j] }
        }
        return out
    }

    static func tensor(_ v: [Double], _ shape: [Int]) throws -> Tensor { try Tensor(shape: shape, scalars: v.map(Float.init)) }

    @Test func rmsNormMatchesNaive() throws {
        let loader = WeightLoader(randomSeed: 1)
        let norm = RMSNorm(loader.root["n"], dim: 7, eps: 1e-5)
        try loader.finish()
        let x = randomTensor([3, 4, 7], seed: 2)
        let expected = Self.naiveRMSNorm(doubles(x), dim: 7, weight: doubles(norm.weight), eps: 1e-5)
        #expect(relL2(try norm(x), try Self.tensor(expected, [3, 4, 7])) <= 1e-6)
    }

    /// The fused norm passes: `RMSNorm(x)·w·(1 + s)`, `h + tanh(g)·RMSNorm(x)·w` (and without scale or
    /// gate), `a + b·g` per column; rows of 37 channels exercise the 16-lane loop and its tail.
    @Test func fusedNormPassesMatchNaive() throws {
        let (b, s, d) = (2, 3, 37)
        let x = randomTensor([b, s, d], seed: 21), h = randomTensor([b, s, d], seed: 22)
        let w = try Tensor(shape: [d], scalars: doubles(randomTensor([d], seed: 23)).map { Float(1 + 0.1 * $0) })
        let p = randomTensor([b, d], seed: 24)
        let normed = Self.naiveRMSNorm(doubles(x), dim: d, weight: doubles(w), eps: 1e-5)
        let pv = doubles(p), hv = doubles(h)
        var scaled = normed, gated = normed, plain = normed
        for r in 0..<(b * s) {
            for j in 0..<d {
                let k = r * d + j, q = (r / s) * d + j
                scaled[k] = normed[k] * (1 + pv[q])
                gated[k] = hv[k] + Foundation.tanh(pv[q]) * normed[k]
                plain[k] = hv[k] + normed[k]
            }
        }
        #expect(relL2(try LuminaKernels.rmsNormScaled(x, weight: w, eps: 1e-5, scale: p), try Self.tensor(scaled, [b, s, d])) <= 1e-6)
        #expect(relL2(try LuminaKernels.rmsNormScaled(x, weight: w, eps: 1e-5, scale: nil), try Self.tensor(normed, [b, s, d])) <= 1e-6)
        #expect(relL2(try LuminaKernels.addingGatedRMSNorm(h, x, weight: w, eps: 1e-5, gate: p), try Self.tensor(gated, [b, s, d])) <= 1e-6)
        #expect(relL2(try LuminaKernels.addingGatedRMSNorm(h, x, weight: w, eps: 1e-5, gate: nil), try Self.tensor(plain, [b, s, d])) <= 1e-6)
        let g = randomTensor([d], seed: 25), gv = doubles(g), xv = doubles(x)
        let sum = (0..<(b * s * d)).map { hv[$0] + xv[$0] * gv[$0 % d] }
        #expect(relL2(try LuminaKernels.addingScaledColumns(h, x, columns: g), try Self.tensor(sum, [b, s, d])) <= 1e-6)
        #expect(throws: TensorError.self) { try LuminaKernels.rmsNormScaled(x, weight: w, eps: 1e-5, scale: randomTensor([b, s, d], seed: 1)) }
        #expect(throws: TensorError.self) { try LuminaKernels.addingGatedRMSNorm(x.slice(axis: 0, 0..<1), x, weight: w, eps: 1e-5, gate: nil) }
    }

    /// `norm1`: `linear(silu(emb))` chunked (scale_msa, gate_msa, scale_mlp, gate_mlp), `RMSNorm(x)·(1 + scale_msa)`.
    @Test func rmsNormZeroMatchesNaive() throws {
        let (b, s, d) = (2, 3, 6)
        let loader = WeightLoader(randomSeed: 3)
        let norm = LuminaRMSNormZero(loader.root["norm1"], dim: d, eps: 1e-5)
        try loader.finish()
        let w = loader.supplied.mapValues(doubles)
        let x = randomTensor([b, s, d], seed: 4), emb = randomTensor([b, d], seed: 5)
        let mod = naiveLinear(doubles(emb).map(Self.naiveSiLU), inFeatures: d, weight: w["norm1.linear.weight"]!,
                              bias: w["norm1.linear.bias"])
        let normed = Self.naiveRMSNorm(doubles(x), dim: d, weight: w["norm1.norm.weight"]!, eps: 1e-5)
        var expected = normed
        for i in 0..<b { for t in 0..<s { for j in 0..<d { expected[(i * s + t) * d + j] *= 1 + mod[i * 4 * d + j] } } }
        let out = try norm(x, emb: emb)
        #expect(relL2(out.normalized, try Self.tensor(expected, [b, s, d])) <= 1e-5)
        for (k, got) in [(1, out.gateMSA), (2, out.scaleMLP), (3, out.gateMLP)] {
            var chunk: [Double] = []
            for i in 0..<b {
                let start = i * 4 * d + k * d
                chunk += mod[start..<(start + d)]
            }
            #expect(relL2(got, try Self.tensor(chunk, [b, d])) <= 1e-5, "chunk \(k)")
        }
    }

    /// `norm_out`: `linear_2(LayerNorm(x)·(1 + linear_1(silu(c))))`, no shift, ε 1e-6.
    @Test func layerNormContinuousMatchesNaive() throws {
        let (b, s, d, cdim, out) = (2, 3, 8, 5, 4)
        let loader = WeightLoader(randomSeed: 6)
        let norm = LuminaLayerNormContinuous(loader.root["norm_out"], dim: d, conditioningDim: cdim, outDim: out)
        try loader.finish()
        let w = loader.supplied.mapValues(doubles)
        let x = randomTensor([b, s, d], seed: 7), c = randomTensor([b, cdim], seed: 8)
        let scale = naiveLinear(doubles(c).map(Self.naiveSiLU), inFeatures: cdim, weight: w["norm_out.linear_1.weight"]!,
                                bias: w["norm_out.linear_1.bias"])
        var h = naiveLayerNorm(doubles(x), dim: d, weight: nil, bias: nil, eps: 1e-6)
        for i in 0..<b { for t in 0..<s { for j in 0..<d { h[(i * s + t) * d + j] *= 1 + scale[i * d + j] } } }
        let y = naiveLinear(h, inFeatures: d, weight: w["norm_out.linear_2.weight"]!, bias: w["norm_out.linear_2.bias"])
        #expect(relL2(try norm(x, conditioning: c), try Self.tensor(y, [b, s, out])) <= 1e-5)
    }

    /// `linear_2(silu(linear_1(x)) · linear_3(x))`.
    @Test func feedForwardMatchesNaive() throws {
        let (d, inner) = (6, 10)
        let loader = WeightLoader(randomSeed: 9)
        let ff = LuminaFeedForward(loader.root["ff"], dim: d, inner: inner)
        try loader.finish()
        let w = loader.supplied.mapValues(doubles)
        let x = randomTensor([2, 5, d], seed: 10)
        let a = naiveLinear(doubles(x), inFeatures: d, weight: w["ff.linear_1.weight"]!, bias: nil)
        let g = naiveLinear(doubles(x), inFeatures: d, weight: w["ff.linear_3.weight"]!, bias: nil)
        let y = naiveLinear(zip(a, g).map { Self.naiveSiLU($0) * $1 }, inFeatures: inner, weight: w["ff.linear_2.weight"]!, bias: nil)
        #expect(relL2(try ff(x), try Self.tensor(y, [2, 5, d])) <= 1e-5)
    }

    /// diffusers' `multiple_of · ceil(int(mult · base) / multiple_of)`, values computed by hand (and the
    /// two public fixtures' `feed_forward.linear_1` widths, 96 and 128).
    @Test func feedForwardWidthRule() {
        #expect(LuminaFeedForward.innerDim(base: 85, multipleOf: 16, multiplier: nil) == 96)      // Lumina-Next D = 32
        #expect(LuminaFeedForward.innerDim(base: 128, multipleOf: 8, multiplier: nil) == 128)     // Lumina2 D = 32
        #expect(LuminaFeedForward.innerDim(base: 128, multipleOf: 24, multiplier: 1.3) == 168)    // int(166.4) = 166 → 168
        #expect(LuminaFeedForward.innerDim(base: 1365, multipleOf: 256, multiplier: nil) == 1536)  // D = 512
        #expect(LuminaFeedForward.innerDim(base: 10, multipleOf: 4, multiplier: 0.01) == 0)       // int(0.1) = 0
        #expect(LuminaFeedForward.innerDim(base: 10, multipleOf: 4, multiplier: -1) == nil)
        #expect(LuminaFeedForward.innerDim(base: 10, multipleOf: 0, multiplier: nil) == nil)
        #expect(LuminaFeedForward.innerDim(base: 10, multipleOf: 4, multiplier: .infinity) == nil)
        var c = LuminaNextConfiguration()
        c.hiddenSize = 32; c.multipleOf = 16
        #expect(c.ffnInnerDim == 96)
    }

    /// Grouped-query attention: query head h reads key/value head `h / (heads / kvHeads)`, masked keys get
    /// no weight, the scale multiplies the scores.
    @Test(arguments: [(4, 2), (4, 1), (3, 3)])
    func groupedQueryAttentionMatchesNaive(heads: Int, kvHeads: Int) throws {
        let (b, sq, sk, dh) = (2, 5, 4, 3)
        let layout = LuminaHeads(heads: heads, kvHeads: kvHeads, headDim: dh)
        let q = randomTensor([b, sq, heads * dh], seed: 11), k = randomTensor([b, sk, kvHeads * dh], seed: 12)
        let v = randomTensor([b, sk, kvHeads * dh], seed: 13)
        let mask = try Tensor(shape: [b, sk], scalars: [1, 1, 0, 1, 0, 1, 1, 1])
        let scale: Float = 0.7
        let (pq, pk, pv, pm) = (doubles(q), doubles(k), doubles(v), doubles(mask))
        var expected = [Double](repeating: 0, count: b * sq * heads * dh)
        for i in 0..<b {
            for h in 0..<heads {
                let kh = h / (heads / kvHeads)
                for t in 0..<sq {
                    var scores = [Double](repeating: -.infinity, count: sk)
                    for j in 0..<sk where pm[i * sk + j] != 0 {
                        var dot = 0.0
                        for x in 0..<dh { dot += pq[(i * sq + t) * heads * dh + h * dh + x] * pk[(i * sk + j) * kvHeads * dh + kh * dh + x] }
                        scores[j] = dot * Double(scale)
                    }
                    let m = scores.max()!
                    let e = scores.map { Foundation.exp($0 - m) }
                    let total = e.reduce(0, +)
                    for x in 0..<dh {
                        var acc = 0.0
                        for j in 0..<sk { acc += e[j] / total * pv[(i * sk + j) * kvHeads * dh + kh * dh + x] }
                        expected[(i * sq + t) * heads * dh + h * dh + x] = acc
                    }
                }
            }
        }
        let got = try luminaAttention(q: q, k: k, v: v, layout: layout, keyMask: mask, scale: scale, precision: .float32)
        #expect(relL2(got, try Self.tensor(expected, [b, sq, heads * dh])) <= 1e-5)
        let repeated = try repeatingHeads(k, groups: kvHeads, times: heads / kvHeads)
        #expect(repeated.shape == [b, sk, heads * dh])
        #expect(repeated[1, 2, (heads - 1) * dh + 1] == k[1, 2, (kvHeads - 1) * dh + 1])
    }

    /// `√(log_base S) / √Dh` as Python computes it, and the errors where Python raises.
    @Test func proportionalAttentionScale() throws {
        let s = try DiTModels.proportionalAttentionScale(sequenceLength: 16, baseSequenceLength: 64, headDim: 16)
        #expect(abs(Double(s) - (Foundation.log(16.0) / Foundation.log(64.0)).squareRoot() / 4) <= 1e-7)
        #expect(try DiTModels.proportionalAttentionScale(sequenceLength: 16, baseSequenceLength: nil, headDim: 16) == 0.25)
        for base in [1.0, 0.5, -3, .nan] {
            #expect(throws: TensorError.self) {
                try DiTModels.proportionalAttentionScale(sequenceLength: 16, baseSequenceLength: base, headDim: 16)
            }
        }
    }

    @Test func maskedCaptionMeanMatchesNaive() throws {
        let x = randomTensor([2, 4, 3], seed: 14)
        let mask = try Tensor(shape: [2, 4], scalars: [1, 1, 0, 0, 0, 1, 1, 1])
        let got = try LuminaNextTimeCaptionEmbedding.maskedMean(x, mask: mask)
        let v = doubles(x), m = doubles(mask)
        var expected = [Double](repeating: 0, count: 6)
        for i in 0..<2 {
            let n = (0..<4).map { m[i * 4 + $0] }.reduce(0, +)
            for j in 0..<3 { expected[i * 3 + j] = (0..<4).map { v[(i * 4 + $0) * 3 + j] * m[i * 4 + $0] }.reduce(0, +) / n }
        }
        #expect(relL2(got, try Self.tensor(expected, [2, 3])) <= 1e-6)
    }

    /// `get_2d_rotary_pos_embed_lumina` in closed form (Double): rotation 2i turns by `row·f_i`, 2i+1 by
    /// `col·f_i`, `f_i = 1/(10000·ntk)^(4i/Dh)/linear`; the cos/sin tables repeat each rotation's value on
    /// its channel pair, and a larger table's top-left corner gives the same tables.
    @Test(arguments: [(1.0, 1.0), (0.48, 1.0), (1.0, 2.5)])
    func rotaryTableMatchesTheClosedForm(linear: Double, ntk: Double) throws {
        let (dh, rows, cols) = (12, 3, 5)
        let table = try LuminaNextRotaryEmbedding.table(headDim: dh, rows: rows, cols: cols, linearFactor: linear, ntkFactor: ntk)
        #expect(table.shape == [rows, cols, dh / 2, 2])
        let v = table.scalars
        for r in 0..<rows {
            for c in 0..<cols {
                for k in 0..<(dh / 2) {
                    let f = 1 / Foundation.pow(10000 * ntk, Double(4 * (k / 2)) / Double(dh)) / linear
                    let angle = Double(k % 2 == 0 ? r : c) * f
                    let at = ((r * cols + c) * (dh / 2) + k) * 2
                    #expect(abs(Double(v[at]) - Foundation.cos(angle)) <= 2e-6 && abs(Double(v[at + 1]) - Foundation.sin(angle)) <= 2e-6)
                }
            }
        }
        let tables = try LuminaNextRotaryEmbedding.tables(headDim: dh, rows: rows, cols: cols, linearFactor: linear, ntkFactor: ntk)
        let big = try LuminaNextRotaryEmbedding.table(headDim: dh, rows: rows + 2, cols: cols + 1, linearFactor: linear, ntkFactor: ntk)
        let sliced = try LuminaNextRotaryEmbedding.tables(fromTable: big, rows: rows, cols: cols, headDim: dh)
        #expect(sliced.cos == tables.cos && sliced.sin == tables.sin)
        #expect(tables.cos[7, 4] == tables.cos[7, 5] && tables.sin[7, 4] == v[((7 * (dh / 2)) + 2) * 2 + 1])
        #expect(throws: TensorError.self) { try LuminaNextRotaryEmbedding.tables(fromTable: table, rows: rows + 1, cols: cols, headDim: dh) }
        #expect(throws: TensorError.self) { try LuminaNextRotaryEmbedding.table(headDim: 10, rows: 2, cols: 2) }
    }
}
