import Foundation
import Testing
import Tensors
@testable import DiTModels
import TestSupport

/// The ConsisID forward against diffusers 0.42.1 (Tests/Fixtures/consisid and the generated `consisid_*`
/// variants), float32 on CPU.
///
/// Tolerance: relative L2 ≤ 1e-4 (FORMAT.md §7). The reference's own float32-vs-float64 distance is
/// ~2e-7, so 1e-4 leaves room for another summation order while a wrong norm, chunk order, head split or
/// a cross-attention after the wrong block gives errors of 1e-2 or more.
@Suite("ConsisID forward parity")
struct ConsisIDForwardTests {
    static let folders = ["consisid"] + ConsisIDFixtures.variants

    /// Output, modulated input `emb` and both cached residuals (video tokens incl. the cross-attentions,
    /// text tokens).
    @Test(arguments: folders)
    func forwardMatchesDiffusers(_ name: String) throws {
        let model = try ConsisIDFixtures.model(name)
        let t = try ConsisIDFixtures.tensors(name, "forward.safetensors")
        let x = try ConsisIDFixtures.input(t)
        var state = try model.prepare(x)
        let emb = try model.modulatedInput(state)
        let (video, text) = (state.backbone.video, state.backbone.text)
        try model.runBlocks(&state)
        let checks: [(String, Tensor, String)] = [
            ("output", try model.outputHead(state), "output"),
            ("emb", emb, "teacache.modulated_input"),
            ("video residual", try state.backbone.video - video, "teacache.residual"),
            ("text residual", try state.backbone.text - text, "teacache.residual_encoder"),
        ]
        for (label, value, key) in checks {
            let ref = try #require(t[key])
            #expect(value.shape == ref.shape, "\(name) \(label) shape \(value.shape) vs \(ref.shape)")
            let e = try Tensor.relativeL2(value, ref)
            #expect(e <= 1e-4, "\(name) \(label) rel L2 \(e)")
        }
        #expect(try model(x) == checks[0].1)
    }

    /// The rotary table the model builds from the latent size equals the one the fixture passed
    /// (`image_rotary_emb`, built by `ConsisIDPipeline._prepare_rotary_positional_embeddings`): both are
    /// float32 computations of the same positions and frequencies (2e-6 absolute is ~10 ulps here).
    @Test(arguments: folders)
    func rotaryTableIsThePipelines(_ name: String) throws {
        let model = try ConsisIDFixtures.model(name)
        let t = try ConsisIDFixtures.tensors(name, "forward.safetensors")
        let state = try model.prepare(ConsisIDFixtures.input(t))
        guard let cos = t["input.image_rotary_emb.0"], let sin = t["input.image_rotary_emb.1"] else {
            #expect(state.backbone.rope == nil && !model.configuration.backbone.useRotaryPositionalEmbeddings)
            return
        }
        let rope = try #require(state.backbone.rope, "\(name): the model built no rotary table")
        #expect(rope.cos.shape == cos.shape && rope.sin.shape == sin.shape)
        for (ours, ref) in [(rope.cos, cos), (rope.sin, sin)] {
            let worst = zip(ours.scalars, ref.scalars).map { abs($0 - $1) }.max() ?? 0
            #expect(worst <= 2e-6, "\(name): max abs difference \(worst)")
        }
    }

    /// Block by block (First-Block Cache's path): one block at a time gives the streams of the whole
    /// stack and the fixture's residuals; an index outside the stack is a typed error.
    @Test(arguments: folders)
    func blockByBlockMatchesTheStackAndDiffusers(_ name: String) throws {
        let model = try ConsisIDFixtures.model(name)
        let t = try ConsisIDFixtures.tensors(name, "forward.safetensors")
        let before = try model.prepare(ConsisIDFixtures.input(t))
        var whole = before, stepwise = before
        try model.runBlocks(&whole)
        #expect(model.blockCount(stepwise) == model.configuration.backbone.numLayers)
        for i in 0..<model.blockCount(stepwise) { try model.runBlock(i, &stepwise) }
        try model.finishBlocks(&stepwise)
        for (a, b) in zip(stepwise.streams, whole.streams) { #expect(try Tensor.relativeL2(a, b) == 0) }
        let video = try stepwise.backbone.video - before.backbone.video
        #expect(try Tensor.relativeL2(video, #require(t["teacache.residual"])) <= 1e-4)
        #expect(throws: TensorError.self) { try model.runBlock(model.configuration.backbone.numLayers, &stepwise) }
        #expect(throws: TensorError.self) { try model.runBlock(-1, &stepwise) }
    }
}
