import Foundation
import Testing
import TeaCache
import Tensors
import DiTHarness
@testable import DiTModels
import TestSupport

@Suite("Lumina verify and bench")
struct LuminaVerifyTests {
    /// `teacache verify` on both public folders: every check passes and the record's checks are there.
    @Test(arguments: ["lumina_next", "lumina2"])
    func verifyPassesOnThePublicFixture(_ name: String) throws {
        let report = try FixtureVerifier.verify(folder: Fixtures.folder(name))
        #expect(report.family == name)
        for check in report.checks { #expect(check.passed, "\(name) \(check.name): \(check.measurement)") }
        let names = report.checks.map(\.name)
        for expected in ["forward output", "forward modulated_input", "forward residual", "sampling default decisions",
                         "sampling default final cached", "sampling final uncached"] {
            #expect(names.contains(expected), "\(name): missing check \(expected)")
        }
    }

    /// The record conventions: lumina2 records replay with the shared counter and `max_seq_len` keys,
    /// lumina_next records with the standard counter; the velocity takes the first `in_channels` with
    /// `learn_sigma`.
    @Test func recordConventions() throws {
        let folder = try FixtureFolder(Fixtures.folder("lumina2"))
        let record = try #require(folder.sampling.records.first)
        #expect(try Lumina2Family.teaCacheConfiguration(record: record, steps: 12).schedule == .lumina2Reference)
        #expect(throws: VerifyError.self) { try Lumina2Family.teaCacheConfiguration(record: record, steps: 10) }
        #expect(Lumina2Family.recordedCacheKey(record.calls[1]) == BranchKey(19))
        let model = try Lumina2Family.load(try Lumina2Configuration.parse(folder.config, className: folder.className),
                                           weightsAt: folder.weightsURL)
        #expect(try Lumina2Family.model(model, for: record).teaCacheKeying == .sequenceLength)
        #expect(model.teaCacheKeying == .branch)
        let next = try FixtureFolder(Fixtures.folder("lumina_next"))
        let c = try LuminaNextConfiguration.parse(next.config, className: next.className)
        #expect(LuminaNextFamily.velocity(c) == VelocityConvention(sign: -1, channels: .first(count: 4, axis: 1)))
        var plain = c
        plain.learnSigma = false
        #expect(LuminaNextFamily.velocity(plain) == .negated)
        #expect(try LuminaNextFamily.teaCacheConfiguration(record: try #require(next.sampling.records.first), steps: 12).schedule == .standard)
    }

    /// Every 2-D weight `[out, in]` costs `2·out·in` per row it is applied to, plus `4·Sq·Sk·q` per
    /// attention: the analytic FLOP counts equal this count from the weight shapes of a random model.
    @Test func flopCountsMatchTheWeightShapes() throws {
        var n = LuminaNextConfiguration()
        (n.hiddenSize, n.numAttentionHeads, n.numKVHeads, n.numLayers, n.crossAttentionDim, n.multipleOf, n.inChannels) = (24, 2, 1, 2, 10, 8, 3)
        let (b, s, l) = (2, 12, 5)
        let loader = WeightLoader(randomSeed: 1)
        _ = try LuminaNextFamily.build(n, loader)
        var expected = LuminaTestSupport.weightFLOPs(loader) { name in
            if name.contains("attn2.to_k") || name.contains("attn2.to_v") { return b * l }
            if name.contains("time_caption_embed") || name.contains("norm1.linear") || name.contains("norm_out.linear_1") { return b }
            return b * s
        }
        let q = Double(n.heads.queryWidth)
        expected += Double(n.numLayers) * (4 * Double(b * s * s) * q + 4 * Double(b * s * l) * q)
        #expect(n.forwardFLOPs(batch: b, imageTokens: s, textTokens: l) == expected)

        var c = Lumina2Configuration()
        (c.hiddenSize, c.numAttentionHeads, c.numKVHeads, c.numLayers, c.numRefinerLayers) = (24, 2, 1, 2, 1)
        (c.axesDimRope, c.capFeatDim, c.multipleOf, c.inChannels, c.outChannelsSetting) = ([4, 4, 4], 10, 8, 3, 5)
        let loader2 = WeightLoader(randomSeed: 2)
        _ = try Lumina2Family.build(c, loader2)
        var expected2 = LuminaTestSupport.weightFLOPs(loader2) { name in
            if name.hasPrefix("context_refiner") || name.contains("caption_embedder") { return b * l }
            if name.contains("timestep_embedder") || name.contains("norm1.linear") || name.contains("norm_out.linear_1") { return b }
            if name.hasPrefix("layers") { return b * (s + l) }
            return b * s   // x_embedder, noise_refiner, norm_out.linear_2
        }
        let q2 = Double(c.heads.queryWidth)
        expected2 += 4 * q2 * Double(b) * (Double(c.numRefinerLayers) * Double(l * l + s * s) + Double(c.numLayers * (s + l) * (s + l)))
        #expect(c.forwardFLOPs(batch: b, imageTokens: s, textTokens: l) == expected2)
    }

    /// A benchmark file builds and runs a forward of each family; the benchmark shapes' FLOP counts are
    /// the (40.3 and 73.4 GFLOP).
    @Test func benchmarkFilesBuildForwards() throws {
        let next = """
        {"class": "LuminaNextDiT2DModel", "config": {"sample_size": 8, "hidden_size": 32, "num_layers": 1,
         "num_attention_heads": 2, "num_kv_heads": 1, "multiple_of": 16, "cross_attention_dim": 16},
         "inputs": {"batch": 1, "latent_height": 8, "latent_width": 8, "text_tokens": 5}}
        """
        let l2 = """
        {"class": "Lumina2Transformer2DModel", "config": {"in_channels": 4, "hidden_size": 32, "num_layers": 1,
         "num_refiner_layers": 1, "num_attention_heads": 2, "num_kv_heads": 1, "multiple_of": 16,
         "axes_dim_rope": [4, 6, 6], "cap_feat_dim": 16}, "inputs": {"batch": 1, "latent_height": 8, "latent_width": 8,
         "text_tokens": 5}}
        """
        for (json, summary) in [(next, "16 image + 5 text tokens"), (l2, "16 image + 5 text tokens")] {
            let bench = try ForwardBenchmark.make(data: Data(json.utf8))
            #expect(bench.summary.contains(summary), "\(bench.summary)")
            #expect(bench.flops > 0 && bench.weightBytes > 0)
            try bench.run()
        }
        let nc = LuminaNextFamily.benchmarkDefault, lc = Lumina2Family.benchmarkDefault
        #expect(abs(try LuminaNextFamily.cost(nc.configuration, sizes: nc.inputs).flops / 1e9 - 40.3) < 0.05)
        #expect(abs(try Lumina2Family.cost(lc.configuration, sizes: lc.inputs).flops / 1e9 - 73.4) < 0.05)
    }
}
