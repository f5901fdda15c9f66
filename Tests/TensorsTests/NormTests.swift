import Testing
@testable import Tensors

@Suite struct NormTests {
    @Test(arguments: [1, 5, 16, 37, 200])
    func layerNormMatchesNaive(_ dim: Int) throws {
        let x = rand([3, 4, dim], seed: UInt64(dim))
        let w = rand([dim], seed: 9), b = rand([dim], seed: 10)
        let xs = d(x), ws = d(w), bs = d(b)
        var refPlain = [Double](), refAffine = [Double]()
        for r in 0..<12 {
            let row = Array(xs[(r * dim)..<((r + 1) * dim)])
            let mean = row.reduce(0, +) / Double(dim)
            let v = row.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(dim)
            let inv = 1 / (v + 1e-6).squareRoot()
            for j in 0..<dim {
                refPlain.append((row[j] - mean) * inv)
                refAffine.append((row[j] - mean) * inv * ws[j] + bs[j])
            }
        }
        // Normalised values are O(1); float32 rounding of mean/variance gives ~1e-6 relative.
        expectClose(try layerNorm(x, eps: 1e-6), refPlain, tol: 1e-5)
        expectClose(try layerNorm(x, weight: w, bias: b, eps: 1e-6), refAffine, tol: 1e-5)
    }

    @Test(arguments: [3, 16, 65])
    func rmsNormMatchesNaive(_ dim: Int) throws {
        let x = rand([2, 3, dim], seed: 11)
        let w = rand([dim], seed: 12)
        let xs = d(x), ws = d(w)
        var ref = [Double]()
        for r in 0..<6 {
            let row = Array(xs[(r * dim)..<((r + 1) * dim)])
            let inv = 1 / (row.map { $0 * $0 }.reduce(0, +) / Double(dim) + 1e-5).squareRoot()
            for j in 0..<dim { ref.append(row[j] * inv * ws[j]) }
        }
        expectClose(try rmsNorm(x, weight: w, eps: 1e-5), ref, tol: 1e-5)
    }

    @Test func modulatePerSampleAndPerToken() throws {
        let (b, s, dm) = (2, 3, 5)
        let x = rand([b, s, dm], seed: 13)
        let sc = rand([b, dm], seed: 14), sh = rand([b, dm], seed: 15)
        let xs = d(x), scs = d(sc), shs = d(sh)
        var ref = [Double]()
        for i in 0..<b { for t in 0..<s { for j in 0..<dm {
            ref.append(xs[(i * s + t) * dm + j] * (1 + scs[i * dm + j]) + shs[i * dm + j])
        } } }
        expectClose(try modulate(x, scale: sc, shift: sh), ref)
        expectClose(try modulate(x, scale: try sc.reshaped([b, 1, dm]), shift: try sh.reshaped([b, 1, dm])), ref)
        // Per token: scale/shift of shape [B, S, D].
        let st = rand([b, s, dm], seed: 16)
        let sts = d(st)
        var ref2 = [Double]()
        for i in 0..<(b * s * dm) { ref2.append(xs[i] * (1 + sts[i])) }
        expectClose(try modulate(x, scale: st, shift: nil), ref2)
        #expect(throws: TensorError.self) { try modulate(x, scale: rand([b, 2, dm], seed: 1), shift: nil) }
    }

    @Test func softmaxRowsSumToOneAndMatchNaive() throws {
        let x = rand([4, 33], seed: 17) * 10
        let xs = d(x)
        var ref = [Double]()
        for r in 0..<4 {
            let row = Array(xs[(r * 33)..<((r + 1) * 33)])
            let m = row.max()!
            let e = row.map { Foundation.exp($0 - m) }
            let s = e.reduce(0, +)
            ref += e.map { $0 / s }
        }
        expectClose(try softmax(x), ref, tol: 1e-5)
    }
}

import Foundation
