import Foundation
import Testing
import Tensors
@testable import DiTModels
import TestSupport

/// Both configurations: diffusers' defaults and `null` semantics, every rejected value as a typed error
/// naming its field, and configurations that disagree with their weights.
@Suite struct LuminaConfigurationTests {
    static func next(_ json: String) throws -> LuminaNextConfiguration {
        try LuminaNextConfiguration.parse(Data(#"{"class": "LuminaNextDiT2DModel", "config": {\#(json)}}"#.utf8))
    }

    static func lumina2(_ json: String) throws -> Lumina2Configuration {
        try Lumina2Configuration.parse(Data(#"{"class": "Lumina2Transformer2DModel", "config": {\#(json)}}"#.utf8))
    }

    /// The defaults are diffusers 0.42.1's constructor's; Lumina-Next's default `num_kv_heads: None` with
    /// `qk_norm: True` cannot be built by diffusers (its key norm multiplies by None) and is rejected.
    @Test func defaultsAreDiffusers() throws {
        let d = LuminaNextConfiguration()
        #expect((d.sampleSize, d.patchSize, d.inChannels, d.hiddenSize, d.numLayers, d.numAttentionHeads) == (128, 2, 4, 2304, 32, 32))
        #expect(d.numKVHeads == nil && d.multipleOf == 256 && d.ffnDimMultiplier == nil && d.normEps == 1e-5)
        #expect(d.learnSigma && d.qkNorm && d.crossAttentionDim == 2048 && d.scalingFactor == 1)
        #expect(throws: ModelLoadError.self) { try Self.next("") }
        let n = try Self.next(#""num_kv_heads": 8"#)
        #expect(n.kvHeads == 8 && n.headDim == 72 && n.outChannels == 8 && n.ffnInnerDim == 6144 && n.conditioningDim == 1024)
        let l = try Self.lumina2("")
        #expect((l.patchSize, l.inChannels, l.outChannels, l.hiddenSize, l.numLayers, l.numRefinerLayers) == (2, 16, 16, 2304, 26, 2))
        #expect(l.numAttentionHeads == 24 && l.kvHeads == 8 && l.axesDimRope == [32, 32, 32] && l.axesLens == [300, 512, 512])
        #expect(l.capFeatDim == 1024 && l.headDim == 96 && l.ffnInnerDim == 9216)
    }

    /// `null` means None: `learn_sigma`/`qk_norm` false, `num_kv_heads` one per head, `out_channels` the
    /// input channels; fields diffusers cannot build with None are a malformed config.
    @Test func nullMeansNone() throws {
        let n = try Self.next(#""learn_sigma": null, "qk_norm": null, "num_kv_heads": null, "hidden_size": 64, "num_attention_heads": 4, "sample_size": null"#)
        #expect(!n.learnSigma && !n.qkNorm && n.kvHeads == 4 && n.outChannels == 4 && n.sampleSize == nil)
        let l = try Self.lumina2(#""out_channels": null, "num_kv_heads": null, "hidden_size": 64, "num_attention_heads": 4, "axes_dim_rope": [4, 6, 6]"#)
        #expect(l.outChannels == 16 && l.kvHeads == 4)
        #expect(try Self.lumina2(#""out_channels": 0"#).outChannels == 16)
        for field in ["patch_size", "hidden_size", "multiple_of", "norm_eps"] {
            #expect(throws: ModelLoadError.self, "\(field)") { try Self.next(#""num_kv_heads": 8, "\#(field)": null"#) }
            #expect(throws: ModelLoadError.self, "\(field)") { try Self.lumina2(#""\#(field)": null"#) }
        }
    }

    static func field(_ e: any Error) -> String? {
        guard case let ModelLoadError.unsupportedConfig(field, _, _)? = e as? ModelLoadError else { return nil }
        return field
    }

    @Test(arguments: [
        (#""num_kv_heads": 3"#, "num_kv_heads"),                       // 32 heads not a multiple of 3
        (#""num_kv_heads": 64"#, "num_kv_heads"),
        (#""num_kv_heads": 8, "hidden_size": 2240"#, "num_attention_heads"),   // head dim 70: not a multiple of 4
        (#""num_kv_heads": 8, "patch_size": 0"#, "patch_size"),
        (#""num_kv_heads": 8, "num_layers": -1"#, "num_layers"),
        (#""num_kv_heads": 8, "multiple_of": 0"#, "multiple_of"),
        (#""num_kv_heads": 8, "ffn_dim_multiplier": -2"#, "ffn_dim_multiplier"),
        (#""num_kv_heads": 8, "ffn_dim_multiplier": 1e9"#, "ffn_dim_multiplier"),
        (#""num_kv_heads": 8, "norm_eps": 0"#, "norm_eps"),
        (#""num_kv_heads": 8, "hidden_size": 4611686018427387904"#, "hidden_size"),
        (#""num_kv_heads": 8, "patch_size": 60000"#, "patch_size"),
        (#""num_kv_heads": 8, "cross_attention_dim": -4"#, "cross_attention_dim"),
    ])
    func luminaNextRejects(json: String, field: String) {
        #expect { try Self.next(json) } throws: { Self.field($0) == field }
    }

    @Test(arguments: [
        (#""num_kv_heads": 5"#, "num_kv_heads"),
        (#""axes_dim_rope": [32, 32, 30]"#, "axes_dim_rope"),             // does not add up to 96
        (#""axes_dim_rope": [31, 33, 32]"#, "axes_dim_rope"),             // odd
        (#""axes_dim_rope": [24, 24, 24, 24]"#, "axes_dim_rope"),         // four axes
        (#""axes_dim_rope": [48, 48], "axes_lens": [300]"#, "axes_lens"),
        (#""axes_lens": [300, 0, 512]"#, "axes_lens"),
        (#""num_refiner_layers": -1"#, "num_refiner_layers"),
        (#""cap_feat_dim": 0"#, "cap_feat_dim"),
        (#""in_channels": 70000"#, "in_channels"),
        (#""ffn_dim_multiplier": 1e300"#, "ffn_dim_multiplier"),
        (#""num_attention_heads": 4000"#, "num_attention_heads"),          // head dim 0
    ])
    func lumina2Rejects(json: String, field: String) {
        #expect { try Self.lumina2(json) } throws: { Self.field($0) == field }
    }

    @Test func wrongClassAndTypeAreTyped() {
        #expect(throws: ModelLoadError.self) {
            try LuminaNextConfiguration.parse(Data(#"{"class": "Lumina2Transformer2DModel", "config": {}}"#.utf8))
        }
        #expect(throws: ModelLoadError.self) { try Self.lumina2(#""axes_dim_rope": "32""#) }
    }

    /// A configuration that disagrees with the weights lists every missing, unexpected and mis-shaped
    /// tensor at once (here: one kv head less → every key/value projection and norm mis-shaped).
    @Test func weightsThatDisagreeAreListedTogether() throws {
        for (family, kvKey) in [("lumina_next", "num_kv_heads"), ("lumina2", "num_kv_heads")] {
            let folder = Fixtures.folder(family)
            var json = try JSONSerialization.jsonObject(with: Data(contentsOf: folder.appendingPathComponent("config.json"))) as! [String: Any]
            var cfg = json["config"] as! [String: Any]
            cfg[kvKey] = 2
            json["config"] = cfg
            let data = try JSONSerialization.data(withJSONObject: json)
            let weights = folder.appendingPathComponent("model.safetensors")
            #expect {
                if family == "lumina_next" { _ = try LuminaNextFamily.load(try LuminaNextConfiguration.parse(data), weightsAt: weights) }
                else { _ = try Lumina2Family.load(try Lumina2Configuration.parse(data), weightsAt: weights) }
            } throws: { e in
                guard case let ModelLoadError.weightMismatch(missing, unexpected, misshaped)? = e as? ModelLoadError else { return false }
                return missing.isEmpty && unexpected.isEmpty && misshaped.count >= 4 && misshaped.allSatisfy { $0.name.contains("attn") }
            }
        }
        var tensors = try Fixtures.tensors("lumina2", "model.safetensors")
        tensors["layers.0.attn.norm_q.weight"] = nil
        tensors["pad_token"] = try Tensor(zeros: [32])
        let c = try Lumina2Configuration.load(Fixtures.folder("lumina2").appendingPathComponent("config.json"))
        #expect { try Lumina2Family.load(c, tensors: tensors) } throws: { e in
            guard case let ModelLoadError.weightMismatch(missing, unexpected, _)? = e as? ModelLoadError else { return false }
            return missing == ["layers.0.attn.norm_q.weight"] && unexpected == ["pad_token"]
        }
    }
}
