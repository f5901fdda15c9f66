import Foundation
import Testing
@testable import Tensors

@Suite struct ActivationTests {
    let x: Tensor = {
        // Dense sweep over [-12, 12] plus special points, 1001 values (not a multiple of 16).
        var v = (0..<997).map { Float(-12 + 24 * Double($0) / 996) }
        v += [0, -0, 1e-4, -1e-4]
        return try! Tensor(shape: [v.count], scalars: v)
    }()

    @Test func expIsAccurate() {
        let xs = (0..<2000).map { Float(-87 + 175 * Double($0) / 1999) }
        let t = try! Tensor(shape: [xs.count], scalars: xs)
        let y = t.mapVector(VectorMath.exp).scalars
        for (a, r) in zip(y, xs) {
            let ref = Foundation.exp(Double(r))
            #expect(abs(Double(a) - ref) <= 4e-7 * ref, "exp(\(r)) = \(a), want \(ref)")
        }
        let special = try! Tensor(shape: [3], scalars: [-.infinity, .infinity, -200]).mapVector(VectorMath.exp).scalars
        #expect(special[0] == 0 && special[1] == .infinity && special[2] == 0)
    }

    @Test func geluExactAndTanh() {
        let xs = d(x)
        // Exact GELU uses an erf approximation with max abs error ~1.2e-7; outputs up to 12 → rel 1e-6.
        expectClose(gelu(x, approximation: .none), xs.map { 0.5 * $0 * (1 + Foundation.erf($0 / 2.0.squareRoot())) }, tol: 1e-6)
        expectClose(gelu(x, approximation: .tanh),
                    xs.map { 0.5 * $0 * (1 + Foundation.tanh(0.7978845608028654 * ($0 + 0.044715 * $0 * $0 * $0))) }, tol: 1e-6)
    }

    @Test func siluAndTanh() {
        let xs = d(x)
        expectClose(silu(x), xs.map { $0 / (1 + Foundation.exp(-$0)) }, tol: 1e-6)
        let th = Tensors.tanh(x)
        for (a, r) in zip(th.scalars, xs) {
            let ref = Foundation.tanh(r)
            #expect(abs(Double(a) - ref) <= 2e-7 + 1e-6 * abs(ref))
        }
    }

    /// GEGLU (exact and tanh) and SwiGLU against Double closed forms, with halves narrower than a vector
    /// (5) and with vector bodies plus a tail (37: two 16-wide bodies and 5 on AVX-512, four 8-wide and 5
    /// on AVX2). Tolerance 1e-6 absolute on values of order 1 (float32 rounding of exp/erf/tanh).
    @Test(arguments: [5, 37])
    func gatedVariants(half: Int) throws {
        let rows = 3, width = 2 * half
        let g = rand([rows, width], seed: 21)
        let s = d(g)
        var refGe = [Double](), refGeTanh = [Double](), refSw = [Double]()
        for r in 0..<rows { for j in 0..<half {
            let v = s[r * width + j], gate = s[r * width + half + j]
            refGe.append(v * 0.5 * gate * (1 + Foundation.erf(gate / 2.0.squareRoot())))
            refGeTanh.append(v * 0.5 * gate * (1 + Foundation.tanh((2 / Double.pi).squareRoot() * (gate + 0.044715 * gate * gate * gate))))
            refSw.append(v * gate / (1 + Foundation.exp(-gate)))
        } }
        expectClose(try geglu(g), refGe, tol: 1e-6)
        expectClose(try geglu(g, approximation: .tanh), refGeTanh, tol: 1e-6)
        expectClose(try swiglu(g), refSw, tol: 1e-6)
        #expect(throws: TensorError.self) { try geglu(rand([2, 3], seed: 1)) }
    }
}
