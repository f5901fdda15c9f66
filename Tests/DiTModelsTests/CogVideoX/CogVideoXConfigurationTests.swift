import Foundation
import Testing
@testable import DiTModels
import TestSupport

@Suite("CogVideoX configuration")
struct CogVideoXConfigurationTests {
    static func parse(_ fields: String) throws -> CogVideoXConfiguration {
        try CogVideoXConfiguration.parse(Data("{\"_class_name\": \"CogVideoXTransformer3DModel\"\(fields.isEmpty ? "" : ", ")\(fields)}".utf8))
    }

    static func rejects(_ fields: String, field expected: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(sourceLocation: sourceLocation) { try parse(fields) } throws: { e in
            guard case let ModelLoadError.unsupportedConfig(field, _, _) = e else { return false }
            return field == expected
        }
    }

    /// Absent keys take diffusers' constructor defaults (the CogVideoX-2b sizes).
    @Test func defaultsAreDiffusers() throws {
        let c = try Self.parse("")
        #expect(c == CogVideoXConfiguration())
        #expect(c.numAttentionHeads == 30 && c.attentionHeadDim == 64 && c.innerDim == 1920)
        #expect(c.patchSizeT == nil && !c.useRotaryPositionalEmbeddings && c.patchBias && c.maxTextSeqLength == 226)
        #expect(c.sampleLatentFrames == 13 && c.usesPositionalTable && c.temporalPatch == 1)
        #expect(c.outputTokenWidth == 16 * 4 && c.patchWidth == 16 * 4)
    }

    /// The public fixture's config (1.5 layout) and the benchmark file decode as written.
    @Test func fixtureAndBenchmarkConfigs() throws {
        let c = try CogVideoXConfiguration.load(Fixtures.folder("cogvideox").appendingPathComponent("config.json"))
        #expect(c.patchSizeT == 2 && c.useRotaryPositionalEmbeddings && !c.patchBias && c.ofsEmbedDim == nil)
        #expect(c.innerDim == 32 && c.outputTokenWidth == 32 && !c.usesPositionalTable)
        #expect(c.rotaryAxesDims == [4, 6, 6])
        #expect(CogVideoXFamily.benchmarkDefault.configuration.innerDim == 512)
    }

    /// diffusers' `if ofs_embed_dim:` makes 0 mean none; `null` keeps the default meaning.
    @Test func ofsZeroMeansNone() throws {
        #expect(try Self.parse(#""ofs_embed_dim": 0"#).ofsEmbedDim == nil)
        #expect(try Self.parse(#""ofs_embed_dim": null"#).ofsEmbedDim == nil)
        #expect(try Self.parse(#""ofs_embed_dim": 512"#).ofsEmbedDim == 512)
        #expect(try Self.parse(#""ofs_embed_dim": 1"#).ofsEmbedDim == 1)  // broadcast onto emb
    }

    /// Values diffusers cannot run (it raises at construction or at every forward), and values the
    /// pipelines' rotary table cannot be built for, are typed errors naming the field.
    @Test func invalidValuesNameTheirField() {
        Self.rejects(#""out_channels": null"#, field: "out_channels")
        Self.rejects(#""use_learned_positional_embeddings": true"#, field: "use_learned_positional_embeddings")
        Self.rejects(#""patch_size_t": 2"#, field: "patch_size_t")  // sincos table with a temporal patch
        Self.rejects(#""patch_size_t": 0, "use_rotary_positional_embeddings": true"#, field: "patch_size_t")
        Self.rejects(#""activation_fn": "relu""#, field: "activation_fn")
        Self.rejects(#""timestep_activation_fn": "tanh""#, field: "timestep_activation_fn")
        Self.rejects(#""attention_head_dim": 24, "use_rotary_positional_embeddings": true"#, field: "attention_head_dim")
        Self.rejects(#""num_attention_heads": 3, "attention_head_dim": 20"#, field: "attention_head_dim")  // sincos width 60
        Self.rejects(#""ofs_embed_dim": 64"#, field: "ofs_embed_dim")
        Self.rejects(#""dropout": 1.5"#, field: "dropout")
        Self.rejects(#""norm_eps": -1"#, field: "norm_eps")
        Self.rejects(#""num_layers": -1"#, field: "num_layers")
        Self.rejects(#""spatial_interpolation_scale": 0"#, field: "spatial_interpolation_scale")
        Self.rejects(#""temporal_compression_ratio": 0"#, field: "temporal_compression_ratio")
        Self.rejects(#""sample_width": 1, "use_rotary_positional_embeddings": true"#, field: "sample_width")
        Self.rejects(#""freq_shift": 960"#, field: "freq_shift")  // half the width: the sinusoid divides by 0
        // Sizes whose products would overflow are rejected before any is formed.
        Self.rejects(#""num_attention_heads": 4611686018427387904"#, field: "num_attention_heads")
        Self.rejects(#""num_attention_heads": 65536, "attention_head_dim": 65536"#, field: "num_attention_heads")
        Self.rejects(#""in_channels": 65536, "patch_size": 65536"#, field: "patch_size")
    }

    /// Values diffusers accepts are accepted: 1.5 with rotary, a temporal patch of 1 with the sincos
    /// table, the learned table with rotary, a wrong-class config is a class error.
    @Test func acceptedLayouts() throws {
        _ = try Self.parse(#""patch_size_t": 2, "use_rotary_positional_embeddings": true, "patch_bias": false"#)
        _ = try Self.parse(#""patch_size_t": 1"#)
        _ = try Self.parse(#""use_rotary_positional_embeddings": true, "use_learned_positional_embeddings": true"#)
        _ = try Self.parse(#""dropout": 0.1, "timestep_activation_fn": "swish", "activation_fn": "geglu-approximate""#)
        #expect {
            try CogVideoXConfiguration.parse(Data(#"{"_class_name": "ConsisIDTransformer3DModel"}"#.utf8))
        } throws: { e in
            guard case ModelLoadError.wrongClass = e else { return false }
            return true
        }
        #expect(throws: ModelLoadError.self) { try Self.parse(#""num_layers": "four""#) }
    }
}
