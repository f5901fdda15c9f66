import Foundation
import Testing
import Tensors
import DiTHarness
@testable import DiTModels

@Suite("LTX-Video bench")
struct LTXVideoBenchTests {
    /// The analytic FLOP count equals an independent count from the weight shapes: every 2-D weight
    /// `[out, in]` costs `2·out·in` per row it is applied to, plus `4·S·K·D` per attention over K keys.
    @Test(arguments: ["gelu-approximate", "geglu", "geglu-approximate"])
    func flopCountMatchesTheWeightShapes(activation: String) throws {
        var c = tinyLTXConfiguration()
        c.activationFn = activation
        let loader = WeightLoader(randomSeed: 1)
        _ = try LTXVideoFamily.build(c, loader)
        let (b, s, l) = (2, 24, 7)
        var expected = 0.0
        for (name, w) in loader.supplied where name.hasSuffix(".weight") && w.rank >= 2 {
            let rows: Int
            if name.hasPrefix("proj_in") || name.hasPrefix("proj_out") || name.contains(".attn1.") || name.contains(".ff.")
                || name.contains(".attn2.to_q") || name.contains(".attn2.to_out") {
                rows = b * s
            } else if name.contains(".attn2.to_k") || name.contains(".attn2.to_v") || name.hasPrefix("caption_projection") {
                rows = b * l
            } else if name.hasPrefix("time_embed") {
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

    /// The bench shape's count is the issue's 40.7 GFLOP.
    @Test func benchShapeIsTheIssuesFigure() throws {
        let shape = LTXVideoFamily.benchmarkDefault
        let cost = try LTXVideoFamily.cost(shape.configuration, sizes: shape.inputs)
        #expect(abs(cost.flops / 1e9 - 40.7) < 0.05)
        #expect(cost.summary.contains("1024 video + 128 text tokens"))
    }

    @Test func benchmarkFileBuildsAnLTXForward() throws {
        let json = """
        {"class": "LTXVideoTransformer3DModel", "config": {"in_channels": 6, "out_channels": 6,
         "num_attention_heads": 2, "attention_head_dim": 8, "cross_attention_dim": 16, "num_layers": 1,
         "caption_channels": 12}, "inputs": {"batch": 1, "latent_frames": 2, "latent_height": 2,
         "latent_width": 3, "text_tokens": 5}}
        """
        let bench = try ForwardBenchmark.make(data: Data(json.utf8))
        #expect(bench.summary.contains("12 video + 5 text tokens"))
        #expect(bench.flops > 0 && bench.weightBytes > 0)
        try bench.run()
        let missing = json.replacingOccurrences(of: "\"text_tokens\": 5", with: "\"text_tokenz\": 5")
        #expect(throws: ModelLoadError.self) { try ForwardBenchmark.make(data: Data(missing.utf8)) }
        let huge = json.replacingOccurrences(of: "\"latent_height\": 2", with: "\"latent_height\": 65536")
            .replacingOccurrences(of: "\"latent_width\": 3", with: "\"latent_width\": 65536")
        #expect {
            try ForwardBenchmark.make(data: Data(huge.utf8))
        } throws: { e in
            guard case ModelLoadError.malformedConfig = e else { return false }
            return true
        }
    }
}
