import Foundation
import Testing
import Tensors
@testable import DiTModels
import TestSupport

/// Typed errors for configurations, weights and inputs Latte cannot run, each naming what to fix.
@Suite struct LatteErrorTests {
    /// A small valid configuration (width 16, one layer, learned sigma).
    static let tiny = LatteConfiguration(
        numAttentionHeads: 2, attentionHeadDim: 8, inChannels: 3, outChannels: 6, numLayers: 1, crossAttentionDim: 16,
        attentionBias: true, sampleSize: 8, patchSize: 2, activationFn: "gelu-approximate", normElementwiseAffine: false,
        normEps: 1e-6, captionChannels: 12, videoLength: 2)

    static func config(_ json: String) throws -> LatteConfiguration {
        try LatteConfiguration.parse(Data(json.utf8), className: "LatteTransformer3DModel")
    }

    static let base = #""num_attention_heads": 2, "in_channels": 3, "patch_size": 2, "caption_channels": 12"#

    @Test func configurationsDiffusersCannotRunAreRefusedByField() throws {
        let cases: [(String, String)] = [
            (#"{\#(Self.base)}"#, "norm_type"),  // diffusers' default norm_type is layer_norm
            (#"{\#(Self.base), "norm_type": "ada_norm_single", "cross_attention_dim": 24}"#, "cross_attention_dim"),
            (#"{"num_attention_heads": 2, "patch_size": 2, "caption_channels": 12, "norm_type": "ada_norm_single", "in_channels": null}"#, "in_channels"),
            (#"{\#(Self.base), "norm_type": "ada_norm_single", "attention_head_dim": 3}"#, "attention_head_dim"),
            (#"{\#(Self.base), "norm_type": "ada_norm_single", "activation_fn": "relu"}"#, "activation_fn"),
            (#"{\#(Self.base), "norm_type": "ada_norm_single", "sample_size": 1}"#, "sample_size"),
            (#"{\#(Self.base), "norm_type": "ada_norm_single", "num_layers": -1}"#, "num_layers"),
        ]
        for (json, field) in cases {
            do {
                _ = try Self.config(json)
                Issue.record("\(field): accepted")
            } catch let ModelLoadError.unsupportedConfig(f, _, _) {
                #expect(f == field)
            } catch {
                Issue.record("\(field): \(error)")
            }
        }
        let parsed = try Self.config(#"{\#(Self.base), "norm_type": "ada_norm_single", "out_channels": null, "cross_attention_dim": null}"#)
        #expect(parsed.outChannels == 3 && !parsed.hasCrossAttention && parsed.normElementwiseAffine)
    }

    @Test func missingAndMisshapedWeightsAreListedTogether() throws {
        let loader = WeightLoader(randomSeed: 1)
        _ = try LatteFamily.build(Self.tiny, loader).model
        var weights = loader.supplied
        weights["transformer_blocks.0.attn2.to_k.weight"] = nil
        weights["scale_shift_table"] = try Tensor(zeros: [6, 16])
        weights["temporal_transformer_blocks.0.attn2.to_q.weight"] = try Tensor(zeros: [16, 16])  // temporal blocks have no attn2
        #expect { try LatteFamily.load(Self.tiny, tensors: weights) } throws: { e in
            guard case let ModelLoadError.weightMismatch(missing, unexpected, misshaped) = e else { return false }
            return missing == ["transformer_blocks.0.attn2.to_k.weight"]
                && unexpected == ["temporal_transformer_blocks.0.attn2.to_q.weight"] && misshaped.map(\.name) == ["scale_shift_table"]
        }
    }

    @Test func badInputsAreRefusedBeforeComputing() throws {
        let model = try LatteFamily.random(Self.tiny, seed: 2, steps: 12)
        let good = LatteInput(hiddenStates: randomTensor([2, 3, 2, 4, 6], seed: 1), timestep: try Tensor(shape: [2], repeating: 500),
                              encoderHiddenStates: randomTensor([2, 5, 12], seed: 2))
        #expect(try model(good).shape == [2, 6, 2, 4, 6])
        var bad: [(String, LatteInput)] = []
        var x = good; x.hiddenStates = randomTensor([2, 4, 2, 4, 6], seed: 1); bad.append(("channels", x))
        x = good; x.hiddenStates = randomTensor([2, 3, 2, 5, 6], seed: 1); bad.append(("odd height", x))
        x = good; x.timestep = try Tensor(shape: [1], repeating: 500); bad.append(("timestep [1] for batch 2", x))
        x = good; x.encoderHiddenStates = randomTensor([2, 5, 16], seed: 2); bad.append(("caption width", x))
        x = good; x.encoderHiddenStates = randomTensor([1, 5, 12], seed: 2); bad.append(("caption batch", x))
        x = good; x.hiddenStates = randomTensor([2, 3, 3, 4, 6], seed: 1); bad.append(("3 frames, video_length 2", x))
        x = good; x.timestep = try Tensor(shape: [2], scalars: [500, .nan]); bad.append(("NaN timestep", x))
        for (label, input) in bad {
            #expect(throws: TensorError.self, "\(label)") { try model(input) }
        }
        // Three frames are fine without temporal attention (the table is never added).
        x = good; x.hiddenStates = randomTensor([2, 3, 3, 4, 6], seed: 1); x.enableTemporalAttentions = false
        #expect(try model(x).shape == [2, 6, 3, 4, 6])
        var small = model
        small.memoryBudget = MemoryBudget(bytes: 1000)
        #expect(throws: TensorError.self) { try small(good) }
    }
}
