import Foundation
import Testing
import Tensors
@testable import DiTModels
import TestSupport

/// Configuration parsing and weight-loading error paths of the FLUX model.
@Suite struct FluxLoadingTests {
    static let fixtureConfig = """
    {"class": "FluxTransformer2DModel", "config": {"patch_size": 1, "in_channels": 16, "out_channels": null,
     "num_layers": 1, "num_single_layers": 1, "attention_head_dim": 16, "num_attention_heads": 2,
     "joint_attention_dim": 32, "pooled_projection_dim": 32, "guidance_embeds": true, "axes_dims_rope": [4, 6, 6],
     "_use_default_values": ["out_channels"]}}
    """

    static func config(_ edit: (inout [String: Any]) -> Void) throws -> Data {
        var outer = try #require(JSONSerialization.jsonObject(with: Data(fixtureConfig.utf8)) as? [String: Any])
        var inner = try #require(outer["config"] as? [String: Any])
        edit(&inner)
        outer["config"] = inner
        return try JSONSerialization.data(withJSONObject: outer)
    }

    @Test func parsesWrappedAndPlainConfigs() throws {
        let c = try FluxConfiguration.parse(Data(Self.fixtureConfig.utf8))
        #expect(c.innerDim == 32 && c.outChannels == 16 && c.guidanceEmbeds && c.axesDimsRope == [4, 6, 6])
        let plain = #"{"_class_name": "FluxTransformer2DModel", "in_channels": 8, "out_channels": 4, "num_layers": 0,"#
            + #" "num_single_layers": 2, "attention_head_dim": 8, "num_attention_heads": 1, "axes_dims_rope": [2, 2, 4]}"#
        let p = try FluxConfiguration.parse(Data(plain.utf8))
        #expect(p.outChannels == 4 && p.numLayers == 0 && p.jointAttentionDim == 4096 && !p.guidanceEmbeds)
    }

    @Test func rejectsWrongClassAndMalformedConfig() throws {
        let wrong = #"{"class": "WanTransformer3DModel", "config": {}}"#
        #expect {
            try FluxConfiguration.parse(Data(wrong.utf8))
        } throws: { e in
            guard case ModelLoadError.wrongClass(_, got: "WanTransformer3DModel") = e else { return false }
            return true
        }
        for bad in ["{", "[1, 2]", #"{"class": "FluxTransformer2DModel", "config": {"num_layers": "two"}}"#] {
            #expect {
                try FluxConfiguration.parse(Data(bad.utf8))
            } throws: { e in
                guard case ModelLoadError.malformedConfig = e else { return false }
                return true
            }
        }
    }

    @Test(arguments: [
        ("axes_dims_rope", "[4, 6, 4]"),      // sums to 14, not attention_head_dim 16
        ("axes_dims_rope", "[5, 5, 6]"),      // odd rotary dimensions
        ("num_attention_heads", "0"),
        ("in_channels", "-3"),
        ("num_layers", "-1"),
        ("patch_size", "0"),
        // Sizes whose products would overflow Int (a trap, not an error) are refused first.
        ("num_attention_heads", "4611686018427387904"),
        ("axes_dims_rope", "[4611686018427387904, 4611686018427387904]"),
        ("num_attention_heads", "8192"),        // width 8192 · 16 = 131072 > SizeLimits.maximumExtent
        ("patch_size", "1024"),                 // output width 1024² · 16 > SizeLimits.maximumExtent
    ])
    func rejectsUnsupportedValues(field: String, json: String) throws {
        let value = try JSONSerialization.jsonObject(with: Data(json.utf8), options: .fragmentsAllowed)
        let data = try Self.config { $0[field] = value }
        #expect {
            try FluxConfiguration.parse(data)
        } throws: { e in
            guard case let ModelLoadError.unsupportedConfig(f, _, _) = e else { return false }
            return f == field
        }
    }

    @Test func listsEveryWeightProblemTogether() throws {
        let config = try FluxConfiguration.parse(Data(Self.fixtureConfig.utf8))
        var weights = try Fixtures.tensors("flux", "model.safetensors")
        weights["x_embedder.bias"] = nil
        weights["single_transformer_blocks.0.attn.norm_k.weight"] = nil
        weights["transformer_blocks.0.extra.weight"] = try Tensor(zeros: [3])
        weights["proj_out.weight"] = try Tensor(zeros: [16, 33])
        #expect {
            try FluxFamily.load(config, tensors: weights)
        } throws: { e in
            guard case let ModelLoadError.weightMismatch(missing, unexpected, misshaped) = e else { return false }
            return Set(missing) == ["x_embedder.bias", "single_transformer_blocks.0.attn.norm_k.weight"]
                && unexpected == ["transformer_blocks.0.extra.weight"]
                && misshaped == [.init(name: "proj_out.weight", expected: [16, 32], found: [16, 33])]
        }
    }

    @Test func guidanceWeightsFollowTheConfiguration() throws {
        // The flux weights hold a guidance embedder; a config without guidance must reject them as unexpected.
        let data = try Self.config { $0["guidance_embeds"] = false }
        let config = try FluxConfiguration.parse(data)
        #expect {
            try FluxFamily.load(config, tensors: Fixtures.tensors("flux", "model.safetensors"))
        } throws: { e in
            guard case let ModelLoadError.weightMismatch(missing, unexpected, misshaped) = e else { return false }
            return missing.isEmpty && misshaped.isEmpty && unexpected.count == 4
                && unexpected.allSatisfy { $0.hasPrefix("time_text_embed.guidance_embedder.") }
        }
    }
}
