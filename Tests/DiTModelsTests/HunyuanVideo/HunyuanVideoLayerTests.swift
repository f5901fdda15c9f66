import Foundation
import Testing
import Tensors
@testable import DiTModels
import TestSupport

/// HunyuanVideo's own pieces against naive Double references written from diffusers' definitions.
@Suite("HunyuanVideo layers")
struct HunyuanVideoLayerTests {
    /// The joint rotary tables: per axis `cos/sin(p · θ^(−2i/dim))` for the image token's (frame, row,
    /// column) index, each frequency twice (interleaved pairs), axes in that order; text rows (1, 0).
    @Test func rotaryTablesMatchTheClosedForm() throws {
        var c = HunyuanVideoTestConfig.tiny()
        c.attentionHeadDim = 12
        c.ropeAxesDim = [4, 2, 6]
        c.ropeTheta = 256
        let (f, h, w, l) = (2, 3, 4, 2)
        let (cos, sin) = try HunyuanVideoRotaryEmbedding(configuration: c).jointTables(frames: f, height: h, width: w, textTokens: l)
        #expect(cos.shape == [f * h * w + l, 12] && sin.shape == cos.shape)
        var maxErr = 0.0
        var token = 0
        for fi in 0..<f { for hi in 0..<h { for wi in 0..<w {
            var col = 0
            for (axis, dim) in [4, 2, 6].enumerated() {
                let p = Double([fi, hi, wi][axis])
                for i in 0..<(dim / 2) {
                    let angle = p * Foundation.pow(256, -Double(2 * i) / Double(dim))
                    for k in 0..<2 {
                        maxErr = max(maxErr, abs(Double(cos[token, col + 2 * i + k]) - Foundation.cos(angle)))
                        maxErr = max(maxErr, abs(Double(sin[token, col + 2 * i + k]) - Foundation.sin(angle)))
                    }
                }
                col += dim
            }
            token += 1
        } } }
        // The angles are float32 products (as diffusers forms them): ≤ a few ulps of angles below 4.
        #expect(maxErr <= 2e-6, "max error \(maxErr)")
        for t in (f * h * w)..<(f * h * w + l) {
            for j in 0..<12 { #expect(cos[t, j] == 1 && sin[t, j] == 0) }
        }
    }

    /// A zero-width rotary axis (diffusers accepts `rope_axes_dim` entries of 0) contributes no channels.
    @Test func aZeroWidthRotaryAxisIsAllowed() throws {
        var c = HunyuanVideoTestConfig.tiny()
        c.ropeAxesDim = [0, 4, 4]
        try c.validate()
        let (cos, _) = try HunyuanVideoRotaryEmbedding(configuration: c).jointTables(frames: 2, height: 1, width: 1, textTokens: 0)
        // Both tokens share row and column 0, so their tables are equal (the frame axis has no channels).
        for j in 0..<8 { #expect(cos[0, j] == 1 && cos[1, j] == 1) }
    }

    /// The refiner's self-attention follows diffusers' boolean rule — query i sees key j iff both are valid,
    /// or j = 0 — checked against a naive Double attention that applies that `[L, L]` rule directly.
    @Test func refinerSelfAttentionMatchesTheBooleanMaskRule() throws {
        let (b, l, heads, dh) = (2, 5, 2, 3)
        let width = heads * dh
        let q = randomTensor([b, l, width], seed: 11), k = randomTensor([b, l, width], seed: 12)
        let v = randomTensor([b, l, width], seed: 13)
        let rows: [[Float]] = [[1, 1, 0, 1, 0], [0, 1, 1, 1, 1]]
        let mask = try Tensor(shape: [b, l], scalars: rows.flatMap { $0 })
        let got = try HunyuanVideoTokenRefiner.SelfAttentionMask(mask).attend(q, k, v, heads: heads, precision: .float32)
        var ref = [Double](repeating: 0, count: b * l * width)
        let (qd, kd, vd) = (doubles(q), doubles(k), doubles(v))
        for bi in 0..<b { for hd in 0..<heads { for i in 0..<l {
            let allowed = (0..<l).filter { j in j == 0 || (rows[bi][i] != 0 && rows[bi][j] != 0) }
            var scores = allowed.map { j in
                (0..<dh).reduce(0.0) { $0 + qd[(bi * l + i) * width + hd * dh + $1] * kd[(bi * l + j) * width + hd * dh + $1] }
                    / Double(dh).squareRoot()
            }
            let m = scores.max()!
            scores = scores.map { Foundation.exp($0 - m) }
            let z = scores.reduce(0, +)
            for c in 0..<dh {
                ref[(bi * l + i) * width + hd * dh + c] = zip(allowed, scores).reduce(0.0) {
                    $0 + $1.1 / z * vd[(bi * l + $1.0) * width + hd * dh + c]
                }
            }
        } } }
        #expect(relL2(got, try Tensor(shape: got.shape, scalars: ref.map(Float.init))) < 1e-6)
    }

    /// The pooled text is the mask-weighted mean of the tokens.
    @Test func maskedMeanIsTheMaskWeightedAverage() throws {
        let x = randomTensor([2, 4, 3], seed: 3)
        let mask = try Tensor(shape: [2, 4], scalars: [1, 1, 1, 0, 0, 1, 0, 1])
        let m = try HunyuanVideoTokenRefiner.maskedMean(x, mask: mask)
        for (bi, valid) in [[0, 1, 2], [1, 3]].enumerated() {
            for j in 0..<3 {
                let mean = valid.map { Double(x[bi, $0, j]) }.reduce(0, +) / Double(valid.count)
                #expect(abs(Double(m[bi, j]) - mean) <= 1e-6)
            }
        }
    }

    /// The blocks' key mask keeps the image tokens and the first `Σ mask` text tokens (diffusers counts
    /// the mask); no mask at all when nothing is padded.
    @Test func jointKeyMaskKeepsAPrefix() throws {
        let m = try #require(try HunyuanVideoTransformer.jointKeyMask(validText: [3, 1], imageTokens: 2, textTokens: 3, batch: 2))
        #expect(m.scalars == [1, 1, 1, 1, 1, 1, 1, 1, 0, 0])
        #expect(try HunyuanVideoTransformer.jointKeyMask(validText: [3, 3], imageTokens: 2, textTokens: 3, batch: 2) == nil)
    }

    /// Every `qk_norm` head norm against its definition: RMS `x/√(mean x² + ε)·w`, LayerNorm
    /// `(x − μ)/√(var + ε)·w + b` (and without parameters), L2 `x / max(‖x‖, ε)`, identity.
    @Test(arguments: [HunyuanVideoQKNorm.rms, .layer, .plainLayer, .l2, .identity])
    func headNormsFollowTheirDefinitions(_ kind: HunyuanVideoQKNorm) throws {
        let loader = WeightLoader(randomSeed: 2)
        let norm = HunyuanVideoHeadNorm(loader.root["n"], kind: kind, headDim: 12)
        let w = loader.supplied["n.weight"].map(doubles), bias = loader.supplied["n.bias"].map(doubles)
        var x = doubles(randomTensor([3, 12], seed: 4))
        for j in 0..<12 { x[j] = 0 }  // an all-zero head (L2 then divides by ε)
        let xs = try Tensor(shape: [3, 12], scalars: x.map(Float.init))
        var y = [Float](repeating: 0, count: 36)
        xs.withUnsafeBufferPointer { px in
            y.withUnsafeMutableBufferPointer { py in
                for r in 0..<3 { norm.apply(px.baseAddress! + 12 * r, py.baseAddress! + 12 * r) }
            }
        }
        for r in 0..<3 {
            let row = Array(x[(12 * r)..<(12 * r + 12)])
            let mean = row.reduce(0, +) / 12, ms = row.map { $0 * $0 }.reduce(0, +) / 12
            let variance = row.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / 12
            for j in 0..<12 {
                let expected: Double
                switch kind {
                case .rms: expected = row[j] / (ms + 1e-6).squareRoot() * w![j]
                case .layer: expected = (row[j] - mean) / (variance + 1e-6).squareRoot() * w![j] + bias![j]
                case .plainLayer: expected = (row[j] - mean) / (variance + 1e-6).squareRoot()
                case .l2: expected = row[j] / max((12 * ms).squareRoot(), 1e-6)
                case .identity: expected = row[j]
                }
                #expect(abs(Double(y[12 * r + j]) - expected) <= 1e-5 * max(1, abs(expected)), "\(kind) row \(r) col \(j)")
            }
        }
    }

    /// The joint q/k/v: each source's rows in order, q and k normalised per head (RMS with each source's
    /// own scale), v copied.
    @Test func jointQKVNormalisesAndJoins() throws {
        let (b, heads, dh) = (2, 2, 4)
        let d = heads * dh
        let loader = WeightLoader(randomSeed: 3)
        let norms = ["iq", "ik", "tq", "tk"].map { HunyuanVideoHeadNorm(loader.root[$0], kind: .rms, headDim: dh) }
        let image = randomTensor([b, 3, 3 * d], seed: 5), text = randomTensor([b, 4, 3 * d], seed: 6)
        let sources = [
            HunyuanVideoQKVSource(projection: image, rows: 0..<3, normQ: norms[0], normK: norms[1]),
            HunyuanVideoQKVSource(projection: text, rows: 1..<4, normQ: norms[2], normK: norms[3]),
        ]
        let t = 6
        let (q, k, v) = try HunyuanVideoKernels.jointQKV(sources, heads: heads)
        #expect(q.shape == [b, t, d] && k.shape == q.shape && v.shape == q.shape)
        var maxErr = 0.0
        for bi in 0..<b { for jt in 0..<t {
            let (src, row, nq, nk) = jt < 3 ? (image, jt, norms[0], norms[1]) : (text, jt - 2, norms[2], norms[3])
            for (which, out, norm) in [(0, q, Optional(nq)), (1, k, Optional(nk)), (2, v, nil)] {
                for h in 0..<heads {
                    let x = (0..<dh).map { Double(src[bi, row, which * d + h * dh + $0]) }
                    var y = x
                    if let norm {
                        let w = doubles(try #require(norm.weight))
                        let r = (x.map { $0 * $0 }.reduce(0, +) / Double(dh) + 1e-6).squareRoot()
                        y = (0..<dh).map { x[$0] / r * w[$0] }
                    }
                    for j in 0..<dh { maxErr = max(maxErr, abs(Double(out[bi, jt, h * dh + j]) - y[j])) }
                }
            }
        } }
        #expect(maxErr <= 1e-5, "max error \(maxErr)")
        #expect(throws: TensorError.self) {
            try HunyuanVideoKernels.jointQKV([sources[0], HunyuanVideoQKVSource(projection: randomTensor([b, 4, 3 * d + 3], seed: 1),
                                                                             rows: 0..<4, normQ: norms[2], normK: norms[3])], heads: heads)
        }
        // With tables, q and k come rotated in the same pass: bit-identical to rotating afterwards; v is not.
        let cos = randomTensor([t, dh], seed: 7), sin = randomTensor([t, dh], seed: 8)
        let (qr, kr, vr) = try HunyuanVideoKernels.jointQKV(sources, heads: heads, rope: (cos, sin))
        #expect(qr.scalars == (try RotaryEmbedding.apply(q, cos: cos, sin: sin, heads: heads)).scalars)
        #expect(kr.scalars == (try RotaryEmbedding.apply(k, cos: cos, sin: sin, heads: heads)).scalars)
        #expect(vr.scalars == v.scalars)
        #expect(throws: TensorError.self) {
            try HunyuanVideoKernels.jointQKV(sources, heads: heads, rope: (randomTensor([t - 1, dh], seed: 1), sin))
        }
    }

    /// The in-place gated residual `r + x·g`, per sample and per token.
    @Test func gatedResidualAddsTheGatedUpdate() throws {
        let r = randomTensor([2, 3, 4], seed: 1), x = randomTensor([2, 3, 4], seed: 2)
        for gate in [randomTensor([2, 4], seed: 3), randomTensor([2, 3, 4], seed: 4)] {
            var out = r
            try addGated(&out, x, gate: gate.rank == 2 ? .perSample(gate) : .perToken(gate))
            for b in 0..<2 { for t in 0..<3 { for j in 0..<4 {
                let g = gate.rank == 2 ? gate[b, j] : gate[b, t, j]
                #expect(out[b, t, j] == r[b, t, j] + x[b, t, j] * g)
            } } }
        }
        var bad = r
        #expect(throws: TensorError.self) { try addGated(&bad, x, gate: .perSample(randomTensor([2, 3], seed: 1))) }
    }

    /// Token-replace parameters: the first `n` token rows take the first-frame values, the others the
    /// regular ones.
    @Test func perTokenModulationSplitsAtTheFirstFrame() throws {
        let first = randomTensor([2, 3], seed: 5), rest = randomTensor([2, 3], seed: 6)
        let p = try HunyuanVideoModulation.perToken(first: first, rest: rest, firstTokens: 2, tokens: 5)
        #expect(p.shape == [2, 5, 3])
        for b in 0..<2 { for t in 0..<5 { for j in 0..<3 {
            #expect(p[b, t, j] == (t < 2 ? first[b, j] : rest[b, j]))
        } } }
    }
}
