import Foundation
import Testing
import Tensors
@testable import DiTModels
import TestSupport

/// Configuration values diffusers 0.42.1 accepts by substituting or ignoring them, accepted the same way.
@Suite("Config leniency")
struct ConfigLeniencyTests {
    // MARK: - FLUX out_channels

    /// diffusers: `out_channels or in_channels`, so null, absent and 0 all give in_channels; the fixture
    /// weights (proj_out [16, 32]) then load and the forward is the reference's.
    @Test(arguments: [#""out_channels": null"#, #""out_channels": 0"#, ""])
    func fluxOutChannelsNullAbsentOrZeroMeansInChannels(_ field: String) throws {
        let plain = "{\"_class_name\": \"FluxTransformer2DModel\", \"in_channels\": 12" + (field.isEmpty ? "" : ", \(field)") + "}"
        let p = try FluxConfiguration.parse(Data(plain.utf8))
        #expect(p.outChannelsSetting == nil && p.outChannels == 12 && p.outputWidth == 12)

        let data = try FluxLoadingTests.config { config in
            if field.isEmpty { config["out_channels"] = nil } else { config["out_channels"] = field.contains("0") ? 0 : NSNull() }
        }
        let c = try FluxConfiguration.parse(data)
        #expect(c.outChannels == 16)
        let model = try FluxFamily.load(c, tensors: Fixtures.tensors("flux", "model.safetensors"))
        #expect(model.projOut.weight.shape == [16, 32])
        let t = try Fixtures.tensors("flux", "forward.safetensors")
        let e = try Tensor.relativeL2(model(FluxForwardTests.inputs(t)), #require(t["output"]))
        #expect(e <= 1e-4, "output rel L2 \(e)")
    }

    @Test func fluxExplicitOutChannelsAreKeptAndNegativeIsRejected() throws {
        let c = try FluxConfiguration.parse(Data(#"{"_class_name": "FluxTransformer2DModel", "in_channels": 12, "out_channels": 4, "patch_size": 2}"#.utf8))
        #expect(c.outChannels == 4 && c.outputWidth == 16)
        var manual = FluxConfiguration()
        manual.outChannelsSetting = 0  // set directly rather than decoded: still means in_channels
        #expect(manual.outChannels == 64)
        #expect(throws: Never.self) { try manual.validate() }
        #expect {
            try FluxConfiguration.parse(Data(#"{"_class_name": "FluxTransformer2DModel", "out_channels": -2}"#.utf8))
        } throws: { e in
            guard case let ModelLoadError.unsupportedConfig(field, value, _) = e else { return false }
            return field == "out_channels" && value == "-2"
        }
    }

    // MARK: - Wan pos_embed_seq_len / added_kv_proj_dim without image_dim

    static func tinyT2V() -> WanConfiguration {
        var c = tinyI2VConfiguration()
        c.imageDim = nil
        c.addedKVProjDim = nil
        return c
    }

    static func textInput(textTokens l: Int = 6) -> WanInput {
        WanInput(hiddenStates: randomTensor([1, 3, 2, 4, 4], seed: 1), timestep: try! Tensor(shape: [1], repeating: 625),
                 encoderHiddenStates: randomTensor([1, l, 8], seed: 2))
    }

    /// Without image_dim diffusers builds no image embedder and ignores pos_embed_seq_len, whatever its
    /// value: the model is the text-to-video one (same parameters, same output).
    @Test(arguments: [514, 3, 0, -1])
    func wanPosEmbedSeqLenWithoutImageDimIsIgnored(_ value: Int) throws {
        let json = "{\"_class_name\": \"WanTransformer3DModel\", \"pos_embed_seq_len\": \(value)}"
        let c = try WanConfiguration.parse(Data(json.utf8))
        #expect(c.posEmbedSeqLen == nil && c.imageDim == nil)
        #expect(c == (try WanConfiguration.parse(Data(#"{"_class_name": "WanTransformer3DModel"}"#.utf8))))

        let tiny = WanConfiguration(patchSize: [1, 2, 2], numAttentionHeads: 2, attentionHeadDim: 12, inChannels: 3,
                                    outChannels: 3, textDim: 8, freqDim: 16, ffnDim: 20, numLayers: 2, eps: 1e-6,
                                    ropeMaxSeqLen: 64, posEmbedSeqLen: value)
        #expect(tiny.posEmbedSeqLen == nil)
        let loader = WeightLoader(randomSeed: 5)
        _ = try WanFamily.build(tiny, loader).model
        #expect(!loader.supplied.keys.contains { $0.contains("image_embedder") })
        let loaded = try WanFamily.randomCounting(tiny, seed: 5, steps: 50)
        let model = loaded.model
        #expect(model.conditionEmbedder.imageEmbedder == nil)
        let reference = try WanFamily.randomCounting(Self.tinyT2V(), seed: 5, steps: 50)
        #expect(loaded.parameterCount == reference.parameterCount)
        #expect(try model(Self.textInput()) == reference.model(Self.textInput()))
    }

    /// diffusers 0.42.1 builds a model with `added_kv_proj_dim` but no `image_dim`: the blocks get the
    /// image projections, the model no image embedder. Text-only calls run; the projections read the text
    /// tokens beyond 512 (none here, so they add exactly zero); an image argument is refused.
    @Test func wanAddedKVProjectionsWithoutImageDim() throws {
        let json = #"{"_class_name": "WanTransformer3DModel", "added_kv_proj_dim": 5120}"#
        let parsed = try WanConfiguration.parse(Data(json.utf8))
        #expect(parsed.addedKVProjDim == 5120 && parsed.imageDim == nil)

        var c = Self.tinyT2V()
        c.addedKVProjDim = 24
        let loader = WeightLoader(randomSeed: 8)
        let model = try WanFamily.build(c, loader).model
        #expect(loader.supplied["blocks.1.attn2.add_k_proj.weight"]?.shape == [24, 24])
        #expect(loader.supplied["blocks.0.attn2.norm_added_k.weight"]?.shape == [24])
        #expect(!loader.supplied.keys.contains { $0.contains("image_embedder") })
        // Reloading through the stored-weights path round-trips.
        let reloaded = try WanFamily.load(c, tensors: loader.supplied)
        #expect(try reloaded(Self.textInput()) == model(Self.textInput()))

        let t2vWeights = loader.supplied.filter {
            !$0.key.contains("add_k_proj") && !$0.key.contains("add_v_proj") && !$0.key.contains("norm_added_k")
        }
        let t2v = try WanFamily.load(Self.tinyT2V(), tensors: t2vWeights)
        #expect(try model(Self.textInput()) == t2v(Self.textInput()))

        // 514 text tokens: the first 2 go to the image projections, 512 to to_k/to_v.
        let long = try model.prepare(Self.textInput(textTokens: 514))
        #expect(long.blocks.image?.shape == [1, 2, 24])
        #expect(long.blocks.context.shape == [1, 512, 24])

        var withImage = Self.textInput()
        withImage.encoderHiddenStatesImage = randomTensor([1, 5, 10], seed: 3)
        #expect {
            try model(withImage)
        } throws: { e in
            guard case let TensorError.invalidArgument(_, reason) = e else { return false }
            return reason.contains("no image_dim")
        }
    }
}
