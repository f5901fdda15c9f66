import Foundation
import Testing
import Tensors
@testable import DiTModels
import TestSupport

/// ConsisID against diffusers 0.42.1 on the public folder and every `consisid_*` variant (float32, CPU),
/// within FORMAT.md §7's relative L2 of 1e-4: diffusers' own float32 noise is ~2e-7 here, while a wrong
/// norm, chunk order, head split or a cross-attention after the wrong block costs 1e-2 or more.
@Suite("ConsisID forward parity")
struct ConsisIDForwardTests {
    static let folders = ["consisid"] + ConsisIDFixtures.variants

    /// The forward's tensors against the folder's: `output`, the modulated input `emb`, and the residual
    /// of each stream (video tokens with the cross-attentions' contributions, text tokens).
    @Test(arguments: folders)
    func forwardMatchesDiffusers(_ name: String) throws {
        let model = try ConsisIDFixtures.model(name)
        let reference = try ConsisIDFixtures.tensors(name, "forward.safetensors")
        let input = try ConsisIDFixtures.input(reference)
        let before = try model.prepare(input)
        var after = before
        try model.runBlocks(&after)
        let ours: [String: Tensor] = [
            "output": try model.outputHead(after), "teacache.modulated_input": try model.modulatedInput(before),
            "teacache.residual": try after.backbone.video - before.backbone.video,
            "teacache.residual_encoder": try after.backbone.text - before.backbone.text,
        ]
        for (key, value) in ours {
            let expected = try #require(reference[key], "\(name): no \(key)")
            guard value.shape == expected.shape else {
                Issue.record("\(name) \(key): shape \(value.shape), diffusers \(expected.shape)")
                continue
            }
            let error = try Tensor.relativeL2(value, expected)
            #expect(error <= 1e-4, "\(name) \(key): rel L2 \(error)")
        }
        #expect(try model(input) == ours["output"])
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
