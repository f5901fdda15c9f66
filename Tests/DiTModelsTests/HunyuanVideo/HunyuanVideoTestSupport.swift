import Foundation
import Testing
@testable import DiTModels
import Tensors
import TestSupport

/// Tiny HunyuanVideo configurations for unit tests: 2 heads × 8 channels (rotary split 2/2/4).
enum HunyuanVideoTestConfig {
    static func tiny(guidance: Bool = true, imageCondition: String? = nil, qkNorm: String? = "rms_norm",
                     layers: Int = 1, singleLayers: Int = 1, refinerLayers: Int = 1) -> HunyuanVideoConfiguration {
        var c = HunyuanVideoConfiguration()
        c.inChannels = 3
        c.outChannels = 3
        c.numAttentionHeads = 2
        c.attentionHeadDim = 8
        c.numLayers = layers
        c.numSingleLayers = singleLayers
        c.numRefinerLayers = refinerLayers
        c.mlpRatio = 1.5
        c.patchSize = 2
        c.patchSizeT = 1
        c.qkNorm = qkNorm
        c.guidanceEmbeds = guidance
        c.textEmbedDim = 6
        c.pooledProjectionDim = 5
        c.ropeAxesDim = [2, 2, 4]
        c.imageConditionType = imageCondition
        return c
    }

    /// Inputs for `tiny`: latent `[b, 3, 2, 4, 4]`, 5 text tokens with `valid[i]` valid ones.
    static func input(_ c: HunyuanVideoConfiguration, batch b: Int = 2, valid: [Int] = [5, 3], seed: UInt64 = 1) throws -> HunyuanVideoInput {
        var mask = [Float](repeating: 0, count: b * 5)
        for bi in 0..<b { for j in 0..<valid[bi] { mask[bi * 5 + j] = 1 } }
        return HunyuanVideoInput(
            hiddenStates: randomTensor([b, c.inChannels, 2, 4, 4], seed: seed),
            timestep: try Tensor(shape: [b], repeating: 700),
            encoderHiddenStates: randomTensor([b, 5, c.textEmbedDim], seed: seed + 1),
            encoderAttentionMask: try Tensor(shape: [b, 5], scalars: mask),
            pooledProjections: randomTensor([b, c.pooledProjectionDim], seed: seed + 2),
            guidance: c.guidanceEmbeds ? try Tensor(shape: [b], repeating: 6000) : nil)
    }
}
