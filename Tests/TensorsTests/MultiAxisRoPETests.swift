import Foundation
import Testing
@testable import Tensors

/// Multi-axis rotary embeddings (FLUX's 3 axes, Wan's (f, h, w) axes) against a naive Double rotation.
///
/// Channel mapping of the naive reference, for head dimension D = Σ dims and axis `a` starting at
/// column `off_a` (sum of the earlier axes' dims), frequency `j < dims[a]/2`:
/// `freq = 1/θ^(2j/dims[a])`, `angle = pos[t, a] · freq`, and the rotated pair is
/// - interleaved: `(off_a + 2j, off_a + 2j + 1)` — the axis' own contiguous slice;
/// - split halves: `(off_a/2 + j, D/2 + off_a/2 + j)` — the axes' half tables are concatenated into one
///   `D/2` table and pair `i` rotates against `i + D/2` across the whole head, which is how
///   ``RotaryEmbedding/apply(_:cos:sin:heads:layout:)`` pairs channels. (Before this was pinned, the
///   tables repeated each axis' half table inside the axis' slice, so for two or more axes the two
///   channels of a pair got different angles and the "rotation" changed the pair's norm.)
@Suite struct MultiAxisRoPETests {
    typealias Layout = RotaryEmbedding.Layout

    /// The channel pair of axis `a`'s frequency `j`.
    static func pair(layout: Layout, axesDims: [Int], axis a: Int, j: Int) -> (Int, Int) {
        let off = axesDims[..<a].reduce(0, +), d = axesDims.reduce(0, +)
        switch layout {
        case .interleaved: return (off + 2 * j, off + 2 * j + 1)
        case .splitHalves: return (off / 2 + j, d / 2 + off / 2 + j)
        }
    }

    /// Naive rotation of `x` [B, S, H·D] by positions `pos` [S, axes].
    static func naive(_ x: Tensor, positions pos: [Double], axesDims: [Int], theta: Double, heads: Int,
                      layout: Layout) -> [Double] {
        let (b, s, w) = (x.shape[0], x.shape[1], x.shape[2])
        let dh = w / heads, axes = axesDims.count
        let xs = d(x)
        var out = [Double](repeating: .nan, count: xs.count)   // every channel must be written once
        for bi in 0..<b { for t in 0..<s { for h in 0..<heads {
            let base = (bi * s + t) * w + h * dh
            for (a, dim) in axesDims.enumerated() { for j in 0..<(dim / 2) {
                let freq = 1 / Foundation.pow(theta, Double(2 * j) / Double(dim))
                let angle = pos[t * axes + a] * freq
                let (ia, ib) = pair(layout: layout, axesDims: axesDims, axis: a, j: j)
                let re = xs[base + ia], im = xs[base + ib]
                out[base + ia] = re * Foundation.cos(angle) - im * Foundation.sin(angle)
                out[base + ib] = im * Foundation.cos(angle) + re * Foundation.sin(angle)
            } }
        } } }
        return out
    }

    /// Positions like a (frame, row, column) grid; the row axis is offset and the column axis fractional
    /// (multiples of 0.25, exact in Float) so the axes differ.
    static func gridPositions(_ s: Int, axes: Int) -> [Double] {
        var p = [Double]()
        for t in 0..<s {
            for a in 0..<axes {
                switch a {
                case 0: p.append(Double(t / 6))             // frames / text index
                case 1: p.append(Double((t / 3) % 2) + 3)   // rows, offset
                default: p.append(Double(t % 3) * 0.75 + 2.5)   // columns, fractional
                }
            }
        }
        return p
    }

    // (B, S, H, axesDims, theta): odd S and H; unequal axis dims (FLUX is [16, 56, 56], Wan [44, 42, 42]).
    static let cases: [(Int, Int, Int, [Int], Double)] = [
        (2, 7, 3, [6, 4], 10000),        // 2-D positions
        (1, 13, 5, [4, 6, 10], 10000),   // 3-D positions
        (3, 5, 1, [2, 8, 6], 256),       // 3-D, a 2-channel axis (one frequency), small theta
    ]

