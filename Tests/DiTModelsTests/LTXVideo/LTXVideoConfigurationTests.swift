import Foundation
import Testing
@testable import DiTModels

@Suite("LTX-Video configuration")
struct LTXVideoConfigurationTests {
    static func parse(_ body: String) throws(ModelLoadError) -> LTXVideoConfiguration {
        let json = #"{"_class_name": "LTXVideoTransformer3DModel", "# + body + "}"
        return try LTXVideoConfiguration.parse(Data(json.utf8))
    }

    /// Absent keys take diffusers' constructor defaults (LTX-Video 0.9.x); `null`/0 out_channels means in_channels.
    @Test func defaultsAndNullOutChannels() throws {
        let d = try Self.parse(#""cross_attention_dim": 2048"#)
        #expect(d == LTXVideoConfiguration())
        #expect(d.innerDim == 2048 && d.numLayers == 28 && d.captionChannels == 4096 && d.ffnDim == 8192)
        #expect(!d.normElementwiseAffine && d.attentionBias && d.attentionOutBias && d.normEps == 1e-6)
        let n = try Self.parse(#""in_channels": 16, "out_channels": null, "num_attention_heads": 2, "attention_head_dim": 8, "cross_attention_dim": 16"#)
        #expect(n.outChannels == 16)
        let z = try Self.parse(#""in_channels": 16, "out_channels": 0, "num_attention_heads": 2, "attention_head_dim": 8, "cross_attention_dim": 16"#)
        #expect(z.outChannels == 16)
    }

    /// Every value diffusers cannot run is a typed error naming the field.
    @Test(arguments: [
        (#""qk_norm": "rms_norm""#, "qk_norm"),
        (#""qk_norm": null"#, "qk_norm"),
        (#""cross_attention_dim": 1024"#, "cross_attention_dim"),
        (#""activation_fn": "relu""#, "activation_fn"),
        (#""num_attention_heads": 3, "attention_head_dim": 5, "cross_attention_dim": 15"#, "attention_head_dim"),
        (#""num_layers": -1"#, "num_layers"),
        (#""in_channels": 0"#, "in_channels"),
        (#""patch_size": 0"#, "patch_size"),
        (#""norm_eps": -1"#, "norm_eps"),
        (#""num_attention_heads": 4611686018427387904"#, "num_attention_heads"),
        (#""num_attention_heads": 65536, "attention_head_dim": 65536"#, "num_attention_heads"),
    ])
    func invalidValuesNameTheField(body: String, field: String) {
        let full = body.contains("cross_attention_dim") || body.contains("num_attention_heads")
            ? body : body + #", "cross_attention_dim": 2048"#
        #expect {
            try Self.parse(full)
        } throws: { e in
            guard case let ModelLoadError.unsupportedConfig(f, _, _) = e else { return false }
            return f == field
        }
    }

    @Test func wrongClassIsRejected() {
        #expect(throws: ModelLoadError.self) {
            try LTXVideoConfiguration.parse(Data(#"{"_class_name": "WanTransformer3DModel"}"#.utf8))
        }
    }
}
