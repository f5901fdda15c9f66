import Testing
@testable import Tensors

@Suite struct LinearFewRowsTests {
    /// Against a naive Double product, for 1…3 rows, with and without bias, widths that split into
    /// several 64-row panels (1100 × 500 is large enough to be split over the workers), one that does not,
    /// and a row count beyond the limit (the sgemm path).
    @Test(arguments: [(1, 600, 130), (2, 1100, 500), (3, 40, 7), (fewRowsLimit + 1, 70, 33)])
    func matchesNaive(_ shape: (rows: Int, out: Int, inF: Int)) throws {
        let x = rand([shape.rows, shape.inF], seed: 1), w = rand([shape.out, shape.inF], seed: 2), b = rand([shape.out], seed: 3)
        let xd = d(x), wd = d(w), bd = d(b)
        for bias in [true, false] {
            var ref = [Double]()
            for r in 0..<shape.rows {
                for o in 0..<shape.out {
                    var s = bias ? bd[o] : 0
                    for i in 0..<shape.inF { s += xd[r * shape.inF + i] * wd[o * shape.inF + i] }
                    ref.append(s)
                }
            }
            let y = try linearFewRows(x, weight: w, bias: bias ? b : nil)
            #expect(y.shape == [shape.rows, shape.out])
            // Dot products of ≤ 500 terms of O(1) values: float32 error ~√K·u relative to the largest value.
            expectClose(y, ref, tol: 2e-5)
        }
    }

    /// Leading axes are kept (`[B, 1, in]` → `[B, 1, out]`) and shapes are checked.
    @Test func shapesAndErrors() throws {
        let x = rand([2, 1, 5], seed: 4), w = rand([9, 5], seed: 5)
        #expect(try linearFewRows(x, weight: w).shape == [2, 1, 9])
        expectClose(try linearFewRows(x, weight: w), d(try linear(x, weight: w)), tol: 1e-6)
        #expect(throws: TensorError.self) { try linearFewRows(x, weight: rand([9, 4], seed: 6)) }
        #expect(throws: TensorError.self) { try linearFewRows(x, weight: w, bias: rand([8], seed: 7)) }
    }
}
