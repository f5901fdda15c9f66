import CKernels
import Foundation
import Testing
@testable import Tensors

/// Both the run-time selected (AVX2+FMA where available) and the portable C kernels, against Double.
@Suite struct CKernelsTests {
    // 1003 values over [-12, 12]: not a multiple of 8, so the vector tails run too.
    let xs: [Float] = (0..<1003).map { Float(-12 + 24 * Double($0) / 1002) }

    typealias Unary = (UnsafePointer<Float>, UnsafeMutablePointer<Float>, Int) -> Void

    func run(_ f: Unary) -> [Double] {
        var y = [Float](repeating: 0, count: xs.count)
        xs.withUnsafeBufferPointer { x in y.withUnsafeMutableBufferPointer { f(x.baseAddress!, $0.baseAddress!, xs.count) } }
        return y.map(Double.init)
    }

    /// Max abs error relative to max(|ref|, 1): the kernels are ~1 ulp in exp plus a few roundings.
    func check(_ got: [Double], _ ref: (Double) -> Double, tol: Double = 2e-6) {
        for (g, x) in zip(got, xs) {
            let r = ref(Double(x))
            #expect(abs(g - r) <= tol * max(abs(r), 1), "x=\(x): \(g) vs \(r)")
        }
    }

    @Test func geluTanhBothPaths() {
        let ref = { (x: Double) in 0.5 * x * (1 + Foundation.tanh(0.7978845608028654 * (x + 0.044715 * x * x * x))) }
        check(run { ck_gelu_tanh($0, $1, $2) }, ref)
        check(run { ck_gelu_tanh_portable($0, $1, $2) }, ref)
    }

    @Test func siluBothPaths() {
        let ref = { (x: Double) in x / (1 + Foundation.exp(-x)) }
        check(run { ck_silu($0, $1, $2) }, ref)
        check(run { ck_silu_portable($0, $1, $2) }, ref)
    }

    @Test func softmaxBothPathsAndMaskedRows() {
        for f in [{ (p: UnsafeMutablePointer<Float>, n: Int) in ck_softmax_row(p, n) },
                  { (p: UnsafeMutablePointer<Float>, n: Int) in ck_softmax_row_portable(p, n) }] {
            var row = xs
            row.withUnsafeMutableBufferPointer { f($0.baseAddress!, $0.count) }
            let m = xs.map(Double.init).max()!
            let e = xs.map { Foundation.exp(Double($0) - m) }
            let s = e.reduce(0, +)
            for (g, r) in zip(row, e.map { $0 / s }) { #expect(abs(Double(g) - r) <= 2e-6 * max(r, 1e-3)) }
            var masked = [Float](repeating: -.infinity, count: 13)
            masked.withUnsafeMutableBufferPointer { f($0.baseAddress!, $0.count) }
            #expect(masked.allSatisfy { $0 == 0 })
            var special: [Float] = [0, -.infinity, 0, -.infinity]
            special.withUnsafeMutableBufferPointer { f($0.baseAddress!, $0.count) }
            #expect(special == [0.5, 0, 0.5, 0])
        }
    }
}
