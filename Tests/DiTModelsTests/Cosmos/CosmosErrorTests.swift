import Foundation
import Testing
import Tensors
@testable import DiTModels
import TestSupport

/// Typed errors for configurations, weights and inputs Cosmos cannot run, and the optional branches
/// that change the parameter set.
@Suite struct CosmosErrorTests {
    static let tiny = CosmosConfiguration(inChannels: 4, outChannels: 4, numAttentionHeads: 2, attentionHeadDim: 12,
                                          numLayers: 2, mlpRatio: 2, textEmbedDim: 8, adalnLoraDim: 4,
                                          maxSize: [4, 8, 8], patchSize: [1, 2, 2], concatPaddingMask: false)

    static func field(_ c: CosmosConfiguration) -> String? {
        do { try c.validate(); return nil } catch {
            if case let .unsupportedConfig(field, _, _) = error { return field }
            return "other"
        }
    }

    @Test func badConfigurationsNameTheirField() throws {
        #expect(Self.field(Self.tiny) == nil)
        var c = Self.tiny
        c.extraPosEmbedType = "sincos"
        #expect(Self.field(c) == "extra_pos_embed_type")
        c = Self.tiny; c.attentionHeadDim = 8  // rotary axes [4, 2, 2]: diffusers divides by zero
        #expect(Self.field(c) == "attention_head_dim")
        c = Self.tiny; c.attentionHeadDim = 13
        #expect(Self.field(c) == "attention_head_dim")
        c = Self.tiny; c.imgContextDimIn = 16
        #expect(Self.field(c) == "img_context_dim_in")
        c = Self.tiny; c.maxSize = [4, 1, 8]
        #expect(Self.field(c) == "max_size")
        c = Self.tiny; c.patchSize = [1, 2]
        #expect(Self.field(c) == "patch_size")
        c = Self.tiny; c.adalnLoraDim = 0
        #expect(Self.field(c) == "adaln_lora_dim")
        c = Self.tiny; c.ropeScale = [1, .nan, 1]
        #expect(Self.field(c) == "rope_scale")
        c = Self.tiny; c.mlpRatio = 0.01
        #expect(Self.field(c) == "mlp_ratio")
        c = Self.tiny; c.useCrossattnProjection = true; c.encoderHiddenStatesChannels = 9
        #expect(Self.field(c) == "encoder_hidden_states_channels")
        // diffusers' `adaln_lora_dim: null` cannot build the model: a decoding error, not a default.
        #expect(throws: ModelLoadError.self) {
            try CosmosConfiguration.parse(Data(#"{"_class_name": "CosmosTransformer3DModel", "adaln_lora_dim": null}"#.utf8))
        }
    }

    @Test func missingAndMisshapedWeightsAreListed() throws {
        var tensors = try Fixtures.tensors("cosmos", "model.safetensors")
        tensors["transformer_blocks.0.attn1.norm_q.weight"] = nil
        tensors["learnable_pos_embed.pos_emb_t"] = randomTensor([3, 32], seed: 1)
        let config = try CosmosForwardTests.configuration()
        #expect {
            try CosmosFamily.load(config, tensors: tensors)
        } throws: { e in
            guard case let ModelLoadError.weightMismatch(missing, _, misshaped) = e else { return false }
            return missing == ["transformer_blocks.0.attn1.norm_q.weight"]
                && misshaped.map(\.name) == ["learnable_pos_embed.pos_emb_t"]
        }
        // Without the learnable embedding the stored tables are unexpected.
        var noPositions = config
        noPositions.extraPosEmbedType = nil
        #expect {
            try CosmosFamily.load(noPositions, tensors: try Fixtures.tensors("cosmos", "model.safetensors"))
        } throws: { e in
            guard case let ModelLoadError.weightMismatch(missing, unexpected, _) = e else { return false }
            return missing.isEmpty && unexpected.count == 3
        }
    }

    @Test func badInputsAreTypedErrors() throws {
        let model = try CosmosForwardTests.model()
        let x = try CosmosForwardTests.input()
        func rejects(_ change: (inout CosmosInput) throws -> Void) throws {
            var y = x
            try change(&y)
            #expect(throws: TensorError.self) { try model(y) }
        }
        try rejects { $0.hiddenStates = randomTensor([1, 3, 2, 8, 8], seed: 1) }            // channels
        try rejects { $0.hiddenStates = randomTensor([1, 4, 2, 7, 8], seed: 1) }            // not divisible by the patch
        try rejects { $0.hiddenStates = randomTensor([1, 4, 2, 34, 8], seed: 1) }           // beyond max_size
        try rejects { $0.hiddenStates = randomTensor([1, 4, 17, 8, 8], seed: 1) }           // frames beyond max_size
        try rejects { $0.encoderHiddenStates = randomTensor([1, 6, 31], seed: 1) }          // text width
        try rejects { $0.encoderHiddenStates = randomTensor([2, 6, 32], seed: 1) }          // text batch
        try rejects { $0.timestep = try Tensor(shape: [2, 1], repeating: 0) }               // timestep shape
        try rejects { $0.timestep = try Tensor(shape: [1], repeating: .nan) }
        try rejects { $0.fps = 0 }
        try rejects { $0.attentionMask = randomTensor([1, 5], seed: 1) }
        try rejects { $0.conditionMask = randomTensor([1, 1, 2, 8, 8], seed: 1) }           // 5 channels for in_channels 4
        var nan = x.hiddenStates.scalars
        nan[3] = .nan
        try rejects { $0.hiddenStates = try Tensor(shape: x.hiddenStates.shape, scalars: nan) }
    }

    /// `concat_padding_mask` and a condition-mask channel (the Video2World layout): the padding mask is
    /// required, and a zero one changes nothing when its weight columns are zero.
    @Test func paddingMaskChannelIsRequiredAndRead() throws {
        var c = Self.tiny
        c.concatPaddingMask = true
        c.inChannels = 5
        let model = try CosmosFamily.random(c, seed: 3, steps: 12)
        let latent = randomTensor([1, 4, 2, 4, 4], seed: 1), cond = try Tensor(shape: [1, 1, 2, 4, 4], repeating: 1)
        var x = CosmosInput(hiddenStates: latent, timestep: try Tensor(shape: [1], repeating: -0.2),
                            encoderHiddenStates: randomTensor([1, 3, 8], seed: 2), fps: 24, conditionMask: cond)
        #expect(throws: TensorError.self) { try model(x) }
        x.paddingMask = try Tensor(shape: [1, 1, 32, 32], repeating: 0)
        let zero = try model(x)
        x.paddingMask = try Tensor(shape: [1, 1, 32, 32], repeating: 1)
        #expect(relL2(try model(x), zero) > 1e-3)
        #expect(zero.shape == [1, 4, 2, 4, 4])
    }

    /// A prepared input beyond the memory budget is refused before anything runs.
    @Test func forwardBeyondItsBudgetIsRefused() throws {
        var model = try CosmosForwardTests.model()
        model.memoryBudget = MemoryBudget(bytes: 1000)
        #expect(throws: TensorError.self) { try model(CosmosForwardTests.input()) }
    }
}
