import Foundation
import Testing
@testable import DiTModels
import Tensors
import TestSupport

/// A tiny Mochi configuration with asymmetric widths: visual 2 heads × 8 = 16, text stream 12, text
/// features 16 (2 per pool head), 2 blocks (the second `context_pre_only`).
func tinyMochiConfiguration(layers: Int = 2) -> MochiConfiguration {
    MochiConfiguration(patchSize: 2, numAttentionHeads: 2, attentionHeadDim: 8, numLayers: layers, pooledProjectionDim: 12,
                       inChannels: 3, outChannels: nil, textEmbedDim: 16, timeEmbedDim: 10, maxSequenceLength: 8)
}

/// Seeded inputs for ``tinyMochiConfiguration(layers:)``-shaped models.
func tinyMochiInput(batch b: Int = 1, frames f: Int = 2, height h: Int = 4, width w: Int = 4,
                    masks: [[Float]] = [[1, 1, 1, 0]], timestep: Float = 375) -> MochiInput {
    let l = masks[0].count
    return MochiInput(hiddenStates: randomTensor([b, 3, f, h, w], seed: 11), encoderHiddenStates: randomTensor([b, l, 16], seed: 12),
                      timestep: try! Tensor(shape: [b], repeating: timestep),
                      encoderAttentionMask: try! Tensor(shape: [b, l], scalars: masks.flatMap { $0 }))
}

enum MochiFixture {
    static func configuration(_ folder: URL = Fixtures.folder("mochi")) throws -> MochiConfiguration {
        try MochiConfiguration.load(folder.appendingPathComponent("config.json"))
    }

    static func model(_ folder: URL = Fixtures.folder("mochi")) throws -> MochiTransformer {
        try MochiFamily.load(configuration(folder), weightsAt: folder.appendingPathComponent("model.safetensors"))
    }

    static func input(_ t: [String: Tensor]) throws -> MochiInput {
        MochiInput(hiddenStates: try #require(t["input.hidden_states"]),
                   encoderHiddenStates: try #require(t["input.encoder_hidden_states"]),
                   timestep: try #require(t["input.timestep"]),
                   encoderAttentionMask: try #require(t["input.encoder_attention_mask"]))
    }
}
