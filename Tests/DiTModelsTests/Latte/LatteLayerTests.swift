import Foundation
import Testing
import Tensors
@testable import DiTModels
import TestSupport

/// Latte's layers that no other family uses, each against an independent reference written as loops from
/// diffusers' formulas.
@Suite struct LatteLayerTests {
    /// `pos_embed.proj` (a per-frame Conv2d, kernel = stride = patch) against a direct strided convolution.
    @Test func framePatchEmbeddingIsAPerFrameConvolution() throws {
        let (b, c, d, f, p) = (2, 3, 5, 3, 2)
        let (h, w) = (2 * p, 3 * p)
        let loader = WeightLoader(randomSeed: 5)
        let pe = PatchEmbedding3D(loader.root["proj"], inChannels: c, outChannels: d, framePatch: (p, p))
        let weight = doubles(try #require(loader.supplied["proj.weight"]))  // [d, c, p, p]
        let bias = doubles(try #require(loader.supplied["proj.bias"]))
        #expect(loader.supplied["proj.weight"]?.shape == [d, c, p, p])
        let x = randomTensor([b, c, f, h, w], seed: 3)
        let out = try pe(x)
        var ref = [Double]()
        for bi in 0..<b { for fi in 0..<f { for hi in 0..<2 { for wi in 0..<3 { for o in 0..<d {
            var s = bias[o]
            for ci in 0..<c { for r in 0..<p { for q in 0..<p {
                s += weight[((o * c + ci) * p + r) * p + q] * Double(x[bi, ci, fi, hi * p + r, wi * p + q])
            } } }
            ref.append(s)
        } } } } }
        // 12 products per output: float32 error ~1e-7 relative.
        #expect(relL2(out, try Tensor(shape: [b, f * 6, d], scalars: ref.map(Float.init))) < 1e-6)
    }

    /// The 2-D table: channel j < D/4 of token (r, c) is sin(x·ω_j), then cos; the second half encodes the
    /// row — with x = c / (W / base) / scale, ω_j = 10000^(−j/(D/4)) (diffusers' `get_2d_sincos_pos_embed`).
    @Test(arguments: [(4, 4, 4, 1), (3, 5, 4, 1), (2, 6, 8, 2)])
    func gridTableIsDiffusersSinCos(_ sizes: (Int, Int, Int, Int)) throws {
        let (h, w, base, scale) = sizes
        let d = 16
        let table = try LattePositionTable.grid(height: h, width: w, dim: d, baseSize: base, interpolationScale: scale)
        #expect(table.shape == [h * w, d])
        let q = d / 4
        for r in 0..<h {
            for c in 0..<w {
                let x = Double(c) * Double(base) / Double(w) / Double(scale)
                let y = Double(r) * Double(base) / Double(h) / Double(scale)
                for j in 0..<q {
                    let omega = pow(10000.0, -Double(j) / Double(q))
                    let expected = [sin(x * omega), cos(x * omega), sin(y * omega), cos(y * omega)]
                    let got = [table[r * w + c, j], table[r * w + c, q + j], table[r * w + c, 2 * q + j], table[r * w + c, 3 * q + j]]
                    for (e, g) in zip(expected, got) { #expect(abs(Double(g) - e) < 1e-6, "(\(r), \(c)) channel \(j)") }
                }
            }
        }
    }

    /// The temporal table: row f is `[sin(f·ω), cos(f·ω)]`, ω_j = 10000^(−j/(D/2)).
    @Test func temporalRowsAreDiffusersSinCos() throws {
        let d = 12
        let rows = try LattePositionTable.rows([0, 1, 2, 3], dim: d)
        for f in 0..<4 {
            for j in 0..<(d / 2) {
                let a = Double(f) * pow(10000.0, -Double(j) / Double(d / 2))
                #expect(abs(Double(rows[f, j]) - sin(a)) < 1e-6 && abs(Double(rows[f, d / 2 + j]) - cos(a)) < 1e-6)
            }
        }
    }

    /// adaLN-single: `embedded = linear_2(silu(linear_1(sin(t))))`, `modulation = linear(silu(embedded))`,
    /// with the 256 sinusoid features cos first, `freq_i = exp(−ln(10⁴)·i/128)`.
    @Test func adaLayerNormSingleIsTheTimestepMLPAndItsProjection() throws {
        let d = 8
        let loader = WeightLoader(randomSeed: 11)
        let layer = AdaLayerNormSingle(loader.root["adaln_single"], dim: d)
        let (modulation, embedded) = try layer([500, 125.5])
        #expect(modulation.shape == [2, 6 * d] && embedded.shape == [2, d])
        func weights(_ n: String) throws -> [Double] { doubles(try #require(loader.supplied["adaln_single.\(n)"])) }
        let silu = { (v: Double) in v / (1 + exp(-v)) }
        for (row, t) in [500.0, 125.5].enumerated() {
            let features = (0..<128).map { i in cos(t * exp(-log(10000.0) * Double(i) / 128)) }
                + (0..<128).map { i in sin(t * exp(-log(10000.0) * Double(i) / 128)) }
            let h1 = naiveLinear(features, inFeatures: 256, weight: try weights("emb.timestep_embedder.linear_1.weight"),
                                 bias: try weights("emb.timestep_embedder.linear_1.bias")).map(silu)
            let e = naiveLinear(h1, inFeatures: d, weight: try weights("emb.timestep_embedder.linear_2.weight"),
                                bias: try weights("emb.timestep_embedder.linear_2.bias"))
            let m = naiveLinear(e.map(silu), inFeatures: d, weight: try weights("linear.weight"), bias: try weights("linear.bias"))
            // Float32 arguments up to 500 rad: the sinusoid features carry ~3e-5 absolute error.
            #expect(relL2(try embedded.slice(axis: 0, row..<(row + 1)), try Tensor(shape: [1, d], scalars: e.map(Float.init))) < 5e-4)
            #expect(relL2(try modulation.slice(axis: 0, row..<(row + 1)), try Tensor(shape: [1, 6 * d], scalars: m.map(Float.init))) < 5e-4)
        }
    }
}
