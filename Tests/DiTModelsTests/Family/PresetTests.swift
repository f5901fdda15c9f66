import Testing
import TeaCache
@testable import DiTModels
import TestSupport

/// Every reference preset (``DiTFamilies/presets``: the registered families' and the unported models')
/// against teacache-spec.md §1.3's test-vector table (numpy values printed to 6 significant digits:
/// rounding is at most 5e-6 relative, so 1e-5 covers the printing while any wrong coefficient digit that
/// matters at these x shows up).
@Suite struct PresetTests {
    static let xs = [0.0, 0.01, 0.05, 0.1, 0.2]
    /// Each preset's row of the table, by preset name. Rows shared by several presets (FLUX = TangoFlux,
    /// Lumina-Next = Lumina2 v1, CogVideoX-5b = 5b-I2V = ConsisID, Cosmos T2V = I2V) are repeated for each.
    /// Open-Sora and Open-Sora-Plan have rows but no preset.
    static let vectors: [String: [Double]] = [
        "flux": [0.264231, 0.231335, 0.180503, 0.206847, 0.261995],
        "tangoflux": [0.264231, 0.231335, 0.180503, 0.206847, 0.261995],
        "hunyuan_video": [0.0961238, 0.0709899, 0.0620384, 0.129196, 0.133731],
        "mochi": [0.00305292, 0.0219784, 0.0514246, 0.096517, -1.07614],
        "ltx_video": [0.00969274, 0.0178363, 0.0536331, 0.101415, 0.192641],
        "lumina_next": [0.863773, 0.654011, 0.163188, 0.0899374, 0.428361],
        "lumina2_v1": [0.863773, 0.654011, 0.163188, 0.0899374, 0.428361],
        "lumina2_v2": [-1.40891, -0.136968, 5.4875, 13.468, 31.0915],
        "cogvideox_2b": [-0.00361568, 0.013394, 0.0724493, 0.135282, 0.265051],
        "cogvideox_5b": [-0.0523162, 0.0147884, 0.106125, 0.0905064, 0.450956],
        "cogvideox_5b_i2v": [-0.0523162, 0.0147884, 0.106125, 0.0905064, 0.450956],
        "consisid": [-0.0523162, 0.0147884, 0.106125, 0.0905064, 0.450956],
        "cogvideox1.5_5b": [0.035856, 0.0314559, 0.0671607, 0.175465, 0.390609],
        "cogvideox1.5_5b_i2v": [0.0371213, 0.0365882, 0.0753229, 0.177697, 0.391684],
        "cosmos_t2v": [0.141776, 0.162747, 0.241763, 0.307714, 0.346292],
        "cosmos_i2v": [0.141776, 0.162747, 0.241763, 0.307714, 0.346292],
        "hidream_i1": [0.108054, 0.194593, 0.359096, -2.42254, -52.1497],
        "hidream_i1_dev": [0.939429, 0.917876, 0.841186, 0.764917, 0.666864],  // numpy, ComfyUI-TeaCache coefficients
        "hidream_i1_fast": [0.999276, 0.968945, 0.862033, 0.757877, 0.630542],  // numpy, ComfyUI-TeaCache coefficients
        "wan2.1_t2v_1.3b": [0.137888, 0.0737482, 0.0773813, 0.249923, -0.122561],
        "wan2.1_t2v_14b": [-13.0225, -10.6355, -4.09181, -0.635951, 0.125989],
        "wan2.1_i2v_480p": [-0.201973, -0.148272, -0.013561, 0.0536269, 0.178729],
        "wan2.1_i2v_720p": [-0.234127, -0.186793, -0.0279799, 0.122998, 0.335161],
        "wan2.1_t2v_1.3b_ret": [-0.0499876, 0.042881, 0.141898, 0.0489188, -28.096],
        "wan2.1_t2v_14b_ret": [-0.315584, 0.0522715, 0.218949, -2.27316, -187.661],
        "wan2.1_i2v_480p_ret": [0.132518, 0.104063, 0.13956, 3.09446, 181.588],
        "wan2.1_i2v_720p_ret": [-0.0417769, 0.0893477, 0.174313, 0.835551, 18.4077],
        // EasyAnimate (not in the spec's table): numpy's poly1d of the coefficients, printed the same way.
        "easyanimate_v5.1_12b": [0.0136149, 0.0204245, 0.0470291, 0.0818563, 0.169763],
        "easyanimate_v5.1_7b": [0.0237476, 0.0273663, 0.0474791, 0.0834961, 0.180938],
        "easyanimate_v5_7b": [-0.170664, -0.0789703, 0.0516489, 0.0682914, -0.0266416],
        "latte": [0.111001, 0.0782208, 0.130274, 0.568675, 1.03943],
    ]

    /// The built-in families' presets and the unported models' (families registered by other tests are
    /// left out).
    static var presets: [TeaCachePreset] { DiTFamilies.builtIn.flatMap { $0.presets } + TeaCachePreset.unportedModels }

    @Test func everyPresetMatchesTheSpecTestVectors() throws {
        let presets = Self.presets
        #expect(Set(presets.map(\.name)) == Set(Self.vectors.keys), "every preset needs its row, every row its preset")
        for preset in presets {
            let expected = try #require(Self.vectors[preset.name], "\(preset.name) has no spec test vectors")
            let p = try RescalingPolynomial(coefficients: preset.coefficients)
            for (x, want) in zip(Self.xs, expected) {
                #expect(relativelyClose(p(x), want, 1e-5), "\(preset.name) P(\(x)) = \(p(x)), spec \(want)")
            }
        }
    }

    @Test func everyPresetIsValidAndNamedOnce() throws {
        let presets = Self.presets
        for preset in presets { try preset.validate() }
        #expect(Set(presets.map(\.name)).count == presets.count)
        #expect(DiTFamilies.preset(named: "flux")?.defaultThreshold == 0.6)
        #expect(TeaCachePreset.flux.speedups.map(\.speedup) == [1.5, 1.8, 2.0, 2.25])
        #expect(TeaCachePreset.wan21T2V1_3BRet.schedule == TeaCacheSchedule(retainFirstSteps: 5, forceLastStep: false))
        for family in DiTFamilies.builtIn {
            #expect(!family.presets.isEmpty, "\(family.name) has no preset")
            #expect(family.presets.contains(family.defaultPreset), "\(family.name): the default preset is not listed")
        }
    }
}
