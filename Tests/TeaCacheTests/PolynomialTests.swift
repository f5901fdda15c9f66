import Testing
@testable import TeaCache

/// The rescaling polynomial against teacache-spec.md §1.3 (numpy values printed to 6 significant
/// digits, so a relative tolerance of 5e-6 covers the printing).
@Suite struct PolynomialTests {
    static let xs = [0.0, 0.01, 0.05, 0.1, 0.2]
    static let vectors: [(TeaCachePreset, [Double])] = [
        (.flux, [0.264231, 0.231335, 0.180503, 0.206847, 0.261995]),
        (.hunyuanVideo, [0.0961238, 0.0709899, 0.0620384, 0.129196, 0.133731]),
        (.mochi, [0.00305292, 0.0219784, 0.0514246, 0.096517, -1.07614]),
        (.ltxVideo, [0.00969274, 0.0178363, 0.0536331, 0.101415, 0.192641]),
        (.lumina2V2, [-1.40891, -0.136968, 5.4875, 13.468, 31.0915]),
        (.cogVideoX2B, [-0.00361568, 0.013394, 0.0724493, 0.135282, 0.265051]),
        (.wan21T2V14B, [-13.0225, -10.6355, -4.09181, -0.635951, 0.125989]),
        (.wan21T2V1_3BRet, [-0.0499876, 0.042881, 0.141898, 0.0489188, -28.096]),
        (.wan21I2V480PRet, [0.132518, 0.104063, 0.13956, 3.09446, 181.588]),
    ]

    @Test func specTestVectors() throws {
        for (preset, expected) in Self.vectors {
            let p = try RescalingPolynomial(coefficients: preset.coefficients)
            for (x, want) in zip(Self.xs, expected) {
                #expect(relativelyClose(p(x), want, 5e-6), "\(preset.name) P(\(x)) = \(p(x)), spec \(want)")
            }
        }
    }

    @Test func hornerMatchesExplicitPowers() throws {
        let p = try RescalingPolynomial(coefficients: [2, -3, 0.5, 7, -1])
        let x = 0.37
        let explicit = 2 * x * x * x * x - 3 * x * x * x + 0.5 * x * x + 7 * x - 1
        #expect(abs(p(x) - explicit) <= 1e-12)
    }

    @Test func invalidCoefficientsAreRejected() {
        #expect(throws: TeaCacheError.self) { try RescalingPolynomial(coefficients: [1, 2, 3]) }
        #expect(throws: TeaCacheError.self) { try RescalingPolynomial(coefficients: [1, 2, .nan, 4, 5]) }
        #expect(throws: TeaCacheError.self) { try RescalingPolynomial(coefficients: [1, 2, .infinity, 4, 5]) }
    }

    @Test func everyBuiltInPresetIsValid() throws {
        for preset in TeaCachePreset.builtIn { try preset.validate() }
        #expect(Set(TeaCachePreset.builtIn.map(\.name)).count == TeaCachePreset.builtIn.count)
        #expect(TeaCachePreset.named("flux")?.defaultThreshold == 0.6)
        #expect(TeaCachePreset.flux.speedups.map(\.speedup) == [1.5, 1.8, 2.0, 2.25])
        #expect(TeaCachePreset.wan21T2V1_3BRet.schedule == TeaCacheSchedule(retainFirstSteps: 5, forceLastStep: false))
    }
}
