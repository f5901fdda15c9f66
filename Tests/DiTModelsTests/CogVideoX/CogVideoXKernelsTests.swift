import Testing
@testable import DiTModels
import Tensors
import TestSupport

/// ``CogVideoXKernels``' fused passes against naive Double compositions (the joint `[text; video]`
/// modulated norm and the q/k/v split with per-head norm and rotary).
@Suite("CogVideoX kernels")
struct CogVideoXKernelsTests {
    /// Leading rows use (shift 3, scale 4), trailing rows (0, 1), with and without affine parameters;
    /// D = 37 covers the non-multiple-of-16 tail.
    @Test(arguments: [16, 37])
    func modulatedNormMatchesNaive(_ dim: Int) throws {
        let (b, t, l) = (2, 5, 2)
        let x = uniform([b, t, dim], seed: 3), m = uniform([b, 6 * dim], seed: 4), w = uniform([dim], seed: 5), bias = uniform([dim], seed: 6)
        let xd = doubles(x), md = doubles(m), wd = doubles(w), bd = doubles(bias)
        for affine in [true, false] {
            let out = try CogVideoXKernels.layerNormModulated(
                x, leadingRows: l, eps: 1e-5, weight: affine ? w : nil, bias: affine ? bias : nil, modulation: m,
                leading: .init(shift: 3, scale: 4), trailing: .init(shift: 0, scale: 1))
            var ref = [Double]()
            for r in 0..<(b * t) {
                let s = r / t, (shift, scale) = r % t < l ? (3, 4) : (0, 1)
                let n = naiveLayerNorm(Array(xd[(r * dim)..<((r + 1) * dim)]), dim: dim,
                                       weight: affine ? wd : nil, bias: affine ? bd : nil, eps: 1e-5)
                for j in 0..<dim {
                    let sc = md[(s * 6 + scale) * dim + j], sh = md[(s * 6 + shift) * dim + j]
                    ref.append(n[j] * (1 + sc) + sh)
                }
            }
            // O(1) values; float32 rounding of the statistics gives ~1e-6 relative.
            expectClose(out, ref, tol: 1e-5)
        }
        #expect(throws: TensorError.self) {
            try CogVideoXKernels.layerNormModulated(x, leadingRows: 6, eps: 1e-5, weight: nil, bias: nil, modulation: m,
                                                    leading: .init(shift: 0, scale: 1), trailing: .init(shift: 0, scale: 1))
        }
        #expect(throws: TensorError.self) {
            try CogVideoXKernels.layerNormModulated(x, leadingRows: 1, eps: 1e-5, weight: nil, bias: nil, modulation: m,
                                                    leading: .init(shift: 6, scale: 1), trailing: .init(shift: 0, scale: 1))
        }
    }

    /// v the value block in place; q and k normalised per head (affine, ε 1e-6), the trailing rows rotated in interleaved
    /// pairs by their table row, the leading rows not; also without tables.
    @Test(arguments: [true, false])
    func splitQKVMatchesNaive(_ withRope: Bool) throws {
        let (b, t, l, heads, dh) = (2, 5, 2, 2, 8)
        let width = heads * dh
        let p = uniform([b, t, 3 * width], seed: 7)
        let nq = (uniform([dh], seed: 8), uniform([dh], seed: 9)), nk = (uniform([dh], seed: 10), uniform([dh], seed: 11))
        let cosT = uniform([t - l, dh], seed: 12), sinT = uniform([t - l, dh], seed: 13)
        let (q, k, v) = try CogVideoXKernels.splitQKV(p, heads: heads, leadingRows: l, normQ: nq, normK: nk, eps: 1e-6,
                                                      rope: withRope ? (cosT, sinT) : nil)
        let pd = doubles(p), c = doubles(cosT), s = doubles(sinT)
        for (part, out, norm) in [(0, q, nq), (1, k, nk)] {
            var ref = [Double](repeating: 0, count: b * t * width)
            for r in 0..<(b * t) {
                for h in 0..<heads {
                    let start = r * 3 * width + part * width + h * dh
                    let y = naiveLayerNorm(Array(pd[start..<(start + dh)]), dim: dh, weight: doubles(norm.0), bias: doubles(norm.1),
                                           eps: 1e-6)
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
        #expect(doubles(try v.tensor.slice(axis: 2, v.column..<(v.column + width))) == vRef)
        #expect(q.shape == [b, t, width] && k.shape == [b, t, width])
        #expect(throws: TensorError.self) {
            try CogVideoXKernels.splitQKV(p, heads: heads, leadingRows: l, normQ: nq, normK: nk, eps: 1e-6,
                                          rope: (uniform([t, dh], seed: 1), uniform([t, dh], seed: 2)))
        }
    }
}

/// Seeded test data, uniform in [-1, 1].
private func uniform(_ shape: [Int], seed: UInt64) -> Tensor {
    var g = SeededGenerator(seed: seed)
    return try! Tensor.randomUniform(shape: shape, using: &g)
}

/// Asserts `‖a − ref‖∞ / ‖ref‖∞ ≤ tol`: the largest error relative to the largest reference magnitude.
private func expectClose(_ a: Tensor, _ ref: [Double], tol: Double, sourceLocation: SourceLocation = #_sourceLocation) {
    #expect(a.count == ref.count, sourceLocation: sourceLocation)
    let error = zip(a.scalars, ref).map { abs(Double($0) - $1) }.max() ?? 0
    let relative = error / max(ref.map(abs).max() ?? 0, 1e-30)
    #expect(relative <= tol, "max relative error \(relative) > \(tol)", sourceLocation: sourceLocation)
}
