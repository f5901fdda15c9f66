import Foundation
import Testing
import TeaCache
import Tensors
import DiTHarness
@testable import DiTModels
import TestSupport

@Suite("Mochi verify and bench")
struct MochiVerifyTests {
    /// `teacache verify` on the public mochi folder: every check passes, and the forward, decision and
    /// final-latent checks are all among them (one cached stream: no `residual_encoder`).
    @Test func verifyPassesOnTheMochiFixture() throws {
        let report = try FixtureVerifier.verify(folder: Fixtures.folder("mochi"))
        let failed = report.checks.filter { !$0.passed }.map { "\($0.name): \($0.measurement)" }
        #expect(report.family == "mochi" && report.passed && failed.isEmpty, "\(failed)")
        let required: Set = ["forward output", "forward modulated_input", "forward residual", "sampling final uncached",
                             "sampling default decisions", "sampling default final cached"]
        #expect(required.isSubset(of: Set(report.checks.map(\.name))), "\(report.checks.map(\.name))")
        #expect(!report.checks.contains { $0.name.contains("residual_encoder") })
    }

    /// The family's conventions are the fixture's: (1 − σ)·1000, v = −output, the TeaCache4Mochi preset.
    @Test func conventionsAndPreset() throws {
        #expect(MochiFamily.timestepConvention.timestep(sigma: 0.625) == 375)
        #expect(MochiFamily.velocity(MochiConfiguration()) == .negated)
        #expect(MochiFamily.presets.map(\.name) == ["mochi"])
        #expect(MochiFamily.defaultPreset.defaultThreshold == 0.09)
        #expect(!TeaCachePreset.unportedModels.contains { $0.name == "mochi" })
        #expect(DiTFamilies.preset(named: "mochi") != nil)
        #expect(try DiTFamilies.family(forClass: "MochiTransformer3DModel") == MochiFamily.self)
    }

    /// The analytic FLOP count equals an independent count from the weight shapes: every 2-D weight
    /// `[out, in]` costs `2·out·in` per row it is applied to, plus `4·Sq·K·D` per attention of Sq queries
    /// over K keys (the pool's 1-query attention is not counted).
    @Test(arguments: ["swiglu", "gelu-approximate", "geglu-approximate"])
    func flopCountMatchesTheWeightShapes(_ activation: String) throws {
        var c = tinyMochiConfiguration(layers: 3)
        c.activationFn = activation
        let loader = WeightLoader(randomSeed: 1)
        _ = try MochiFamily.build(c, loader)
        let (b, s, l) = (2, 24, 7)
        var expected = 0.0
        for (name, w) in loader.supplied where name.hasSuffix(".weight") && w.rank >= 2 {
            let rows: Int
            if name == "time_embed.pooler.to_kv.weight" {
                rows = b * (l + 1)
            } else if name.hasPrefix("time_embed.caption_proj") {
                rows = b * l
            } else if name.hasPrefix("time_embed.") || name.contains(".norm1") || name.hasPrefix("norm_out") {
                rows = b
            } else if name.hasPrefix("patch_embed") || name.hasPrefix("proj_out") || name.contains(".ff.")
                || name.contains(".to_q.") || name.contains(".to_k.") || name.contains(".to_v.") || name.contains(".to_out.") {
                rows = b * s
            } else if name.contains("add_q_proj") || name.contains("add_k_proj") || name.contains("add_v_proj")
                || name.contains("to_add_out") || name.contains("ff_context") {
                rows = b * l
            } else {
                Issue.record("unclassified weight \(name)"); continue
            }
            expected += 2 * Double(rows) * Double(w.count)
        }
        let d = Double(c.innerDim)
        expected += 3 * 4 * Double(b * s * (s + l)) * d   // visual queries, every block
        expected += 2 * 4 * Double(b * l * (s + l)) * d   // caption queries, all but the last block
        #expect(abs(c.forwardFLOPs(batch: b, visualTokens: s, textTokens: l) - expected) <= 1e-9 * expected)
        #expect(loader.parameterCount == loader.supplied.values.map(\.count).reduce(0, +))
    }

    @Test func benchmarkFileBuildsAMochiForward() throws {
        let json = """
        {"class": "MochiTransformer3DModel", "config": {"patch_size": 2, "num_attention_heads": 2,
         "attention_head_dim": 8, "num_layers": 2, "pooled_projection_dim": 12, "in_channels": 3,
         "text_embed_dim": 16, "time_embed_dim": 10}, "inputs": {"batch": 1, "latent_frames": 2,
         "latent_height": 4, "latent_width": 4, "text_tokens": 5}}
        """
        let bench = try ForwardBenchmark.make(data: Data(json.utf8))
        #expect(bench.summary.contains("8 video + 5 text tokens"))
        #expect(bench.flops > 0 && bench.weightBytes > 0)
        try bench.run()
        let missing = json.replacingOccurrences(of: "\"text_tokens\": 5", with: "\"text_tokenz\": 5")
        #expect(throws: ModelLoadError.self) { try ForwardBenchmark.make(data: Data(missing.utf8)) }
        // Sizes beyond SizeLimits, element counts beyond 2³², and a latent the patch does not divide are
        // typed errors before anything is allocated.
        let edits: [[String: String]] = [
            ["\"latent_height\": 4": "\"latent_height\": 4611686018427387904"],
            ["\"batch\": 1": "\"batch\": 65536", "\"text_tokens\": 5": "\"text_tokens\": 65536"],
            ["\"latent_height\": 4": "\"latent_height\": 5"],
        ]
        for edit in edits {
            var edited = json
            for (from, to) in edit { edited = edited.replacingOccurrences(of: from, with: to) }
            #expect(edited != json)
            let error = #expect(throws: ModelLoadError.self) { try ForwardBenchmark.make(data: Data(edited.utf8)) }
            if case .malformedConfig? = error {} else { Issue.record("\(edit): \(String(describing: error))") }
        }
    }
}
