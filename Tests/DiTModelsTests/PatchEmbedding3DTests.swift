import Foundation
import Testing
import Tensors
@testable import DiTModels
import TestSupport

/// ``PatchEmbedding3D`` against a direct strided Conv3d (kernel = stride = patch) written as loops.
@Suite struct PatchEmbedding3DTests {
    @Test(arguments: [(1, 2, 2), (2, 1, 3)])
    func patchEmbeddingIsAStridedConvolution(_ patch: (Int, Int, Int)) throws {
        let (pt, ph, pw) = patch
        let (b, c, d) = (2, 3, 5)
        let (f, h, w) = (2 * pt, 2 * ph, 3 * pw)
        let loader = WeightLoader(randomSeed: 7)
        let pe = PatchEmbedding3D(loader.root["proj"], inChannels: c, outChannels: d, patch: (pt, ph, pw))
        let weight = doubles(try #require(loader.supplied["proj.weight"]))  // [d, c, pt, ph, pw]
        let bias = doubles(try #require(loader.supplied["proj.bias"]))
        let x = randomTensor([b, c, f, h, w], seed: 9)
        let out = try pe(x)
        #expect(out.shape == [b, 2 * 2 * 3, d])
        var ref = [Double]()
        for bi in 0..<b { for fi in 0..<2 { for hi in 0..<2 { for wi in 0..<3 { for o in 0..<d {
            var s = bias[o]
            for ci in 0..<c { for a in 0..<pt { for r in 0..<ph { for q in 0..<pw {
                let wIndex = (((o * c + ci) * pt + a) * ph + r) * pw + q
                s += weight[wIndex] * Double(x[bi, ci, fi * pt + a, hi * ph + r, wi * pw + q])
            } } } }
            ref.append(s)
        } } } } }
        // At most 18 products per output: float32 error ~1e-7 relative.
        #expect(relL2(out, try Tensor(shape: out.shape, scalars: ref.map(Float.init))) < 1e-6)
        #expect(throws: TensorError.self) { try pe(randomTensor([b, c + 1, f, h, w], seed: 1)) }
        #expect(throws: TensorError.self) { try pe(randomTensor([b, c, f, h, w + 1], seed: 1)) }
    }

    @Test func withoutBiasTheProjectionHasNone() throws {
        let loader = WeightLoader(randomSeed: 1)
        let pe = PatchEmbedding3D(loader.root["proj"], inChannels: 2, outChannels: 4, patch: (1, 2, 2), bias: false)
        #expect(pe.projection.bias == nil)
        #expect(loader.supplied["proj.bias"] == nil)
        #expect(try pe(randomTensor([1, 2, 1, 2, 2], seed: 2)).shape == [1, 1, 4])
    }
}