    @Test(arguments: [Layout.interleaved, .splitHalves], cases)
    func multiAxisMatchesNaive(_ layout: Layout, _ c: (Int, Int, Int, [Int], Double)) throws {
        let (b, s, heads, axesDims, theta) = c
        let dh = axesDims.reduce(0, +)
        let posD = Self.gridPositions(s, axes: axesDims.count)
        let pos = try Tensor(shape: [s, axesDims.count], scalars: posD.map(Float.init))
        let x = rand([b, s, heads * dh], seed: UInt64(s * 31 + dh))
        let (cosT, sinT) = try RotaryEmbedding.tables(positions: pos, axesDims: axesDims, theta: theta, layout: layout)
        #expect(cosT.shape == [s, dh] && sinT.shape == [s, dh])
        let y = try RotaryEmbedding.apply(x, cos: cosT, sin: sinT, heads: heads, layout: layout)
        #expect(y.shape == x.shape)
        let ref = Self.naive(x, positions: posD, axesDims: axesDims, theta: theta, heads: heads, layout: layout)
        #expect(!ref.contains { $0.isNaN }, "the reference pairing must cover every channel")
        // Angles ≤ 4.5 rad: float32 cos/sin of a Double angle are exact to ~6e-8; the rotation adds two
        // products and a sum of O(1) values, so 1e-6 of the largest magnitude is a wide margin while a
        // wrong channel or frequency gives O(1) errors.
        expectClose(y, ref, tol: 1e-6)

        // Layout-independent property: every (rotated) pair keeps its norm.
        let xs = d(x), ys = d(y)
        var worst = 0.0
        for r in 0..<(b * s) { for h in 0..<heads {
            let base = r * heads * dh + h * dh
            for (a, dim) in axesDims.enumerated() { for j in 0..<(dim / 2) {
                let (ia, ib) = Self.pair(layout: layout, axesDims: axesDims, axis: a, j: j)
                let n0 = xs[base + ia] * xs[base + ia] + xs[base + ib] * xs[base + ib]
                let n1 = ys[base + ia] * ys[base + ia] + ys[base + ib] * ys[base + ib]
                worst = max(worst, abs(n1 - n0))
            } }
        } }
        #expect(worst <= 2e-6, "pair norms changed by up to \(worst): not a rotation")
    }

    /// Position 0 on every axis is the identity, for both layouts and any split of the head.
    @Test(arguments: [Layout.interleaved, .splitHalves])
    func zeroPositionsAreIdentity(_ layout: Layout) throws {
        let pos = try Tensor(zeros: [3, 3])
        let (c, s) = try RotaryEmbedding.tables(positions: pos, axesDims: [2, 4, 6], theta: 10000, layout: layout)
        let x = rand([2, 3, 2 * 12], seed: 77)
        #expect(try RotaryEmbedding.apply(x, cos: c, sin: s, heads: 2, layout: layout) == x)
    }

    @Test func shapeErrorsAreTyped() throws {
        let pos = try Tensor(zeros: [5, 2])
        // Wrong number of position columns.
        let e1 = #expect(throws: TensorError.self) {
            try RotaryEmbedding.tables(positions: pos, axesDims: [4, 4, 4], theta: 10000)
        }
        if case .shapeMismatch(let op, _, _)? = e1 { #expect(op == "rotary tables") } else { Issue.record("got \(String(describing: e1))") }
        // Odd axis dimension.
        let e2 = #expect(throws: TensorError.self) {
            try RotaryEmbedding.tables(positions: pos, axesDims: [4, 3], theta: 10000)
        }
        if case .invalidArgument? = e2 {} else { Issue.record("got \(String(describing: e2))") }
        // Tables for a different head dimension / sequence length.
        let (c, s) = try RotaryEmbedding.tables(positions: pos, axesDims: [4, 2], theta: 10000)
        for x in [rand([1, 5, 2 * 8], seed: 1), rand([1, 4, 2 * 6], seed: 2)] {
            let e = #expect(throws: TensorError.self) { try RotaryEmbedding.apply(x, cos: c, sin: s, heads: 2) }
            if case .shapeMismatch? = e {} else { Issue.record("got \(String(describing: e))") }
        }
        let e3 = #expect(throws: TensorError.self) { try RotaryEmbedding.apply(rand([1, 5, 13], seed: 3), cos: c, sin: s, heads: 2) }
        if case .shapeMismatch? = e3 {} else { Issue.record("got \(String(describing: e3))") }
    }
}
