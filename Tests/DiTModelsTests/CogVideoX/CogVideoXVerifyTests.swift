import Foundation
import Testing
import Tensors
import DiTHarness
@testable import DiTModels

@Suite("CogVideoX verify and bench")
struct CogVideoXVerifyTests {
    /// The analytic FLOP count equals an independent count from the weight shapes: every 2-D weight
    /// `[out, in]` costs `2·out·in` per row it is applied to (video, text, joint tokens or one row per
    /// sample), plus `4·N²·D` per block for the attention over the joint sequence.
    @Test(arguments: [false, true])
    func flopCountMatchesTheWeightShapes(_ gated: Bool) throws {
        var c = tinyCogVideoX15(layers: 2, ofs: 24)
        if gated { c.activationFn = "swiglu" }
        let loader = WeightLoader(randomSeed: 1)
        _ = try CogVideoXFamily.build(c, loader)
        let (b, s, l) = (2, 8, 5)
        // The rows each weight is applied to, by the start of its name (first match wins).
        let rowsByPrefix: [(String, Int)] = [
            ("patch_embed.proj.", b * s), ("proj_out.", b * s), ("patch_embed.text_proj.", b * l),
            ("time_embedding.", b), ("ofs_embedding.", b), ("norm_out.linear.", b),
        ]
        var expected = 0.0
        for (name, w) in loader.supplied where name.hasSuffix(".weight") && w.rank >= 2 {
            if let rows = rowsByPrefix.first(where: { name.hasPrefix($0.0) })?.1 {
                expected += 2 * Double(rows * w.count)
            } else if name.hasSuffix("norm1.linear.weight") || name.hasSuffix("norm2.linear.weight") {
                expected += 2 * Double(b * w.count)
            } else if name.contains(".attn1.") || name.contains(".ff.") {
                expected += 2 * Double(b * (s + l) * w.count)  // the joint sequence
            } else {
                Issue.record("unclassified weight \(name)")
            }
        }
        expected += Double(c.numLayers) * 4 * Double(b * (s + l) * (s + l) * c.innerDim)
        #expect(c.forwardFLOPs(batch: b, videoTokens: s, textTokens: l) == expected)
        #expect(loader.parameterCount == loader.supplied.values.map(\.count).reduce(0, +))
    }

    /// The issue's figure: the benchmark shape is 40.2 GFLOP.
    @Test func benchmarkShapeIs40GFLOP() throws {
        let shape = CogVideoXFamily.benchmarkDefault
        let cost = try CogVideoXFamily.cost(shape.configuration, sizes: shape.inputs)
        #expect(abs(cost.flops / 1e9 - 40.2) < 0.05)
        #expect(cost.summary == "CogVideoX 1.5 512-wide, 4 blocks, 1024 video + 128 text tokens, batch 1")
    }

    @Test func benchmarkFileBuildsACogVideoXForward() throws {
        let json = """
        {"class": "CogVideoXTransformer3DModel", "config": {"num_attention_heads": 2, "attention_head_dim": 16,
         "in_channels": 4, "out_channels": 4, "time_embed_dim": 24, "text_embed_dim": 12, "num_layers": 1,
         "sample_width": 8, "sample_height": 8, "patch_size": 2, "patch_size_t": 2,
         "use_rotary_positional_embeddings": true, "patch_bias": false},
         "inputs": {"batch": 1, "latent_frames": 2, "latent_height": 4, "latent_width": 4, "text_tokens": 5}}
        """
        let bench = try ForwardBenchmark.make(data: Data(json.utf8))
        try bench.run()
        let (className, body) = try ModelConfigFile.parse(Data(json.utf8))
        let c = try CogVideoXConfiguration.parse(body, className: className)
        #expect(bench.flops == c.forwardFLOPs(batch: 1, videoTokens: 4, textTokens: 5))
        #expect(bench.summary == "CogVideoX 1.5 32-wide, 1 blocks, 4 video + 5 text tokens, batch 1")
        let odd = json.replacingOccurrences(of: "\"latent_frames\": 2", with: "\"latent_frames\": 3")
        #expect(throws: ModelLoadError.self) { try ForwardBenchmark.make(data: Data(odd.utf8)) }
        let huge = json.replacingOccurrences(of: "\"latent_height\": 4", with: "\"latent_height\": 4611686018427387904")
        #expect { try ForwardBenchmark.make(data: Data(huge.utf8)) } throws: { e in
            guard case ModelLoadError.malformedConfig = e else { return false }
            return true
        }
        // A 2B-style model needs max_text_seq_length text tokens: a typed error, not a failing forward.
        let sincos = json.replacingOccurrences(of: "\"use_rotary_positional_embeddings\": true", with: "\"use_rotary_positional_embeddings\": false")
            .replacingOccurrences(of: "\"patch_size_t\": 2", with: "\"patch_size_t\": null")
        #expect(throws: ModelLoadError.self) { try ForwardBenchmark.make(data: Data(sincos.utf8)) }
    }
}
