import Foundation
import Testing
import Tensors
@testable import DiTModels
import TestSupport

/// The CogVideoX forward against diffusers 0.42.1 (Tests/Fixtures/cogvideox, the 1.5 layout, and the
/// generated `cogvideox_*` variants: 1.0 2B sincos, 1.0 5B crop-grid rotary, 5B-I2V learned positions,
/// ofs, other options), float32 on CPU.
///
/// Tolerance: relative L2 ≤ 1e-4 (FORMAT.md §7). The reference's own float32-vs-float64 distance is
/// ~2e-7, so 1e-4 leaves room for another summation order while any ordering, epsilon, chunk-order or
/// layout mistake gives errors of 1e-2 or more.
@Suite("CogVideoX forward parity")
struct CogVideoXForwardTests {
    static let folders = ["cogvideox"] + CogVideoXFixtures.variants

    /// Output, modulated input `emb` and both cached residuals (video and text streams).
    @Test(arguments: folders)
    func forwardMatchesDiffusers(_ name: String) throws {
        let model = try CogVideoXFixtures.model(name)
        let t = try CogVideoXFixtures.tensors(name, "forward.safetensors")
        let x = try CogVideoXFixtures.input(t)
        var state = try model.prepare(x)
        let emb = try model.modulatedInput(state)
        let (video, text) = (state.video, state.text)
        try model.runBlocks(&state)
        let checks: [(String, Tensor, String)] = [
            ("output", try model.outputHead(state), "output"),
            ("emb", emb, "teacache.modulated_input"),
            ("video residual", try state.video - video, "teacache.residual"),
            ("text residual", try state.text - text, "teacache.residual_encoder"),
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
    /// (`image_rotary_emb`, built by the CogVideoX pipeline's `_prepare_rotary_positional_embeddings`):
    /// both are float32 computations of the same positions and frequencies, so they agree to a few ulps
    /// (angles here are below 20 rad: 2e-6 absolute is ~10 ulps).
    @Test(arguments: folders)
    func rotaryTableIsThePipelines(_ name: String) throws {
        let model = try CogVideoXFixtures.model(name)
        let t = try CogVideoXFixtures.tensors(name, "forward.safetensors")
        let state = try model.prepare(CogVideoXFixtures.input(t))
        guard let cos = t["input.image_rotary_emb.0"], let sin = t["input.image_rotary_emb.1"] else {
            #expect(state.rope == nil, "\(name): no table in the fixture, none in the model")
            #expect(!model.configuration.useRotaryPositionalEmbeddings)
            return
        }
        let rope = try #require(state.rope, "\(name): the model built no rotary table")
        #expect(rope.cos.shape == cos.shape && rope.sin.shape == sin.shape)
        for (ours, ref) in [(rope.cos, cos), (rope.sin, sin)] {
            let worst = zip(ours.scalars, ref.scalars).map { abs($0 - $1) }.max() ?? 0
            #expect(worst <= 2e-6, "\(name): max abs difference \(worst)")
        }
        // The sampling conditioning carries the same table.
        let s = try CogVideoXFixtures.tensors(name, "sampling.safetensors")
        #expect(s["cond.image_rotary_emb.0"] == cos)
    }

    /// The 1.0 5B variant's crop-region grid really is fractional (a 4×4 grid in an 8×12 base):
    /// rows 0, 2, 4, 6 and columns linspace(2, 7.5, 4), the positions the fixture's table encodes.
    @Test func cropRegionGridOfThe5BVariant() throws {
        let model = try CogVideoXFixtures.model("cogvideox_5b")
        let p = try CogVideoXRotaryEmbedding.positions(configuration: model.configuration, frames: 2, height: 8, width: 8)
        #expect(p.frames == [0, 1])
        #expect(p.rows == [0, 2, 4, 6])
        let columns: [Double] = [2, 2 + 5.5 / 3, 2 + 11 / 3.0, 7.5]
        for (got, want) in zip(p.columns, columns) { #expect(abs(Double(got) - want) < 1e-6) }
    }
}
