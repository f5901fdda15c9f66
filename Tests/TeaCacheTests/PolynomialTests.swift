import Testing
@testable import TeaCache

/// The rescaling polynomial's evaluation and validation (every reference preset against the spec's
/// test vectors: DiTModelsTests' `PresetTests`).
@Suite struct PolynomialTests {
    @Test func hornerMatchesExplicitPowers() throws {
        let p = try RescalingPolynomial(coefficients: [2, -3, 0.5, 7, -1])
        let x = 0.37
        let explicit = 2 * x * x * x * x - 3 * x * x * x + 0.5 * x * x + 7 * x - 1
        #expect(abs(p(x) - explicit) <= 1e-12)
    }

    @Test func invalidCoefficientsAreRejected() {
        #expect(throws: CacheError.self) { try RescalingPolynomial(coefficients: [1, 2, 3]) }
        #expect(throws: CacheError.self) { try RescalingPolynomial(coefficients: [1, 2, .nan, 4, 5]) }
        #expect(throws: CacheError.self) { try RescalingPolynomial(coefficients: [1, 2, .infinity, 4, 5]) }
    }
}
