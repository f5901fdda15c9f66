import Foundation
import Testing
import TeaCache
import Tensors
@testable import DiTModels
import TestSupport

@Suite("HunyuanVideo model")
struct HunyuanVideoModelTests {
    static let tiny = HunyuanVideoTestConfig.tiny()

    // MARK: Configuration

    @Test func configurationDecodesDiffusersKeysAndDefaults() throws {
        let json = """
        {"_class_name": "HunyuanVideoTransformer3DModel", "in_channels": 9, "out_channels": null, "mlp_ratio": 1.5,
         "qk_norm": null, "rope_axes_dim": [4, 6, 6, 99], "attention_head_dim": 16, "num_attention_heads": 2,
         "image_condition_type": "latent_concat", "some_future_key": 1}
        """
        let c = try HunyuanVideoConfiguration.parse(Data(json.utf8))
        #expect(c.inChannels == 9 && c.outChannels == 9)  // `out_channels or in_channels`
        #expect(c.mlpRatio == 1.5 && c.mlpHiddenDim == 48 && c.refinerMLPHiddenDim == 128)
        #expect(c.qkNorm == nil && c.queryKeyNorm == .identity)
        #expect(c.rotaryAxesDims == [4, 6, 6])  // diffusers reads the first three
        #expect(c.numLayers == 20 && c.numSingleLayers == 40 && c.numRefinerLayers == 2 && c.guidanceEmbeds)
        #expect(c.textEmbedDim == 4096 && c.pooledProjectionDim == 768 && c.ropeTheta == 256 && c.patchSize == 2)
        // An absent out_channels is diffusers' default 16, whatever in_channels is.
        let d = try HunyuanVideoConfiguration.parse(Data(#"{"_class_name": "HunyuanVideoTransformer3DModel", "in_channels": 4}"#.utf8))
        #expect(d.outChannels == 16 && d.qkNorm == "rms_norm" && d.imageConditionType == nil)
    }

    @Test(arguments: [
        ("qk_norm", #""rms_norm_across_heads""#), ("qk_norm", #""layer_norm_across_heads""#), ("qk_norm", #""l2""#),
        ("qk_norm", #""batch_norm""#), ("image_condition_type", #""ip_adapter""#),
        ("rope_axes_dim", "[4, 6, 4]"), ("rope_axes_dim", "[3, 7, 6]"), ("rope_axes_dim", "[16]"),
        ("mlp_ratio", "0.0"), ("mlp_ratio", "0.01"), ("rope_theta", "-1.0"), ("patch_size_t", "0"),
        ("num_refiner_layers", "-1"), ("num_attention_heads", "4611686018427387904"), ("num_attention_heads", "65536"),
        ("patch_size", "512"),
    ])
    func invalidConfigurationsNameTheirField(_ field: String, _ value: String) throws {
        var entries = ["\"_class_name\"": "\"HunyuanVideoTransformer3DModel\"", "\"attention_head_dim\"": "16",
                       "\"num_attention_heads\"": "2", "\"rope_axes_dim\"": "[4, 6, 6]", "\"num_layers\"": "1"]
        entries["\"\(field)\""] = value
        let json = "{" + entries.map { "\($0.key): \($0.value)" }.joined(separator: ", ") + "}"
        #expect {
            try HunyuanVideoConfiguration.parse(Data(json.utf8))
        } throws: { e in
            guard case let ModelLoadError.unsupportedConfig(f, _, _) = e else { return false }
            return f == field
        }
    }

    /// `"l2"` builds in diffusers when there are no dual-stream blocks; so it does here.
    @Test func l2QueryKeyNormWithoutDualStreamBlocks() throws {
        let c = HunyuanVideoTestConfig.tiny(qkNorm: "l2", layers: 0, singleLayers: 1)
        let model = try HunyuanVideoFamily.random(c, seed: 1, steps: 50)
        #expect(try model(HunyuanVideoTestConfig.input(c)).shape == [2, 3, 2, 4, 4])
        #expect(throws: TensorError.self) { try model.modulatedInput(model.prepare(HunyuanVideoTestConfig.input(c))) }
    }

    // MARK: Bad input

    @Test func badInputsAreTypedErrors() throws {
        let c = HunyuanVideoTestConfig.tiny()
        let model = try HunyuanVideoFamily.random(c, seed: 1, steps: 50)
        let good = try HunyuanVideoTestConfig.input(c)
        #expect(try model(good).shape == [2, 3, 2, 4, 4])
        func fails(_ edit: (inout HunyuanVideoInput) throws -> Void, _ what: String) throws {
            var x = good
            try edit(&x)
            #expect(throws: TensorError.self, "\(what)") { try model(x) }
        }
        try fails({ $0.hiddenStates = randomTensor([2, 3, 2, 5, 4], seed: 1) }, "H not divisible by the patch")
        try fails({ $0.hiddenStates = randomTensor([2, 4, 2, 4, 4], seed: 1) }, "wrong channel count")
        try fails({ $0.hiddenStates = randomTensor([2, 3, 4, 4], seed: 1) }, "4-D latent")
        try fails({ $0.encoderHiddenStates = randomTensor([2, 5, 7], seed: 2) }, "text width")
        try fails({ $0.encoderHiddenStates = randomTensor([1, 5, 6], seed: 2) }, "text batch")
        try fails({ $0.encoderAttentionMask = try Tensor(shape: [2, 4], repeating: 1) }, "mask of the wrong length")
        try fails({ $0.encoderAttentionMask = try Tensor(shape: [2, 5], scalars: [1, 1, 1, 1, 1, 0, 0, 0, 0, 0]) },
                  "a sample without a valid token")
        try fails({ $0.encoderAttentionMask = try Tensor(shape: [2, 5], scalars: [1, 1, 2, 1, 1, 1, 0, 0, 0, 0]) },
                  "a mask value other than 0/1")
        try fails({ $0.pooledProjections = randomTensor([2, 4], seed: 3) }, "pooled width")
        try fails({ $0.timestep = try Tensor(shape: [3], repeating: 1) }, "timestep batch")
        try fails({ $0.timestep = try Tensor(shape: [2], scalars: [.nan, 1]) }, "NaN timestep")
        try fails({ $0.guidance = nil }, "missing guidance")
        try fails({ $0.guidance = try Tensor(shape: [2], scalars: [.infinity, 1]) }, "infinite guidance")
        try fails({ x in x.hiddenStates.withUnsafeMutableBufferPointer { $0[7] = .nan } }, "NaN latent")
        try fails({ x in x.encoderHiddenStates.withUnsafeMutableBufferPointer { $0[2] = -.infinity } }, "inf text")
    }

    /// A model without a guidance embedder ignores a passed guidance, as diffusers does (its pipeline
    /// always passes one).
    @Test func guidanceIsIgnoredWithoutAGuidanceEmbedder() throws {
        let c = HunyuanVideoTestConfig.tiny(guidance: false)
        let model = try HunyuanVideoFamily.random(c, seed: 2, steps: 50)
        var x = try HunyuanVideoTestConfig.input(c)
        let a = try model(x)
        x.guidance = try Tensor(shape: [2], repeating: 6000)
        #expect(try model(x) == a)
    }

    /// A timestep of shape [1] is broadcast over the batch.
    @Test func scalarTimestepBroadcasts() throws {
        let model = try HunyuanVideoFamily.random(Self.tiny, seed: 1, steps: 50)
        var x = try HunyuanVideoTestConfig.input(Self.tiny)
        let a = try model(x)
        x.timestep = try Tensor(shape: [1], repeating: 700)
        x.guidance = try Tensor(shape: [1], repeating: 6000)
        #expect(try model(x) == a)
    }

    // MARK: Weights

    @Test func missingUnexpectedAndMisshapedWeightsAreListedTogether() throws {
        let loader = WeightLoader(randomSeed: 1)
        _ = try HunyuanVideoFamily.build(Self.tiny, loader)
        var weights = loader.supplied
        weights["transformer_blocks.0.attn.norm_added_k.weight"] = nil
        weights["proj_out.bias"] = try Tensor(zeros: [5])
        weights["context_embedder.token_refiner.refiner_blocks.1.norm1.weight"] = try Tensor(zeros: [16])  // 1 refiner layer
        #expect { try HunyuanVideoFamily.load(Self.tiny, tensors: weights) } throws: { e in
            guard case let ModelLoadError.weightMismatch(missing, unexpected, misshaped) = e else { return false }
            return missing == ["transformer_blocks.0.attn.norm_added_k.weight"]
                && unexpected == ["context_embedder.token_refiner.refiner_blocks.1.norm1.weight"]
                && misshaped.map(\.name) == ["proj_out.bias"]
        }
    }

    /// The parameter names per `qk_norm` are diffusers': scale (and bias) for rms/layer norms, none otherwise.
    @Test func queryKeyNormParametersFollowTheConfiguration() throws {
        func names(_ qk: String?) throws -> Set<String> {
            let loader = WeightLoader(randomSeed: 1)
            _ = try HunyuanVideoFamily.build(HunyuanVideoTestConfig.tiny(qkNorm: qk), loader)
            return Set(loader.supplied.keys.filter { $0.hasPrefix("transformer_blocks.0.attn.norm_added_q") })
        }
        #expect(try names("rms_norm") == ["transformer_blocks.0.attn.norm_added_q.weight"])
        #expect(try names("layer_norm") == ["transformer_blocks.0.attn.norm_added_q.weight",
                                            "transformer_blocks.0.attn.norm_added_q.bias"])
        #expect(try names("fp32_layer_norm").isEmpty && names(nil).isEmpty)
    }

