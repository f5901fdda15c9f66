import Foundation
import Testing
import TeaCache
import Tensors
import DiTHarness
@testable import DiTModels
import TestSupport

@Suite("HunyuanVideo verify and bench")
struct HunyuanVideoVerifyTests {
    /// `teacache verify` on the hunyuan_video folder: every check passes, the record's decisions included.
    @Test func verifyPassesOnTheHunyuanVideoFixture() throws {
        let report = try FixtureVerifier.verify(folder: Fixtures.folder("hunyuan_video"))
        #expect(report.family == "hunyuan_video")
        for check in report.checks { #expect(check.passed, "\(check.name): \(check.measurement)") }
        let names = report.checks.map(\.name)
        for expected in ["forward output", "forward modulated_input", "forward residual", "sampling final uncached",
                         "sampling default decisions", "sampling default final cached"] {
            #expect(names.contains(expected), "missing check \(expected)")
        }
    }

    /// The analytic FLOP count equals an independent count from the weight shapes: every weight of rank ≥ 2
    /// costs `2·count` per row it is applied to (image tokens, text tokens, the joint sequence or one row
    /// per sample), plus `4·T²·D` per joint attention and `4·L²·D` per refiner attention.
    @Test(arguments: [nil, "token_replace"])
    func flopCountMatchesTheWeightShapes(_ condition: String?) throws {
        var c = HunyuanVideoTestConfig.tiny(imageCondition: condition, layers: 2, singleLayers: 3, refinerLayers: 2)
        c.outChannels = 5
        let loader = WeightLoader(randomSeed: 1)
        _ = try HunyuanVideoFamily.build(c, loader)
        let (b, s, l) = (2, 24, 7)
        var expected = 0.0
        for (name, w) in loader.supplied where name.hasSuffix(".weight") && w.rank >= 2 {
            var rows: Int
            if name.hasPrefix("x_embedder") || name.hasPrefix("proj_out") {
                rows = b * s
            } else if name.hasPrefix("single_transformer_blocks") {
                rows = name.contains(".norm.") ? b : b * (s + l)
            } else if name.hasPrefix("transformer_blocks") {
                if name.contains(".norm1") { rows = b }
                else if name.contains("add_") || name.contains("ff_context") { rows = b * l }
                else { rows = b * s }
            } else if name.hasPrefix("context_embedder.token_refiner") {
                rows = name.contains("norm_out") ? b : b * l
            } else if name.hasPrefix("context_embedder.proj_in") {
                rows = b * l
            } else if name.contains("time_text_embed") || name.hasPrefix("norm_out") {
                rows = b
            } else {
                Issue.record("unclassified weight \(name)"); continue
            }
            // Token-replace models apply the timestep MLP and the image-stream adaLN projections twice.
            if condition != nil && (name.hasPrefix("time_text_embed.timestep_embedder") || name.contains(".norm1.")
                                    || (name.hasPrefix("single") && name.contains(".norm."))) {
                rows *= 2
            }
            expected += 2 * Double(rows) * Double(w.count)
        }
        let d = Double(c.innerDim)
        expected += Double(c.numLayers + c.numSingleLayers) * 4 * Double(b * (s + l) * (s + l)) * d
        expected += Double(c.numRefinerLayers) * 4 * Double(b * l * l) * d
        let counted = c.forwardFLOPs(batch: b, imageTokens: s, textTokens: l)
        #expect(abs(counted - expected) <= 1e-9 * expected, "\(counted) vs \(expected)")
        #expect(loader.parameterCount == loader.supplied.values.map(\.count).reduce(0, +))
    }

    @Test func benchmarkFileBuildsAHunyuanVideoForward() throws {
        let json = """
        {"class": "HunyuanVideoTransformer3DModel", "config": {"in_channels": 3, "out_channels": 3,
         "num_attention_heads": 2, "attention_head_dim": 8, "num_layers": 1, "num_single_layers": 1,
         "num_refiner_layers": 1, "mlp_ratio": 2.0, "text_embed_dim": 6, "pooled_projection_dim": 5,
         "rope_axes_dim": [2, 2, 4]}, "inputs": {"batch": 1, "latent_frames": 2, "latent_height": 4,
         "latent_width": 4, "text_tokens": 5, "valid_text_tokens": 3}}
        """
        let bench = try ForwardBenchmark.make(data: Data(json.utf8))
        #expect(bench.summary.contains("8 video + 5 text tokens"))
        #expect(bench.flops > 0 && bench.weightBytes > 0)
        try bench.run()
        let tooMany = json.replacingOccurrences(of: "\"valid_text_tokens\": 3", with: "\"valid_text_tokens\": 6")
        #expect(throws: ModelLoadError.self) { try ForwardBenchmark.make(data: Data(tooMany.utf8)) }
        let missing = json.replacingOccurrences(of: "\"text_tokens\": 5", with: "\"text_tokenz\": 5")
        #expect(throws: ModelLoadError.self) { try ForwardBenchmark.make(data: Data(missing.utf8)) }
        let tooLarge = [
            [("\"latent_height\": 4", "\"latent_height\": 4611686018427387904")],
            [("\"latent_width\": 4", "\"latent_width\": 65536"), ("\"latent_height\": 4", "\"latent_height\": 65536")],
            [("\"latent_width\": 4", "\"latent_width\": 5")],
        ]
        for edits in tooLarge {
            let bad = edits.reduce(json) { $0.replacingOccurrences(of: $1.0, with: $1.1) }
            #expect(bad != json)
            #expect {
                try ForwardBenchmark.make(data: Data(bad.utf8))
            } throws: { e in
                guard case ModelLoadError.malformedConfig = e else { return false }
                return true
            }
        }
    }

    /// A sampling conditioning that carries `latent_condition` (latent_concat I2V) is concatenated after
    /// the latent on the channel axis.
    @Test func latentConditionIsConcatenatedAfterTheLatent() throws {
        var c = HunyuanVideoTestConfig.tiny(imageCondition: "latent_concat")
        c.inChannels = 7
        let base = try HunyuanVideoTestConfig.input(c, batch: 1, valid: [4])
        let latent = randomTensor([1, 3, 2, 4, 4], seed: 5), extra = randomTensor([1, 4, 2, 4, 4], seed: 6)
        let args = FixtureArguments(
            tensors: ["encoder_hidden_states": base.encoderHiddenStates, "encoder_attention_mask": base.encoderAttentionMask,
                      "pooled_projections": base.pooledProjections, "guidance": try #require(base.guidance),
                      "latent_condition": extra],
            nonTensor: [:], source: "test")
        let x = try HunyuanVideoFamily.samplingInput(latent: latent, timestep: 500, conditioning: args, configuration: c)
        #expect(x.hiddenStates == (try Tensor.concatenate([latent, extra], axis: 1)))
        #expect(x.timestep.scalars == [500])
    }
}
