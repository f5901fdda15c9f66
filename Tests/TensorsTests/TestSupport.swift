import Foundation
import Testing
@testable import Tensors

/// Random tensor for tests (seeded, uniform in [-1, 1]).
func rand(_ shape: [Int], seed: UInt64) -> Tensor {
    var g = SeededGenerator(seed: seed)
    return try! Tensor.randomUniform(shape: shape, using: &g)
}

/// Maximum relative error ‖a−b‖∞ / max(‖b‖∞, tiny) between a Float tensor and a Double reference.
func maxRelError(_ a: Tensor, _ ref: [Double]) -> Double {
    let s = a.scalars
    precondition(s.count == ref.count, "count mismatch \(s.count) vs \(ref.count)")
    let scale = max(ref.map { abs($0) }.max() ?? 0, 1e-30)
    var m = 0.0
    for (x, r) in zip(s, ref) { m = max(m, abs(Double(x) - r)) }
    return m / scale
}

/// Asserts a Float32 kernel result matches a Double reference.
///
/// Tolerance: float32 has a unit roundoff of 6e-8; a dot product of length K accumulates at most
/// ~K·u relative error in the worst case and ~√K·u typically. For the sizes used here (K ≤ 300),
/// 2e-5 relative to the largest reference magnitude leaves a wide margin while still catching any
/// indexing or transposition mistake (those give O(1) errors).
func expectClose(_ a: Tensor, _ ref: [Double], tol: Double = 2e-5, sourceLocation: SourceLocation = #_sourceLocation) {
    let e = maxRelError(a, ref)
    #expect(e <= tol, "max relative error \(e) > \(tol)", sourceLocation: sourceLocation)
}

func d(_ t: Tensor) -> [Double] { t.scalars.map(Double.init) }
