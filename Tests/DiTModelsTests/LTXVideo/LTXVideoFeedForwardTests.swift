import Foundation
import Testing
import Tensors
@testable import DiTModels
import TestSupport

/// `activation_fn = "geglu-approximate"` (diffusers' `ApproximateGELU`) against a naive Double
/// composition `net.2(x·σ(1.702·x))` of `x = net.0.proj(h)`.
@Suite("LTX-Video feed-forward")
struct LTXVideoFeedForwardTests {
    @Test func approximateGELUMatchesTheNaiveComposition() throws {
        var c = tinyLTXConfiguration(layers: 1)
        c.activationFn = "geglu-approximate"
        try c.validate()
        let loader = WeightLoader(randomSeed: 9)
        let ff = FeedForward(loader.root["ff"], dim: c.innerDim, inner: c.ffnDim, activation: try #require(c.feedForwardActivation))
        try loader.finish()
        let s = loader.supplied
        #expect(s["ff.net.0.proj.weight"]?.shape == [4 * 28, 28], "not gated: inner × dim")
        let x = randomTensor([2, 3, 28], seed: 5)
        let y = try ff(x)
        var h = naiveLinear(doubles(x), inFeatures: 28, weight: doubles(s["ff.net.0.proj.weight"]!),
                            bias: doubles(s["ff.net.0.proj.bias"]!))
        h = h.map { $0 / (1 + Foundation.exp(-1.702 * $0)) }
        let ref = naiveLinear(h, inFeatures: 112, weight: doubles(s["ff.net.2.weight"]!), bias: doubles(s["ff.net.2.bias"]!))
        // Sums of ≤ 112 float32 products and a vectorised sigmoid: ~1e-7 relative.
        #expect(relL2(y, try Tensor(shape: y.shape, scalars: ref.map(Float.init))) < 1e-5)
        // The whole model builds and runs with it.
        let model = try LTXVideoFamily.random(c, seed: 1, steps: 50)
        #expect(try model(tinyLTXInput()).shape == [2, 12, 5])
    }
}
