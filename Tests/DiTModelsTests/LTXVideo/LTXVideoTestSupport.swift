import Foundation
import Testing
import DiTHarness
@testable import DiTModels
import Tensors
import TestSupport

/// A tiny LTX-Video configuration (2 heads × 14 = 28 wide: `28 mod 6 = 4` unrotated channels).
func tinyLTXConfiguration(layers: Int = 2, affine: Bool = false, bias: Bool = true) -> LTXVideoConfiguration {
    LTXVideoConfiguration(inChannels: 6, outChannels: 5, numAttentionHeads: 2, attentionHeadDim: 14,
                          crossAttentionDim: 28, numLayers: layers, normElementwiseAffine: affine,
                          captionChannels: 10, attentionBias: bias, attentionOutBias: bias)
}

/// Inputs for ``tinyLTXConfiguration(layers:affine:bias:)``: grid 2×2×3 (12 tokens), 5 caption tokens,
/// the second sample's last two caption tokens padded.
func tinyLTXInput(batch b: Int = 2, seed: UInt64 = 3) throws -> LTXVideoInput {
    var mask = [Float](repeating: 1, count: b * 5)
    if b > 1 { mask[2 * 5 - 1] = 0; mask[2 * 5 - 2] = 0 }
    return LTXVideoInput(hiddenStates: randomTensor([b, 12, 6], seed: seed),
                         encoderHiddenStates: randomTensor([b, 5, 10], seed: seed + 1),
                         timestep: try Tensor(shape: [b], repeating: 600),
                         encoderAttentionMask: try Tensor(shape: [b, 5], scalars: mask),
                         numFrames: 2, height: 2, width: 3, ropeInterpolationScale: [0.32, 32, 32])
}

/// A fixture folder's model and forward arguments.
func ltxFixture(_ folder: String) throws -> (LTXVideoTransformer, LTXVideoInput, [String: Tensor]) {
    let f = try FixtureFolder(Fixtures.folder(folder))
    let config = try LTXVideoConfiguration.parse(f.config, className: f.className)
    let model = try LTXVideoFamily.load(config, weightsAt: f.weightsURL)
    return (model, try LTXVideoFamily.forwardInput(f.forwardArguments(), configuration: config), f.forwardTensors)
}
