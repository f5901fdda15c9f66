import Foundation
import Testing
@testable import Tensors

@Suite struct FusedKernelTests {
    @Test func linearWithActivationEqualsSeparatePasses() throws {
        let x = rand([2, 7, 19], seed: 31), w = rand([37, 19], seed: 32), b = rand([37], seed: 33)
        let plain = try linear(x, weight: w, bias: b)
        // The fused pass applies the very same vector functions, so results are bit-identical.
        #expect(try linear(x, weight: w, bias: b, activation: .gelu(.tanh)) == gelu(plain, approximation: .tanh))
        #expect(try linear(x, weight: w, bias: b, activation: .silu) == silu(plain))
        #expect(try linear(x, weight: w, bias: b, activation: .tanh) == Tensors.tanh(plain))
    }

    @Test func normModulatedMatchesNaive() throws {
        let (bs, s, dm) = (2, 5, 37)
        let x = rand([bs, s, dm], seed: 34), sc = rand([bs, dm], seed: 35), sh = rand([bs, 1, dm], seed: 36)
        let xs = d(x), scs = d(sc), shs = d(sh)
        var refLN = [Double](), refRMS = [Double]()
        for i in 0..<bs { for t in 0..<s {
            let row = Array(xs[((i * s + t) * dm)..<((i * s + t + 1) * dm)])
            let mean = row.reduce(0, +) / Double(dm)
            let v = row.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(dm)
            let ms = row.map { $0 * $0 }.reduce(0, +) / Double(dm)
            for j in 0..<dm {
                refLN.append((row[j] - mean) / (v + 1e-6).squareRoot() * (1 + scs[i * dm + j]) + shs[i * dm + j])
                refRMS.append(row[j] / (ms + 1e-6).squareRoot() * (1 + scs[i * dm + j]))
            }
        } }
        // Normalised values are O(1); float32 statistics give ~1e-6 relative error.
        expectClose(try layerNormModulated(x, eps: 1e-6, scale: sc, shift: sh), refLN, tol: 1e-5)
        expectClose(try rmsNormModulated(x, eps: 1e-6, scale: sc, shift: nil), refRMS, tol: 1e-5)
        #expect(throws: TensorError.self) { try layerNormModulated(x, eps: 1e-6, scale: rand([3, dm], seed: 1), shift: nil) }
    }
}
