import Foundation
import Testing
import TeaCache
import Tensors
import DiTHarness
@testable import DiTModels
import TestSupport

@Suite("Wan verify and bench")
struct WanVerifyTests {
    /// `teacache verify` on the wan21 folder: every check passes, and both records are covered.
    @Test func verifyPassesOnTheWan21Fixture() throws {
        let report = try FixtureVerifier.verify(folder: Fixtures.folder("wan21"))
        #expect(report.family == "wan21")
        for check in report.checks { #expect(check.passed, "\(check.name): \(check.measurement)") }
        let names = report.checks.map(\.name)
        for expected in ["forward modulated_input", "forward modulated_input_temb", "forward residual",
                         "sampling use_ret_steps decisions", "sampling no_ret_steps decisions",
                         "sampling use_ret_steps final cached", "sampling no_ret_steps final cached"] {
            #expect(names.contains(expected), "missing check \(expected)")
        }
    }

    /// The per-branch schedules derived from the records are the modes' schedules (spec §2.3.4).
    @Test func recordSchedulesAreTheModeSchedules() throws {
        let folder = try FixtureFolder(Fixtures.folder("wan21"))
        for record in folder.sampling.records {
            let mode = try WanFamily.mode(of: record)
            let config = try WanFamily.teaCacheConfiguration(record: record, steps: 12)
            #expect(config.schedule == mode.schedule, "\(record.name)")
            #expect(mode == (record.name == "use_ret_steps" ? .retention : .standard))
        }
    }

    /// The analytic FLOP count equals an independent count from the weight shapes: every 2-D weight
    /// `[out, in]` costs `2·out·in` per row it is applied to, plus `4·S·K·D` per attention over K keys.
    @Test func flopCountMatchesTheWeightShapes() throws {
        let c = WanConfiguration(patchSize: [1, 2, 2], numAttentionHeads: 2, attentionHeadDim: 12, inChannels: 3,
                                 outChannels: 5, textDim: 8, freqDim: 16, ffnDim: 20, numLayers: 2, ropeMaxSeqLen: 8)
        let loader = WeightLoader(randomSeed: 1)
        _ = try WanFamily.build(c, loader)
        let (b, s, l) = (2, 24, 7)
        var expected = 0.0
        for (name, w) in loader.supplied where name.hasSuffix(".weight") && w.rank >= 2 {
            let rows: Int
            if name.hasPrefix("patch_embedding") || name.hasPrefix("proj_out") || name.contains(".attn1.")
                || name.contains(".ffn.") || name.contains(".attn2.to_q") || name.contains(".attn2.to_out") {
                rows = b * s
            } else if name.contains(".attn2.to_k") || name.contains(".attn2.to_v") || name.contains("text_embedder") {
                rows = b * l
            } else if name.contains("time_embedder") || name.contains("time_proj") {
                rows = b
            } else {
                Issue.record("unclassified weight \(name)"); continue
            }
            expected += 2 * Double(rows) * Double(w.count)
        }
        expected += Double(c.numLayers) * 4 * Double(b * s * (s + l) * c.innerDim)
        #expect(c.forwardFLOPs(batch: b, videoTokens: s, textTokens: l) == expected)
        #expect(loader.parameterCount == loader.supplied.values.map(\.count).reduce(0, +))
    }

    @Test func benchmarkFileBuildsAWanForward() throws {
        let json = """
        {"class": "WanTransformer3DModel", "config": {"patch_size": [1, 2, 2], "num_attention_heads": 2,
         "attention_head_dim": 12, "in_channels": 3, "out_channels": 3, "text_dim": 8, "freq_dim": 16,
         "ffn_dim": 20, "num_layers": 1}, "inputs": {"batch": 1, "latent_frames": 2, "latent_height": 4,
         "latent_width": 4, "text_tokens": 5}}
        """
        let bench = try ForwardBenchmark.make(data: Data(json.utf8))
        #expect(bench.summary.contains("8 video + 5 text tokens"))
        #expect(bench.flops > 0 && bench.weightBytes > 0)
        try bench.run()
        let missing = json.replacingOccurrences(of: "\"text_tokens\": 5", with: "\"text_tokenz\": 5")
        #expect(throws: ModelLoadError.self) { try ForwardBenchmark.make(data: Data(missing.utf8)) }
        // Sizes whose token or element counts would overflow Int are a typed error, not a trap.
        let tooLarge = [
            [("\"latent_height\": 4", "\"latent_height\": 4611686018427387904")],              // one size beyond 2¹⁶
            [("\"batch\": 1", "\"batch\": 65536"), ("\"text_tokens\": 5", "\"text_tokens\": 65536")],  // 2³⁵ text values
        ]
        for edits in tooLarge {
            let huge = edits.reduce(json) { $0.replacingOccurrences(of: $1.0, with: $1.1) }
            #expect(huge != json)
            #expect {
                try ForwardBenchmark.make(data: Data(huge.utf8))
            } throws: { e in
                guard case ModelLoadError.malformedConfig = e else { return false }
                return true
            }
        }
    }
}
