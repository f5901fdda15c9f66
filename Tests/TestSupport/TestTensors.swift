import Foundation
import Tensors

/// Seeded standard-normal test data of `shape` (the project's `SeededGenerator`, so every run draws the
/// same values).
public func randomTensor(_ shape: [Int], seed: UInt64) -> Tensor {
    var g = SeededGenerator(seed: seed)
    do {
        return try Tensor.randomNormal(shape: shape, mean: 0, standardDeviation: 1, using: &g)
    } catch {
        fatalError("randomTensor(\(shape)): \(error)")   // a test's own shape is wrong: stop loudly
    }
}

/// Relative L2 distance `‖a − b‖ / ‖b‖` in Double; infinity when the shapes differ (so any tolerance
/// check fails).
public func relL2(_ a: Tensor, _ b: Tensor) -> Double {
    do { return try Tensor.relativeL2(a, b) } catch { return .infinity }
}

/// The scalars of `t` widened to Double (for naive references).
public func doubles(_ t: Tensor) -> [Double] { t.scalars.map(Double.init) }

/// |a − b| ≤ tol · max(|b|, 1e-300): a relative comparison that also handles exact zeros.
public func relativelyClose(_ a: Double, _ b: Double, _ tol: Double) -> Bool {
    abs(a - b) <= tol * max(abs(b), 1e-300)
}
