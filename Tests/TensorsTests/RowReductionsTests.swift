import Testing
@testable import Tensors

/// ``RowReductions`` against Double sums, at lengths below, at and across the 16-lane blocks.
@Suite struct RowReductionsTests {
    @Test(arguments: [0, 1, 7, 16, 33, 64])
    func reductionsMatchDoubleSums(_ n: Int) {
        var g = SeededGenerator(seed: UInt64(n) + 1)
        let x = (0..<n).map { _ in Float(g.nextNormal()) }
        let centre: Float = 0.25
        let sum = x.reduce(0.0) { $0 + Double($1) }
        let squares = x.reduce(0.0) { $0 + (Double($1) - Double(centre)) * (Double($1) - Double(centre)) }
        x.withUnsafeBufferPointer { p in
            let base = p.baseAddress ?? UnsafePointer(bitPattern: 16)!
            #expect(abs(Double(RowReductions.sum(base, n)) - sum) <= 1e-5 * max(1, abs(sum)))
            #expect(abs(Double(RowReductions.centeredSquares(base, n, centre: centre)) - squares) <= 1e-5 * max(1, squares))
        }
    }

    /// `sumOfSquares` and `inverseRMS` against Double (float32 accumulation in 16 lanes: 1e-5 relative).
    @Test(arguments: [1, 7, 16, 33, 64])
    func squaresAndInverseRMSMatchDouble(_ n: Int) {
        var g = SeededGenerator(seed: UInt64(n) + 101)
        let x = (0..<n).map { _ in Float(g.nextNormal()) }
        let eps = 1e-6
        let squares = x.reduce(0.0) { $0 + Double($1) * Double($1) }
        let inverse = 1 / (squares / Double(n) + eps).squareRoot()
        x.withUnsafeBufferPointer { p in
            #expect(abs(Double(RowReductions.sumOfSquares(p.baseAddress!, n)) - squares) <= 1e-5 * max(1, squares))
            #expect(abs(Double(RowReductions.inverseRMS(p.baseAddress!, n, eps: Float(eps))) - inverse) <= 1e-5 * inverse)
        }
    }
}
