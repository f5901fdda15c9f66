import Foundation
import Testing
import Tensors
@testable import DiTModels
import TestSupport

/// diffusers' `FeedForward` activations against a naive Double composition.
@Suite struct FeedForwardTests {
    static func naiveSiLU(_ x: Double) -> Double { x / (1 + Foundation.exp(-x)) }

    @Test(arguments: ["gelu", "gelu-approximate", "geglu", "swiglu", "linear-silu", "geglu-approximate"])
    func activationMatchesNaive(_ name: String) throws {
        let activation = try #require(FeedForwardActivation(diffusersName: name))
        let (dim, inner, out) = (5, 3, 4)
        let loader = WeightLoader(randomSeed: 3)
        let ff = FeedForward(loader.root["ff"], dim: dim, inner: inner, out: out, activation: activation,
                             bias: name != "swiglu")
        try loader.finish()
        let w = loader.supplied.mapValues(doubles)
        #expect(w["ff.net.0.proj.bias"] == nil || name != "swiglu")
        let x = randomTensor([2, 3, dim], seed: 4)
        let h = naiveLinear(doubles(x), inFeatures: dim, weight: w["ff.net.0.proj.weight"]!, bias: w["ff.net.0.proj.bias"])
        let width = activation.isGated ? 2 * inner : inner
        var a = [Double]()
        for r in 0..<(h.count / width) {
            let row = Array(h[(r * width)..<((r + 1) * width)])
            for j in 0..<inner {
                switch name {
                case "gelu": a.append(naiveGELU(row[j]))
                case "gelu-approximate":
                    let v = row[j]
                    a.append(0.5 * v * (1 + Foundation.tanh((2 / Double.pi).squareRoot() * (v + 0.044715 * v * v * v))))
                case "geglu": a.append(row[j] * naiveGELU(row[inner + j]))
                case "swiglu": a.append(row[j] * Self.naiveSiLU(row[inner + j]))
                case "geglu-approximate": a.append(row[j] / (1 + Foundation.exp(-1.702 * row[j])))
                default: a.append(Self.naiveSiLU(row[j]))
                }
            }
        }
        let y = naiveLinear(a, inFeatures: inner, weight: w["ff.net.2.weight"]!, bias: w["ff.net.2.bias"])
        let got = try ff(x)
        #expect(got.shape == [2, 3, out])
        let expected = try Tensor(shape: [2, 3, out], scalars: y.map(Float.init))
        #expect(try Tensor.relativeL2(got, expected) <= 1e-5, "\(name)")
    }

    @Test func unknownActivationNamesAreNil() {
        #expect(FeedForwardActivation(diffusersName: "mish") == nil)
    }
}
