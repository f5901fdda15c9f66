import Foundation
import Testing
@testable import DiTModels

@Suite("Mochi configuration")
struct MochiConfigurationTests {
    static func parse(_ fields: String) throws -> MochiConfiguration {
        try MochiConfiguration.parse(Data("{\"_class_name\": \"MochiTransformer3DModel\"\(fields.isEmpty ? "" : ", ")\(fields)}".utf8))
    }

    /// Absent keys take diffusers' constructor defaults (Mochi-1-preview).
    @Test func defaultsAreDiffusers() throws {
        let c = try Self.parse("")
        #expect(c == MochiConfiguration())
        #expect(c.innerDim == 3072 && c.pooledProjectionDim == 1536 && c.numLayers == 48 && c.outChannels == 12)
        // diffusers' hidden widths: (4·dim·2) // 3.
        #expect(c.feedForwardInnerDim == 8192 && c.contextFeedForwardInnerDim == 4096)
        #expect(tinyMochiConfiguration().feedForwardInnerDim == 42 && tinyMochiConfiguration().contextFeedForwardInnerDim == 32)
    }

    /// The fixture's config.json (wrapped form) decodes to its values.
    @Test func fixtureConfiguration() throws {
        let c = try MochiFixture.configuration()
        #expect(c.innerDim == 32 && c.pooledProjectionDim == 16 && c.numLayers == 2 && c.textEmbedDim == 32)
        #expect(c.outChannelsSetting == nil && c.outChannels == 4 && c.outputTokenWidth == 16)
    }

    /// diffusers: `out_channels or in_channels`; null, absent and 0 all mean in_channels.
    @Test(arguments: [#""out_channels": null"#, #""out_channels": 0"#, ""])
    func outChannelsNullAbsentOrZeroMeansInChannels(_ field: String) throws {
        let c = try Self.parse(#""in_channels": 5"# + (field.isEmpty ? "" : ", \(field)"))
        #expect(c.outChannels == 5)
        #expect(try Self.parse(#""in_channels": 5, "out_channels": 3, "patch_size": 3"#).outputTokenWidth == 27)
    }

    /// qk_norm and max_sequence_length are stored by diffusers 0.42.1 and never read: any value builds
    /// the same model.
    @Test(arguments: [#""qk_norm": null"#, #""qk_norm": "layer_norm""#, #""max_sequence_length": 1"#])
    func ignoredFieldsChangeNothing(_ field: String) throws {
        var c = try Self.parse(field)
        c.qkNorm = "rms_norm"
        c.maxSequenceLength = 256
        #expect(c == MochiConfiguration())
    }

    @Test(arguments: [
        (#""attention_head_dim": 7"#, "attention_head_dim"),
        (#""text_embed_dim": 12"#, "text_embed_dim"),
        (#""activation_fn": "mish""#, "activation_fn"),
        (#""activation_fn": "relu""#, "activation_fn"),
        (#""num_layers": -1"#, "num_layers"),
        (#""num_attention_heads": 0"#, "num_attention_heads"),
        (#""pooled_projection_dim": 0"#, "pooled_projection_dim"),
        (#""out_channels": -2"#, "out_channels"),
        (#""patch_size": 0"#, "patch_size"),
        (#""time_embed_dim": 0"#, "time_embed_dim"),
        (#""num_attention_heads": 4611686018427387904"#, "num_attention_heads"),
        (#""num_attention_heads": 4096, "attention_head_dim": 4096"#, "num_attention_heads"),
        (#""patch_size": 200, "in_channels": 12"#, "patch_size"),
    ])
    func unsupportedValuesNameTheField(_ field: String, _ name: String) {
        #expect { try Self.parse(field) } throws: { e in
            guard case let ModelLoadError.unsupportedConfig(f, _, _) = e else { return false }
            return f == name
        }
    }

    @Test func otherClassesAndMalformedJSONAreRejected() {
        #expect(throws: ModelLoadError.self) {
            try MochiConfiguration.parse(Data(#"{"_class_name": "WanTransformer3DModel"}"#.utf8))
        }
        #expect(throws: ModelLoadError.self) {
            try MochiConfiguration.parse(Data(#"{"_class_name": "MochiTransformer3DModel", "num_layers": "four"}"#.utf8))
        }
    }
}
