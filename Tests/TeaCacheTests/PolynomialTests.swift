import Testing
@testable import TeaCache

/// The rescaling polynomial against teacache-spec.md §1.3's test-vector table (numpy values printed to 6
/// significant digits: rounding is at most 5e-6 relative, so 1e-5 covers the printing while any wrong
/// coefficient digit that matters at these x shows up).
@Suite struct PolynomialTests {
    static let xs = [0.0, 0.01, 0.05, 0.1, 0.2]
    /// Every built-in preset with its row of the table. Rows shared by several presets (FLUX = TangoFlux,
    /// Lumina-Next = Lumina2 v1, CogVideoX-5b = 5b-I2V = ConsisID) are repeated for each. Cosmos,
    /// Open-Sora, Latte and Open-Sora-Plan have rows but no built-in preset.
    static let vectors: [(TeaCachePreset, [Double])] = [
        (.flux, [0.264231, 0.231335, 0.180503, 0.206847, 0.261995]),
        (.tangoFlux, [0.264231, 0.231335, 0.180503, 0.206847, 0.261995]),
        (.hunyuanVideo, [0.0961238, 0.0709899, 0.0620384, 0.129196, 0.133731]),
        (.mochi, [0.00305292, 0.0219784, 0.0514246, 0.096517, -1.07614]),
        (.ltxVideo, [0.00969274, 0.0178363, 0.0536331, 0.101415, 0.192641]),
        (.luminaNext, [0.863773, 0.654011, 0.163188, 0.0899374, 0.428361]),
        (.lumina2V1, [0.863773, 0.654011, 0.163188, 0.0899374, 0.428361]),
        (.lumina2V2, [-1.40891, -0.136968, 5.4875, 13.468, 31.0915]),
        (.cogVideoX2B, [-0.00361568, 0.013394, 0.0724493, 0.135282, 0.265051]),
        (.cogVideoX5B, [-0.0523162, 0.0147884, 0.106125, 0.0905064, 0.450956]),
        (.cogVideoX5BI2V, [-0.0523162, 0.0147884, 0.106125, 0.0905064, 0.450956]),
        (.consisID, [-0.0523162, 0.0147884, 0.106125, 0.0905064, 0.450956]),
        (.cogVideoX15_5B, [0.035856, 0.0314559, 0.0671607, 0.175465, 0.390609]),
        (.cogVideoX15_5BI2V, [0.0371213, 0.0365882, 0.0753229, 0.177697, 0.391684]),
        (.hiDream, [0.108054, 0.194593, 0.359096, -2.42254, -52.1497]),
        (.wan21T2V1_3B, [0.137888, 0.0737482, 0.0773813, 0.249923, -0.122561]),
        (.wan21T2V14B, [-13.0225, -10.6355, -4.09181, -0.635951, 0.125989]),
        (.wan21I2V480P, [-0.201973, -0.148272, -0.013561, 0.0536269, 0.178729]),
        (.wan21I2V720P, [-0.234127, -0.186793, -0.0279799, 0.122998, 0.335161]),
        (.wan21T2V1_3BRet, [-0.0499876, 0.042881, 0.141898, 0.0489188, -28.096]),
        (.wan21T2V14BRet, [-0.315584, 0.0522715, 0.218949, -2.27316, -187.661]),
        (.wan21I2V480PRet, [0.132518, 0.104063, 0.13956, 3.09446, 181.588]),
        (.wan21I2V720PRet, [-0.0417769, 0.0893477, 0.174313, 0.835551, 18.4077]),
    ]

    @Test func specTestVectors() throws {
        for (preset, expected) in Self.vectors {
            #expect(expected.count == Self.xs.count, "\(preset.name): need all five test vectors")
            let p = try RescalingPolynomial(coefficients: preset.coefficients)
            for (x, want) in zip(Self.xs, expected) {
                #expect(relativelyClose(p(x), want, 1e-5), "\(preset.name) P(\(x)) = \(p(x)), spec \(want)")
            }
        }
    }

    /// A new built-in preset must get its row of test vectors above.
    @Test func everyBuiltInPresetHasTestVectors() {
        let pinned = Set(Self.vectors.map(\.0.name))
        #expect(pinned.count == Self.vectors.count, "a preset is listed twice")
        for preset in TeaCachePreset.builtIn {
            #expect(pinned.contains(preset.name), "\(preset.name) has no spec test vectors")
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
