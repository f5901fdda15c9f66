import Foundation
import Testing
import Tensors
@testable import DiTModels
import TestSupport

/// Helpers of the Lumina test suites.
enum LuminaTestSupport {
    /// Each `(label, value, fixture tensor name)` has the fixture tensor's shape and is within relative
    /// L2 1e-4 of it (FORMAT.md §7).
    static func expectMatches(_ results: [(String, Tensor, String)], _ fixture: [String: Tensor], _ context: String) throws {
        for (label, value, key) in results {
            let ref = try #require(fixture[key], "\(context): \(key)")
            #expect(value.shape == ref.shape, "\(context) \(label) shape \(value.shape) vs \(ref.shape)")
            #expect(relL2(value, ref) <= 1e-4, "\(context) \(label) rel L2 \(relL2(value, ref))")
        }
    }

    /// Every edited copy of `good` makes `run` throw a ``TensorError``.
    static func expectEveryCaseThrows<X>(_ good: X, _ cases: [(String, (inout X) throws -> Void)],
                                        _ run: (X) throws -> Void) throws {
        for (label, edit) in cases {
            var x = good
            try edit(&x)
            #expect("\(label)", performing: { try run(x) }, throws: { $0 is TensorError })
        }
    }

    /// `2·rows·out·in` for every 2-D weight a random model was built with, `rows(name)` being how many
    /// rows the weight is applied to.
    static func weightFLOPs(_ loader: WeightLoader, rows: (String) -> Int) -> Double {
        loader.supplied.filter { $0.key.hasSuffix(".weight") && $0.value.rank == 2 }
            .map { 2 * Double(rows($0.key)) * Double($0.value.count) }.reduce(0, +)
    }
}
