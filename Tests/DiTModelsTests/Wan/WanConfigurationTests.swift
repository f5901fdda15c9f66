import Foundation
import Testing
@testable import DiTModels

@Suite("Wan configuration")
struct WanConfigurationTests {
    static let fixtureConfig = """
    {"class": "WanTransformer3DModel", "diffusers_version": "0.42.1", "config": {
      "patch_size": [1, 2, 2], "num_attention_heads": 2, "attention_head_dim": 16, "in_channels": 4,
      "out_channels": 4, "text_dim": 32, "freq_dim": 256, "ffn_dim": 64, "num_layers": 1,
      "cross_attn_norm": true, "qk_norm": "rms_norm_across_heads", "eps": 1e-06, "image_dim": null,
      "added_kv_proj_dim": null, "rope_max_seq_len": 1024, "pos_embed_seq_len": null,
      "_use_default_values": ["pos_embed_seq_len"]}}
    """

    @Test func parsesTheFixtureForm() throws {
        let c = try WanConfiguration.parse(Data(Self.fixtureConfig.utf8))
        #expect(c.patchSize == [1, 2, 2])
        #expect(c.innerDim == 32)
        #expect(c.textDim == 32 && c.freqDim == 256 && c.ffnDim == 64 && c.numLayers == 1)
        #expect(c.eps == 1e-6)
        #expect(c.imageDim == nil && c.addedKVProjDim == nil && c.posEmbedSeqLen == nil)
        // diffusers' split of head_dim 16: h = w = 2·⌊16/6⌋ = 4, t = 8.
        #expect(c.rotaryAxesDims == [8, 4, 4])
    }

    @Test func plainDiffusersFormUsesDefaultsAndNullOutChannels() throws {
        let json = #"{"_class_name": "WanTransformer3DModel", "out_channels": null, "in_channels": 36, "image_dim": 1280, "added_kv_proj_dim": 5120}"#
        let c = try WanConfiguration.parse(Data(json.utf8))
        #expect(c.outChannels == 36)  // diffusers: out_channels or in_channels
        #expect(c.numAttentionHeads == 40 && c.attentionHeadDim == 128 && c.innerDim == 5120)
        #expect(c.rotaryAxesDims == [44, 42, 42])
        #expect(c.imageDim == 1280 && c.addedKVProjDim == 5120)
    }

    @Test func rejectsOtherClasses() {
        let json = #"{"_class_name": "FluxTransformer2DModel"}"#
        #expect { try WanConfiguration.parse(Data(json.utf8)) } throws: { e in
            guard case ModelLoadError.wrongClass(_, let got) = e else { return false }
            return got == "FluxTransformer2DModel"
        }
    }

    /// Each bad value is rejected with an error naming its field.
    @Test(arguments: [
        (#""patch_size": [2, 2]"#, "patch_size"),
        (#""patch_size": [1, 0, 2]"#, "patch_size"),
        (#""attention_head_dim": 15"#, "attention_head_dim"),
        (#""attention_head_dim": 4"#, "attention_head_dim"),
        (#""num_attention_heads": 0"#, "num_attention_heads"),
        (#""eps": -1"#, "eps"),
        (#""added_kv_proj_dim": 64"#, "added_kv_proj_dim"),
        (#""image_dim": 1280, "added_kv_proj_dim": 64"#, "added_kv_proj_dim"),
        (#""image_dim": 8, "pos_embed_seq_len": 3"#, "pos_embed_seq_len"),
        (#""image_dim": 8, "pos_embed_seq_len": 0"#, "pos_embed_seq_len"),
        (#""rope_max_seq_len": 0"#, "rope_max_seq_len"),
        // Sizes whose products would overflow Int (a trap, not an error) are refused first.
        (#""num_attention_heads": 4611686018427387904"#, "num_attention_heads"),
        (#""ffn_dim": 9223372036854775807"#, "ffn_dim"),
        (#""num_attention_heads": 8192"#, "num_attention_heads"),  // width 8192 · 128 > 2¹⁶
        (#""patch_size": [65536, 65536, 65536]"#, "patch_size"),
    ])
    func rejectsUnsupportedValues(_ field: String, _ name: String) {
        let json = "{\"_class_name\": \"WanTransformer3DModel\", \(field)}"
        #expect { try WanConfiguration.parse(Data(json.utf8)) } throws: { e in
            guard case ModelLoadError.unsupportedConfig(let f, _, _) = e else { return false }
            return f == name
        }
    }

    /// diffusers 0.42.1 ignores `qk_norm` (every WanAttention has RMS norms across heads), so any value
    /// loads and means the same model.
    @Test(arguments: [#""qk_norm": null"#, #""qk_norm": "rms_norm""#, #""qk_norm": "rms_norm_across_heads""#])
    func anyQKNormValueIsAccepted(_ field: String) throws {
        let json = "{\"_class_name\": \"WanTransformer3DModel\", \(field)}"
        let c = try WanConfiguration.parse(Data(json.utf8))
        let plain = try WanConfiguration.parse(Data(#"{"_class_name": "WanTransformer3DModel"}"#.utf8))
        #expect(c.numAttentionHeads == plain.numAttentionHeads && c.innerDim == plain.innerDim)
    }

    @Test func wrongTypeIsAMalformedConfig() {
        let json = #"{"_class_name": "WanTransformer3DModel", "num_layers": "two"}"#
        #expect { try WanConfiguration.parse(Data(json.utf8)) } throws: { e in
            guard case ModelLoadError.malformedConfig(let reason) = e else { return false }
            return reason.contains("num_layers")
        }
    }
}
