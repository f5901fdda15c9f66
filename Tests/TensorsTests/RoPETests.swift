import Foundation
import Testing
@testable import Tensors

@Suite struct RoPETests {
    @Test func tablesMatchClosedForm() throws {
        let pos = try Tensor(shape: [3, 2], scalars: [0, 0, 1, 2, 5, 7])
        let (c, s) = try RotaryEmbedding.tables(positions: pos, axesDims: [4, 2], theta: 10000)
        #expect(c.shape == [3, 6])
        // Axis 0 (dim 4): freqs 1, 10000^(-1/2); axis 1 (dim 2): freq 1. Interleaved: each repeated.
        let t = 2
        let angles: [Double] = [5, 5, 0.05, 0.05, 7, 7]
        let expected = angles.map { Foundation.cos($0) }
        for j in 0..<6 { #expect(abs(Double(c[t, j]) - expected[j]) < 1e-6) }
        // Split halves: the axes' half tables [5, 0.05 | 7] concatenated, then repeated: [5, 0.05, 7, 5, 0.05, 7].
        let (c2, s2) = try RotaryEmbedding.tables(positions: pos, axesDims: [4, 2], theta: 10000, layout: .splitHalves)
        let split: [Double] = [5, 0.05, 7, 5, 0.05, 7]
        for j in 0..<6 {
            #expect(abs(Double(c2[t, j]) - Foundation.cos(split[j])) < 1e-6)
            #expect(abs(Double(s2[t, j]) - Foundation.sin(split[j])) < 1e-6)
        }
        #expect(abs(Double(s[t, 5]) - Foundation.sin(7)) < 1e-6)
        #expect(throws: TensorError.self) { try RotaryEmbedding.tables(positions: pos, axesDims: [3, 2], theta: 10000) }
    }

    @Test(arguments: [RotaryEmbedding.Layout.interleaved, .splitHalves])
    func applyMatchesComplexRotation(_ layout: RotaryEmbedding.Layout) throws {
        let (b, s, h, dh) = (2, 5, 3, 8)
        let x = rand([b, s, h * dh], seed: 3)
        let pos = try Tensor(shape: [s, 1], scalars: (0..<s).map { Float($0) * 1.5 })
        let (c, sn) = try RotaryEmbedding.tables(positions: pos, axesDims: [dh], theta: 100, layout: layout)
        let y = try RotaryEmbedding.apply(x, cos: c, sin: sn, heads: h, layout: layout)
        let xs = d(x)
        var ref = [Double](repeating: 0, count: xs.count)
        for bi in 0..<b { for t in 0..<s { for hh in 0..<h { for i in 0..<(dh / 2) {
            let angle = Double(t) * 1.5 * Foundation.pow(100, -Double(2 * i) / Double(dh))
            let base = (bi * s + t) * h * dh + hh * dh
            let (ia, ib) = layout == .interleaved ? (2 * i, 2 * i + 1) : (i, i + dh / 2)
            let re = xs[base + ia], im = xs[base + ib]
            ref[base + ia] = re * Foundation.cos(angle) - im * Foundation.sin(angle)
            ref[base + ib] = im * Foundation.cos(angle) + re * Foundation.sin(angle)
        } } } }
        expectClose(y, ref, tol: 1e-6)
    }
}
