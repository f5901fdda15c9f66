import CKernels
import Foundation
import Testing
@testable import Tensors

/// Every C kernel version this CPU runs (portable, AVX2+FMA, AVX-512F) and the run-time choice,
/// against Double.
@Suite struct CKernelsTests {
    // 1003 values over [-12, 12]: not a multiple of 8 or 16, so the vector tails run too.
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

    /// The versions this CPU runs (levels above `ck_level()` would only repeat the widest one).
    static let levels = Array(0...Int(ck_level()))

    @Test func geluTanhEveryPath() {
        let ref = { (x: Double) in 0.5 * x * (1 + Foundation.tanh(0.7978845608028654 * (x + 0.044715 * x * x * x))) }
        check(run { ck_gelu_tanh($0, $1, $2) }, ref)
        check(run { ck_gelu_tanh_portable($0, $1, $2) }, ref)
        for level in Self.levels { check(run { ck_gelu_tanh_level(Int32(level), $0, $1, $2) }, ref) }
    }

    @Test func siluEveryPath() {
        let ref = { (x: Double) in x / (1 + Foundation.exp(-x)) }
        check(run { ck_silu($0, $1, $2) }, ref)
        check(run { ck_silu_portable($0, $1, $2) }, ref)
        for level in Self.levels { check(run { ck_silu_level(Int32(level), $0, $1, $2) }, ref) }
    }

    /// The exact GELU (erf polynomial ≈ 1.2e-7 absolute, scaled by |x|/2): every path within 2e-6 of
    /// max(|ref|, 1), NaN kept, and all paths within 1e-6 of each other.
    @Test func geluErfEveryPath() {
        let ref = { (x: Double) in 0.5 * x * (1 + Foundation.erf(x / 2.0.squareRoot())) }
        check(run { ck_gelu_erf($0, $1, $2) }, ref)
        check(run { ck_gelu_erf_portable($0, $1, $2) }, ref)
        for level in Self.levels { check(run { ck_gelu_erf_level(Int32(level), $0, $1, $2) }, ref) }
        let portable = run { ck_gelu_erf_portable($0, $1, $2) }
        for level in Self.levels {
            let got = run { ck_gelu_erf_level(Int32(level), $0, $1, $2) }
            for (g, p) in zip(got, portable) { #expect(abs(g - p) <= 1e-6 * max(abs(p), 1)) }
        }
        for level in Self.levels {
            let x: [Float] = [.nan, 1, -1, .nan, 0, 2, 3, -4, 5, .nan, 0.5, -0.5, 6, 7, 8, 9, .nan]  // 17: a tail too
            var y = [Float](repeating: 0, count: x.count)
            x.withUnsafeBufferPointer { px in y.withUnsafeMutableBufferPointer { ck_gelu_erf_level(Int32(level), px.baseAddress, $0.baseAddress, x.count) } }
            for (g, v) in zip(y, x) where v.isNaN { #expect(g.isNaN, "level \(level)") }
            #expect(y[4] == 0 && abs(Double(y[1]) - ref(1)) <= 2e-6)
        }
    }

    /// Lengths around the 8- and 16-lane boundaries (empty, shorter than a vector, exact multiples).
    @Test(arguments: [0, 1, 7, 8, 9, 15, 16, 17, 31, 33])
    func everyPathHandlesShortAndTailRows(n: Int) {
        let x = (0..<n).map { Float(-3 + 0.7 * Double($0)) }
        for level in Self.levels {
            var y = [Float](repeating: .nan, count: n)
            x.withUnsafeBufferPointer { px in y.withUnsafeMutableBufferPointer { ck_silu_level(Int32(level), px.baseAddress, $0.baseAddress, n) } }
            for (g, v) in zip(y, x) { #expect(abs(Double(g) - Double(v) / (1 + Foundation.exp(-Double(v)))) <= 2e-6 * max(abs(Double(v)), 1)) }
            var row = x
            row.withUnsafeMutableBufferPointer { ck_softmax_row_level(Int32(level), $0.baseAddress, n) }
            if n > 0 {
                let m = x.map(Double.init).max()!
                let e = x.map { Foundation.exp(Double($0) - m) }, s = e.reduce(0, +)
                for (g, r) in zip(row, e) { #expect(abs(Double(g) - r / s) <= 2e-6, "level \(level) n \(n)") }
            }
        }
    }

    /// The unnormalised softmax (what attention uses): exp(x − max) in place and the returned 1/Σ.
    @Test func unnormalisedSoftmaxEveryPath() {
        let m = xs.map(Double.init).max()!
        let e = xs.map { Foundation.exp(Double($0) - m) }
        let s = e.reduce(0, +)
        for level in Self.levels {
            var row = xs
            let inverse = row.withUnsafeMutableBufferPointer { ck_softmax_exp_row_level(Int32(level), $0.baseAddress, $0.count) }
            #expect(abs(Double(inverse) * s - 1) <= 1e-5, "level \(level)")
            for (g, r) in zip(row, e) { #expect(abs(Double(g) - r) <= 2e-6 * max(r, 1e-3), "level \(level)") }
            var masked = [Float](repeating: -.infinity, count: 21)
            let zero = masked.withUnsafeMutableBufferPointer { ck_softmax_exp_row_level(Int32(level), $0.baseAddress, $0.count) }
            #expect(zero == 0 && masked.allSatisfy { $0 == 0 })
        }
    }

    @Test func softmaxEveryPathAndMaskedRows() {
        var paths: [(UnsafeMutablePointer<Float>, Int) -> Void] = [
            { ck_softmax_row($0, $1) }, { ck_softmax_row_portable($0, $1) },
        ]
        for level in Self.levels { paths.append { ck_softmax_row_level(Int32(level), $0, $1) } }
        for f in paths {
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
