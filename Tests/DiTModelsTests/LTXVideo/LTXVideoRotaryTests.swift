import Foundation
import Testing
import Tensors
@testable import DiTModels
import TestSupport

/// The rotary embedding against a naive Double transcription of diffusers' `LTXVideoRotaryPosEmbed`
/// and `apply_rotary_emb`.
@Suite("LTX-Video rotary embedding")
struct LTXVideoRotaryTests {
    /// The naive table entry of channel `ch` for coordinates `g`: leading `D mod 6` channels unrotated,
    /// then channel pairs `2·(3k + a)`, `2·(3k + a) + 1` with the angle `θ^(k/(K−1))·π/2·(2·g_a − 1)`.
    static func naive(_ g: [Double], dim: Int, channel ch: Int) -> (cos: Double, sin: Double) {
        let pad = dim % 6, k = dim / 6
        if ch < pad { return (1, 0) }
        let j = (ch - pad) / 2
        let (f, a) = (j / 3, j % 3)
        let x = k > 1 ? Double(f) / Double(k - 1) : 0
        let angle = Foundation.pow(10000, x) * Double.pi / 2 * (2 * g[a] - 1)
        return (Foundation.cos(angle), Foundation.sin(angle))
    }

    /// Grid tables, scaled and unscaled, against the naive formula. The largest frequency is
    /// 10000·π/2 ≈ 15708 rad: the float32 angle (diffusers' precision) differs from the Double one by up
    /// to ~2e-3 rad there, so the tolerance is 5e-3; any layout mistake (axis order, padding side,
    /// pairing) gives differences of order 1.
    @Test func gridTablesMatchTheFormula() throws {
        for (dim, scale) in [(28, [Float(0.32), 32, 32]), (36, nil), (12, [Float(1.0 / 3.0), 32, 32])] {
            var c = tinyLTXConfiguration()
            c.numAttentionHeads = 2
            c.attentionHeadDim = dim / 2
            c.patchSize = 2
            c.patchSizeT = 3
            let rope = LTXVideoRotaryEmbedding(configuration: c)
            let coords = rope.gridCoordinates(frames: 2, height: 3, width: 2, scale: scale)
            let t = try rope.tables(coordinates: coords, batch: 1, tokens: 12)
            #expect(t.cos.shape == [1, 12, dim])
            var maxErr = 0.0, token = 0
            for f in 0..<2 { for h in 0..<3 { for w in 0..<2 {
                var g = [Double(f), Double(h), Double(w)]
                if let scale {
                    let patch = [3.0, 2.0, 2.0], base = [20.0, 2048.0, 2048.0]
                    for a in 0..<3 { g[a] = g[a] * Double(scale[a]) * patch[a] / base[a] }
                }
                for ch in 0..<dim {
                    let (cv, sv) = Self.naive(g, dim: dim, channel: ch)
                    maxErr = max(maxErr, abs(Double(t.cos[0, token, ch]) - cv), abs(Double(t.sin[0, token, ch]) - sv))
                }
                token += 1
            } } }
            #expect(maxErr < 1e-2, "dim \(dim): max error \(maxErr)")
        }
    }

    /// Applying the tables rotates each channel pair `(x₀, x₁)` to `(x₀c − x₁s, x₁c + x₀s)`, per batch
    /// element when the tables are per sample.
    @Test func applicationRotatesPairsPerSample() throws {
        let (b, s, d) = (2, 3, 8)
        let cos = randomTensor([b, s, d], seed: 1), sin = randomTensor([b, s, d], seed: 2)
        let x = randomTensor([b, s, d], seed: 3)
        let y = try LTXVideoRotaryTables(cos: cos, sin: sin).apply(x)
        var maxErr = 0.0
        for bi in 0..<b { for t in 0..<s { for p in 0..<(d / 2) {
            let x0 = Double(x[bi, t, 2 * p]), x1 = Double(x[bi, t, 2 * p + 1])
            let r0 = x0 * Double(cos[bi, t, 2 * p]) - x1 * Double(sin[bi, t, 2 * p])
            let r1 = x1 * Double(cos[bi, t, 2 * p + 1]) + x0 * Double(sin[bi, t, 2 * p + 1])
            maxErr = max(maxErr, abs(Double(y[bi, t, 2 * p]) - r0), abs(Double(y[bi, t, 2 * p + 1]) - r1))
        } } }
        #expect(maxErr < 1e-5)
        let shared = try LTXVideoRotaryTables(cos: cos.slice(axis: 0, 0..<1), sin: sin.slice(axis: 0, 0..<1)).apply(x)
        #expect(try shared.slice(axis: 0, 0..<1) == y.slice(axis: 0, 0..<1))
    }
}
