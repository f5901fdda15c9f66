import Foundation
import Testing
import Tensors
@testable import DiTModels
import TestSupport

/// `PixArtAlphaTextProjection` against a naive Double composition `linear_2(act(linear_1(x)))`.
@Suite("PixArtAlphaTextProjection")
struct PixArtAlphaTextProjectionTests {
    static func naiveGELUTanh(_ x: Double) -> Double {
        0.5 * x * (1 + Foundation.tanh((2 / Double.pi).squareRoot() * (x + 0.044715 * x * x * x)))
    }

    @Test(arguments: ["gelu_tanh", "silu", "silu_fp32"])
    func matchesTheNaiveComposition(actFn: String) throws {
        let activation = try #require(PixArtAlphaTextProjection.activation(diffusersName: actFn))
        let loader = WeightLoader(randomSeed: 11)
        let p = PixArtAlphaTextProjection(loader.root["caption_projection"], in: 7, hidden: 12, out: 5, activation: activation)
        try loader.finish()
        #expect(Set(loader.supplied.keys) == ["caption_projection.linear_1.weight", "caption_projection.linear_1.bias",
                                              "caption_projection.linear_2.weight", "caption_projection.linear_2.bias"])
        let x = randomTensor([2, 3, 7], seed: 4)
        let y = try p(x)
        #expect(y.shape == [2, 3, 5])
        let s = loader.supplied
        var h = naiveLinear(doubles(x), inFeatures: 7, weight: doubles(s["caption_projection.linear_1.weight"]!),
                            bias: doubles(s["caption_projection.linear_1.bias"]!))
        h = h.map { actFn == "gelu_tanh" ? Self.naiveGELUTanh($0) : $0 / (1 + Foundation.exp(-$0)) }
        let ref = naiveLinear(h, inFeatures: 12, weight: doubles(s["caption_projection.linear_2.weight"]!),
                              bias: doubles(s["caption_projection.linear_2.bias"]!))
        // Two float32 products of ≤ 12 terms and a vectorised activation: ~1e-7 relative.
        #expect(relL2(y, try Tensor(shape: y.shape, scalars: ref.map(Float.init))) < 1e-5)
    }

    @Test func unknownActivationIsRejected() {
        #expect(PixArtAlphaTextProjection.activation(diffusersName: "gelu") == nil)
    }
}
