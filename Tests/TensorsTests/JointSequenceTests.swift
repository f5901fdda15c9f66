import Testing
@testable import Tensors

/// ``JointSequence``'s fused passes against naive Double compositions.
@Suite struct JointSequenceTests {
    /// LayerNorm of one row in Double (biased variance), optionally affine.
    static func naiveNorm(_ row: [Double], eps: Double, weight: [Double]? = nil, bias: [Double]? = nil) -> [Double] {
        let mean = row.reduce(0, +) / Double(row.count)
        let v = row.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(row.count)
        return row.indices.map { j in
            var y = (row[j] - mean) / (v + eps).squareRoot()
            if let weight { y *= weight[j] }
            if let bias { y += bias[j] }
            return y
        }
    }

    /// Leading rows use (shift 3, scale 4), trailing rows (0, 1), with and without affine parameters;
    /// D = 37 covers the non-multiple-of-16 tail.
    @Test(arguments: [16, 37])
    func modulatedNormMatchesNaive(_ dim: Int) throws {
        let (b, t, l) = (2, 5, 2)
        let x = rand([b, t, dim], seed: 3), m = rand([b, 6 * dim], seed: 4), w = rand([dim], seed: 5), bias = rand([dim], seed: 6)
        let xd = d(x), md = d(m), wd = d(w), bd = d(bias)
        for affine in [true, false] {
            let out = try JointSequence.layerNormModulated(
                x, leadingRows: l, eps: 1e-5, weight: affine ? w : nil, bias: affine ? bias : nil, modulation: m,
                leading: .init(shift: 3, scale: 4), trailing: .init(shift: 0, scale: 1))
            var ref = [Double]()
            for r in 0..<(b * t) {
                let s = r / t, (shift, scale) = r % t < l ? (3, 4) : (0, 1)
                let n = Self.naiveNorm(Array(xd[(r * dim)..<((r + 1) * dim)]), eps: 1e-5,
                                       weight: affine ? wd : nil, bias: affine ? bd : nil)
                for j in 0..<dim {
                    let sc = md[(s * 6 + scale) * dim + j], sh = md[(s * 6 + shift) * dim + j]
                    ref.append(n[j] * (1 + sc) + sh)
                }
            }
            // O(1) values; float32 rounding of the statistics gives ~1e-6 relative.
            expectClose(out, ref, tol: 1e-5)
        }
        #expect(throws: TensorError.self) {
            try JointSequence.layerNormModulated(x, leadingRows: 6, eps: 1e-5, weight: nil, bias: nil, modulation: m,
                                                 leading: .init(shift: 0, scale: 1), trailing: .init(shift: 0, scale: 1))
        }
        #expect(throws: TensorError.self) {
            try JointSequence.layerNormModulated(x, leadingRows: 1, eps: 1e-5, weight: nil, bias: nil, modulation: m,
                                                 leading: .init(shift: 6, scale: 1), trailing: .init(shift: 0, scale: 1))
        }
    }

    @Test func gatedAddMatchesNaive() throws {
        let (b, t, l, dim) = (2, 4, 1, 20)
        var x = rand([b, t, dim], seed: 1)
        let x0 = d(x), y = rand([b, t, dim], seed: 2), m = rand([b, 6 * dim], seed: 3)
        try JointSequence.addGated(&x, y, leadingRows: l, modulation: m, leadingGate: 5, trailingGate: 2)
        let yd = d(y), md = d(m)
        var ref = [Double]()
        for r in 0..<(b * t) {
            let g = (r / t) * 6 + (r % t < l ? 5 : 2)
            for j in 0..<dim { ref.append(x0[r * dim + j] + md[g * dim + j] * yd[r * dim + j]) }
        }
        expectClose(x, ref, tol: 1e-6)
        #expect(throws: TensorError.self) {
            try JointSequence.addGated(&x, rand([b, t, dim + 1], seed: 2), leadingRows: l, modulation: m, leadingGate: 5, trailingGate: 2)
        }
    }

    /// v copied; q and k normalised per head (affine, ε 1e-6), the trailing rows rotated in interleaved
    /// pairs by their table row, the leading rows not; also without tables.
    @Test(arguments: [true, false])
    func splitQKVMatchesNaive(_ withRope: Bool) throws {
        let (b, t, l, heads, dh) = (2, 5, 2, 2, 8)
        let width = heads * dh
        let p = rand([b, t, 3 * width], seed: 7)
        let nq = (rand([dh], seed: 8), rand([dh], seed: 9)), nk = (rand([dh], seed: 10), rand([dh], seed: 11))
        let cosT = rand([t - l, dh], seed: 12), sinT = rand([t - l, dh], seed: 13)
        let (q, k, v) = try JointSequence.splitQKV(p, heads: heads, leadingRows: l, normQ: nq, normK: nk, eps: 1e-6,
                                                   rope: withRope ? (cosT, sinT) : nil)
        let pd = d(p), c = d(cosT), s = d(sinT)
        for (part, out, norm) in [(0, q, nq), (1, k, nk)] {
            var ref = [Double](repeating: 0, count: b * t * width)
            for r in 0..<(b * t) {
                for h in 0..<heads {
                    let start = r * 3 * width + part * width + h * dh
                    let y = Self.naiveNorm(Array(pd[start..<(start + dh)]), eps: 1e-6, weight: d(norm.0), bias: d(norm.1))
                    let tok = r % t
                    for i in stride(from: 0, to: dh, by: 2) {
                        var (a, bb) = (y[i], y[i + 1])
                        if withRope && tok >= l {
                            let row = (tok - l) * dh
                            a = y[i] * c[row + i] - y[i + 1] * s[row + i]
                            bb = y[i + 1] * c[row + i + 1] + y[i] * s[row + i + 1]
                        }
                        ref[r * width + h * dh + i] = a
                        ref[r * width + h * dh + i + 1] = bb
                    }
                }
            }
            expectClose(out, ref, tol: 1e-5)
        }
        var vRef = [Double]()
        for r in 0..<(b * t) { vRef.append(contentsOf: pd[(r * 3 * width + 2 * width)..<(r * 3 * width + 3 * width)]) }
        #expect(d(v) == vRef)
        #expect(q.shape == [b, t, width] && k.shape == [b, t, width] && v.shape == [b, t, width])
        #expect(throws: TensorError.self) {
            try JointSequence.splitQKV(p, heads: heads, leadingRows: l, normQ: nq, normK: nk, eps: 1e-6,
                                       rope: (rand([t, dh], seed: 1), rand([t, dh], seed: 2)))
        }
    }
}
