import Foundation
import Testing
@testable import DiTModels
import Tensors
import TestSupport

/// The image-to-video paths, which the fixtures (text-to-video) do not cover: checked with random
/// weights against naive references and by round trips.
@Suite("Wan I2V")
struct WanImageToVideoTests {
    static func input(batch b: Int = 1, imageTokens n: Int = 5, imageBatch: Int? = nil, seed: UInt64 = 1) -> WanInput {
        WanInput(hiddenStates: randomTensor([b, 3, 2, 4, 4], seed: seed),
                 timestep: try! Tensor(shape: [b], repeating: 625),
                 encoderHiddenStates: randomTensor([b, 6, 8], seed: seed + 1),
                 encoderHiddenStatesImage: randomTensor([imageBatch ?? b, n, 10], seed: seed + 2))
    }

    /// random weights → name/tensor dictionary → stored loader: every name and shape round-trips, and the
    /// reloaded model computes the same output bit for bit (same weights, same kernels).
    @Test func randomWeightsRoundTripThroughTheLoader() throws {
        let c = tinyI2VConfiguration()
        let loader = WeightLoader(randomSeed: 7)
        let model = try WanFamily.build(c, loader).model
        let weights = loader.supplied
        #expect(weights["blocks.1.attn2.add_k_proj.weight"]?.shape == [24, 24])
        #expect(weights["blocks.0.attn2.norm_added_k.weight"]?.shape == [24])
        #expect(weights["condition_embedder.image_embedder.ff.net.0.proj.weight"]?.shape == [10, 10])
        #expect(weights["condition_embedder.image_embedder.ff.net.2.weight"]?.shape == [24, 10])
        #expect(weights["patch_embedding.weight"]?.shape == [24, 3, 1, 2, 2])
        #expect(weights["proj_out.weight"]?.shape == [12, 24])
        #expect(weights.keys.filter { $0.contains("pos_embed") }.isEmpty)
        let reloaded = try WanFamily.load(c, tensors: weights)
        let x = Self.input()
        #expect(try model(x) == reloaded(x))
    }

    @Test func forwardRunsAndTheImageTokensMatter() throws {
        let model = try WanFamily.random(tinyI2VConfiguration(), seed: 3, steps: 50)
        var x = Self.input(batch: 2)
        let out = try model(x)
        #expect(out.shape == [2, 3, 2, 4, 4])
        #expect(out.isFinite)
        x.encoderHiddenStatesImage = randomTensor([2, 5, 10], seed: 99)
        let changed = try model(x)
        // Different image tokens move the output by O(1) relative; 1e-3 is far above float32 noise.
        #expect(relL2(changed, out) > 1e-3)
        // The number of image tokens is free (the split point is known, not assumed to be L − 512).
        #expect(try model(Self.input(batch: 2, imageTokens: 3)).shape == [2, 3, 2, 4, 4])
    }

    /// The image embedder against a hand-composed Double computation:
    /// LN(ε = 1e-5, affine) → Linear → exact GELU → Linear → LN(ε = 1e-5, affine).
    @Test func imageEmbedderMatchesANaiveComposition() throws {
        let loader = WeightLoader(randomSeed: 11)
        let emb = WanImageEmbedding(loader.root["ie"], in: 10, out: 24, positionCount: nil)
        let w = loader.supplied.mapValues(doubles)
        let x = randomTensor([2, 3, 10], seed: 5)
        var h = naiveLayerNorm(doubles(x), dim: 10, weight: w["ie.norm1.weight"], bias: w["ie.norm1.bias"], eps: 1e-5)
        h = naiveLinear(h, inFeatures: 10, weight: w["ie.ff.net.0.proj.weight"]!, bias: w["ie.ff.net.0.proj.bias"])
        h = h.map(naiveGELU)
        h = naiveLinear(h, inFeatures: 10, weight: w["ie.ff.net.2.weight"]!, bias: w["ie.ff.net.2.bias"])
        h = naiveLayerNorm(h, dim: 24, weight: w["ie.norm2.weight"], bias: w["ie.norm2.bias"], eps: 1e-5)
        let out = try emb(x)
        #expect(out.shape == [2, 3, 24])
        // float32 vs Double through two LayerNorms and two short dot products (K ≤ 10): errors ~1e-6;
        // 1e-5 relative L2 catches any wrong order, epsilon or activation (those give ≥ 1e-3).
        let ref = try Tensor(shape: [2, 3, 24], scalars: h.map(Float.init))
        #expect(relL2(out, ref) < 1e-5)
    }