    /// The taper of §6 reaches every timestep MLP, the refiner's included.
    @Test func randomInitTapersEveryTimestepMLP() throws {
        let raw = WeightLoader(randomSeed: 9)
        _ = try HunyuanVideoFamily.build(Self.tiny, raw)
        let model = try HunyuanVideoFamily.random(Self.tiny, seed: 9, steps: 12)
        let tapered = [
            ("time_text_embed.timestep_embedder.linear_1.weight", model.timeTextEmbed.timestepEmbedder.linear1.weight.float32Tensor()),
            ("time_text_embed.guidance_embedder.linear_1.weight", try #require(model.timeTextEmbed.guidanceEmbedder).linear1.weight.float32Tensor()),
            ("context_embedder.time_text_embed.timestep_embedder.linear_1.weight",
             model.contextEmbedder.timestepEmbedder.linear1.weight.float32Tensor()),
        ]
        for (name, w) in tapered {
            let r = try #require(raw.supplied[name])
            // Column 0 (frequency 1) is scaled by the floor 0.02; the last column (frequency 10000^(−127/128))
            // keeps a factor exp(−0.5·(83.3·f/0.1)²) ≈ 0.99.
            let f = Foundation.pow(10000.0, -127.0 / 128.0)
            let k = Float(Foundation.exp(-0.5 * Foundation.pow(1000.0 / 12 * f / 0.1, 2)))
            for row in 0..<16 {
                #expect(abs(w[row, 0] - r[row, 0] * 0.02) <= 1e-7, "\(name)")
                #expect(abs(w[row, 255] - r[row, 255] * k) <= 1e-6, "\(name)")
            }
        }
    }

    // MARK: TeaCache state

    /// Selecting batch rows of a prepared state (tokens, conditioning, key mask) gives what running that
    /// sample alone gives.
    @Test(arguments: [nil, "token_replace"])
    func selectedRowsEqualTheSampleRunAlone(_ condition: String?) throws {
        let c = HunyuanVideoTestConfig.tiny(imageCondition: condition)
        let model = try HunyuanVideoFamily.random(c, seed: 3, steps: 50)
        let x = try HunyuanVideoTestConfig.input(c, valid: [5, 2])
        var both = try model.prepare(x)
        var second = try both.selecting(batch: [1])
        try model.runBlocks(&both)
        try model.runBlocks(&second)
        let alone = try model.outputHead(second)
        let fromBoth = try model.outputHead(both).gatheringRows([1])
        #expect(relL2(alone, fromBoth) < 1e-6)
        #expect(second.context.keyMask?.shape == [1, 8 + 5])
    }

    /// Token-replace models modulate the first frame's tokens with the timestep-0 conditioning: changing
    /// only the timestep leaves that conditioning unchanged, and the modulated input of those tokens differs
    /// from the regular model's.
    @Test func tokenReplaceModulatesTheFirstFrameApart() throws {
        let c = HunyuanVideoTestConfig.tiny(imageCondition: "token_replace")
        let model = try HunyuanVideoFamily.random(c, seed: 4, steps: 50)
        var x = try HunyuanVideoTestConfig.input(c)
        let p1 = try model.prepare(x)
        x.timestep = try Tensor(shape: [2], repeating: 100)
        let p2 = try model.prepare(x)
        #expect(try #require(p1.context.tokenReplaceEmb) == #require(p2.context.tokenReplaceEmb))
        #expect(p1.context.temb != p2.context.temb)
        var plain = p1
        plain.context.tokenReplaceEmb = nil
        let m = try model.modulatedInput(p1), mp = try model.modulatedInput(plain)
        let firstFrame = 2 * 2  // (H/2)·(W/2) of the 8 image tokens
        #expect(try m.slice(axis: 1, firstFrame..<8) == mp.slice(axis: 1, firstFrame..<8))
        #expect(try m.slice(axis: 1, 0..<firstFrame) != mp.slice(axis: 1, 0..<firstFrame))
    }
}
