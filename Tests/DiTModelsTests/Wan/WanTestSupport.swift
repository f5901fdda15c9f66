import Foundation
import Testing
@testable import DiTModels
import Tensors

/// A tiny image-to-video configuration: 2 heads × 12 channels (rotary split 4/4/4), image tokens
/// through separate key/value projections.
func tinyI2VConfiguration(posEmbedSeqLen: Int? = nil) -> WanConfiguration {
    WanConfiguration(patchSize: [1, 2, 2], numAttentionHeads: 2, attentionHeadDim: 12, inChannels: 3, outChannels: 3,
                     textDim: 8, freqDim: 16, ffnDim: 20, numLayers: 2, crossAttnNorm: true, eps: 1e-6,
                     imageDim: 10, addedKVProjDim: 24, ropeMaxSeqLen: 64, posEmbedSeqLen: posEmbedSeqLen)
}
