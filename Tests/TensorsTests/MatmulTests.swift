import Testing
@testable import Tensors

@Suite struct MatmulTests {
    func naive(_ a: [Double], _ b: [Double], m: Int, n: Int, k: Int, ta: Bool, tb: Bool) -> [Double] {
        var c = [Double](repeating: 0, count: m * n)
        for i in 0..<m { for j in 0..<n {
            var s = 0.0
            for p in 0..<k {
                let av = ta ? a[p * m + i] : a[i * k + p]
                let bv = tb ? b[j * k + p] : b[p * n + j]
                s += av * bv
            }
            c[i * n + j] = s
        } }
        return c
    }

    @Test(arguments: [(1, 1, 1), (7, 13, 5), (33, 17, 65), (64, 3, 129)])
    func matmulAllTransposes(_ dims: (Int, Int, Int)) throws {
        let (m, n, k) = dims
        for ta in [false, true] { for tb in [false, true] {
            let a = rand(ta ? [k, m] : [m, k], seed: 1)
            let b = rand(tb ? [n, k] : [k, n], seed: 2)
            let c = try matmul(a, b, transposeA: ta, transposeB: tb)
            #expect(c.shape == [m, n])
            expectClose(c, naive(d(a), d(b), m: m, n: n, k: k, ta: ta, tb: tb))
        } }
    }

    @Test func batchedMatmulWithSharedAndPerBatchB() throws {
        let a = rand([2, 3, 5, 7], seed: 3)
        let b = rand([2, 3, 7, 4], seed: 4)
        let c = try matmul(a, b)
        #expect(c.shape == [2, 3, 5, 4])
        var ref: [Double] = []
        let ad = d(a), bd = d(b)
        for i in 0..<6 {
            ref += naive(Array(ad[(i * 35)..<((i + 1) * 35)]), Array(bd[(i * 28)..<((i + 1) * 28)]),
                         m: 5, n: 4, k: 7, ta: false, tb: false)
        }
        expectClose(c, ref)
        let shared = rand([7, 4], seed: 5)
        let c2 = try matmul(a, shared)
        var ref2: [Double] = []
        for i in 0..<6 {
            ref2 += naive(Array(ad[(i * 35)..<((i + 1) * 35)]), d(shared), m: 5, n: 4, k: 7, ta: false, tb: false)
        }
        expectClose(c2, ref2)
    }

    @Test func linearMatchesNaiveWithAndWithoutBias() throws {
        let x = rand([2, 5, 19], seed: 6)
        let w = rand([11, 19], seed: 7)
        let b = rand([11], seed: 8)
        let y = try linear(x, weight: w, bias: b)
        #expect(y.shape == [2, 5, 11])
        var ref = naive(d(x), d(w), m: 10, n: 11, k: 19, ta: false, tb: true)
        expectClose(try linear(x, weight: w), ref)
        for r in 0..<10 { for j in 0..<11 { ref[r * 11 + j] += Double(b.scalars[j]) } }
        expectClose(y, ref)
    }

    /// An empty inner dimension is a sum over nothing: zeros, plus the bias when given.
    @Test func linearWithNoInputFeaturesIsTheBias() throws {
        let x = try Tensor(zeros: [3, 0]), w = try Tensor(zeros: [5, 0])
        let b = rand([5], seed: 9)
        #expect(try linear(x, weight: w).scalars == [Float](repeating: 0, count: 15))
        #expect(try linear(x, weight: w, bias: b).scalars == Array((0..<3).map { _ in b.scalars }.joined()))
        #expect(try matmul(try Tensor(zeros: [2, 0]), try Tensor(zeros: [0, 4])).scalars == [Float](repeating: 0, count: 8))
    }

    @Test func shapeErrorsAreTyped() throws {
        #expect(throws: TensorError.self) { try matmul(rand([2, 3], seed: 1), rand([4, 2], seed: 2)) }
        #expect(throws: TensorError.self) { try linear(rand([2, 3], seed: 1), weight: rand([4, 5], seed: 2)) }
        #expect(throws: TensorError.self) {
            try linear(rand([2, 3], seed: 1), weight: rand([4, 3], seed: 2), bias: rand([5], seed: 3))
        }
        #expect(throws: TensorError.self) { try matmul(rand([2, 2, 3], seed: 1), rand([3, 3, 2], seed: 2)) }
    }
}

@Suite struct BlasThreadSettingsTests {
    /// Out-of-range thread counts are clamped (checked on the pure function: the setting itself is
    /// process-wide and other tests run meanwhile).
    @Test func threadCountIsClamped() {
        #expect(Parallelism.clampedThreadCount(Int.max) == Parallelism.maximumThreadCount)
        #expect(Parallelism.clampedThreadCount(-5) == 1)
        #expect(Parallelism.clampedThreadCount(3) == 3)
    }
}

import Foundation

@Suite struct ParallelGEMMTests {
    /// Large products are split over workers in whole 64-wide panels of C. The split product matches a
    /// single serial call to float rounding (OpenBLAS may pick other micro-kernels for the smaller blocks,
    /// so bit equality is not promised; 1e-5 of the largest magnitude is far below any indexing error),
    /// and repeating it gives the same bits (the split depends only on the shape and thread count).
    @Test(arguments: [(300, 200, 150, false, false), (130, 500, 77, true, false), (257, 129, 100, false, true),
                      (96, 1000, 64, true, true)])
    func splitProductEqualsSerialProduct(_ c: (Int, Int, Int, Bool, Bool)) throws {
        let (m, n, k, ta, tb) = c
        #expect(2 * Double(m * n * k) >= parallelGEMMThreshold, "the case must be large enough to split")
        let a = rand(ta ? [k, m] : [m, k], seed: 41), b = rand(tb ? [n, k] : [k, n], seed: 42)
        var split = [Float](repeating: 0, count: m * n), again = split, serial = split
        a.withUnsafeBufferPointer { pa in b.withUnsafeBufferPointer { pb in
            sgemm(transposeA: ta, transposeB: tb, m: m, n: n, k: k, alpha: 1, a: pa.baseAddress!, lda: ta ? m : k,
                  b: pb.baseAddress!, ldb: tb ? k : n, beta: 0, c: &split, ldc: n)
            sgemm(transposeA: ta, transposeB: tb, m: m, n: n, k: k, alpha: 1, a: pa.baseAddress!, lda: ta ? m : k,
                  b: pb.baseAddress!, ldb: tb ? k : n, beta: 0, c: &again, ldc: n)
            sgemmSerial(transposeA: ta, transposeB: tb, m: m, n: n, k: k, alpha: 1, a: pa.baseAddress!, lda: ta ? m : k,
                        b: pb.baseAddress!, ldb: tb ? k : n, beta: 0, c: &serial, ldc: n)
        } }
        #expect(split == again)
        let scale = serial.map { abs($0) }.max() ?? 1
        let worst = zip(split, serial).map { abs($0 - $1) }.max() ?? 0
        #expect(worst <= 1e-5 * scale, "max difference \(worst) vs scale \(scale)")
    }
}
