import Testing
@testable import Tensors

/// ``JointSequence``'s fused gated residual against a naive Double composition.
@Suite struct JointSequenceTests {
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
}
