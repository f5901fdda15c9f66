import Foundation
import Testing
import Tensors
@testable import DiTModels
import TestSupport

/// Bad inputs and mismatched weights are typed errors before any large allocation.
@Suite("LTX-Video errors")
struct LTXVideoErrorTests {
    static let model = try! LTXVideoFamily.random(tinyLTXConfiguration(), seed: 2, steps: 50)

    @Test func goodInputRuns() throws {
        #expect(try Self.model(tinyLTXInput()).shape == [2, 12, 5])
    }

    @Test(arguments: 0..<14)
    func badInputsAreTypedErrors(case index: Int) throws {
        var x = try tinyLTXInput()
        switch index {
        case 0: x.hiddenStates = randomTensor([2, 12, 7], seed: 1)                 // wrong in_channels
        case 1: x.hiddenStates = randomTensor([2, 2, 6, 6], seed: 1)               // not packed tokens
        case 2: x.encoderHiddenStates = randomTensor([2, 5, 9], seed: 1)           // wrong caption width
        case 3: x.encoderHiddenStates = randomTensor([1, 5, 10], seed: 1)          // wrong batch
        case 4: x.encoderAttentionMask = try Tensor(shape: [2, 4], repeating: 1)   // mask of the wrong length
        case 5: x.encoderAttentionMask = try Tensor(shape: [2, 5, 1, 1], repeating: 1)
        case 6: x.timestep = try Tensor(shape: [3], repeating: 500)               // neither B nor B·S values
        case 7: x.timestep = try Tensor(shape: [2], scalars: [.nan, 1])
        case 8: x.hiddenStates = x.hiddenStates.mapVector { $0 * .infinity }
        case 9: x.numFrames = nil                                                 // no grid, no video_coords
        case 10: x.width = 4                                                      // grid ≠ tokens
        case 11: x.ropeInterpolationScale = [1, 2]
        case 12: x.videoCoords = try Tensor(shape: [2, 2, 12], repeating: 0)
        default: x.numFrames = 1 << 40; x.height = 1 << 40                        // product overflows Int
        }
        #expect(throws: TensorError.self) { try Self.model(x) }
    }

    /// Without blocks the reference has no block 0 to read the modulated input from.
    @Test func modulatedInputNeedsABlock() throws {
        let m = try LTXVideoFamily.random(tinyLTXConfiguration(layers: 0), seed: 1, steps: 50)
        let s = try m.prepare(tinyLTXInput())
        #expect(throws: TensorError.self) { try m.modulatedInput(s) }
        #expect(try m(tinyLTXInput()).shape == [2, 12, 5])
    }

    /// A configuration that disagrees with the weights lists every missing, unexpected and mis-shaped
    /// tensor at once (here: biases switched off, affine norms switched on, another width).
    @Test func weightMismatchListsEveryProblem() throws {
        let url = Fixtures.folder("ltx_video").appendingPathComponent("model.safetensors")
        let good = try LTXVideoConfiguration.load(Fixtures.folder("ltx_video").appendingPathComponent("config.json"))
        var c = good
        c.attentionBias = false
        c.normElementwiseAffine = true
        c.captionChannels = 33
        #expect {
            try LTXVideoFamily.load(c, weightsAt: url)
        } throws: { e in
            guard case let ModelLoadError.weightMismatch(missing, unexpected, misshaped) = e else { return false }
            return missing.contains("transformer_blocks.0.norm1.weight")
                && unexpected.contains("transformer_blocks.0.attn1.to_q.bias")
                && misshaped.map(\.name) == ["caption_projection.linear_1.weight"]
        }
        c = good
        c.numLayers = 2
        #expect(throws: ModelLoadError.self) { try LTXVideoFamily.load(c, weightsAt: url) }
    }
}