    /// FLF2V: two images per sample are joined along the tokens and offset by `pos_embed`.
    @Test func positionEmbeddingJoinsImagePairs() throws {
        let loader = WeightLoader(randomSeed: 13)
        let emb = WanImageEmbedding(loader.root["ie"], in: 10, out: 24, positionCount: 6)
        let x = randomTensor([4, 3, 10], seed: 6)
        let out = try emb(x)
        #expect(out.shape == [2, 6, 24])
        // Same as the embedder without position embedding applied to the joined tokens plus pos_embed.
        let pos = loader.supplied["ie.pos_embed"]!
        let joined = try x.reshaped([2, 6, 10]) + pos
        let manual = try emb.norm2(emb.feedForward(emb.norm1(joined)))
        #expect(out == manual)
        #expect { try emb(randomTensor([3, 3, 10], seed: 1)) } throws: { e in
            guard case TensorError.shapeMismatch = e else { return false }
            return true
        }
        // The whole model with FLF2V inputs: image batch 2B.
        let model = try WanFamily.random(tinyI2VConfiguration(posEmbedSeqLen: 10), seed: 2, steps: 50)
        #expect(try model(Self.input(batch: 1, imageTokens: 5, imageBatch: 2)).shape == [1, 3, 2, 4, 4])
    }

    /// Without separate image projections (image_dim only), the image tokens are concatenated before the
    /// text and attended through to_k/to_v: equal to the text-only model attending to [image; text].
    @Test func imageTokensWithoutAddedProjectionsJoinTheTextContext() throws {
        var c = tinyI2VConfiguration()
        c.addedKVProjDim = nil
        let model = try WanFamily.random(c, seed: 4, steps: 50)
        let x = Self.input()
        let prepared = try model.prepare(x)
        #expect(prepared.blocks.image == nil)
        #expect(prepared.blocks.context.shape == [1, 5 + 6, 24])
        let imageTokens = try model.conditionEmbedder.imageEmbedder!(x.encoderHiddenStatesImage!)
        #expect(try prepared.blocks.context.slice(axis: 1, 0..<5) == imageTokens)
    }

    /// diffusers hands the first `T − 512` context tokens to the image projections (Python slicing).
    @Test func imageContextSplitFollowsPythonSlicing() {
        let cases: [(t: Int, split: Int)] = [(517, 5), (1024, 512), (512, 0), (300, 88), (257, 2), (256, 0), (7, 0), (0, 0)]
        for c in cases { #expect(WanTransformer.imageContextSplit(contextLength: c.t) == c.split, "T = \(c.t)") }
    }

    /// Without image tokens and with fewer than 256 text tokens the image part is empty and the image
    /// attention adds exactly zero (as in diffusers), so the output equals that of the same weights in a
    /// text-to-video configuration.
    @Test func withoutImageTokensTheImagePathAddsNothing() throws {
        let loader = WeightLoader(randomSeed: 3)
        let i2v = try WanFamily.build(tinyI2VConfiguration(), loader).model
        var x = Self.input()
        x.encoderHiddenStatesImage = nil
        var t2vConfig = tinyI2VConfiguration()
        t2vConfig.imageDim = nil
        t2vConfig.addedKVProjDim = nil
        t2vConfig.posEmbedSeqLen = nil
        let kept = loader.supplied.filter {
            !$0.key.contains("image_embedder") && !$0.key.contains("add_k_proj") && !$0.key.contains("add_v_proj")
                && !$0.key.contains("norm_added_k")
        }
        let t2v = try WanFamily.load(t2vConfig, tensors: kept)
        #expect(try i2v(x) == t2v(x))
    }
}
