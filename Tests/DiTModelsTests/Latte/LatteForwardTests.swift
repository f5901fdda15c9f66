import Foundation
import Testing
import TeaCache
import Tensors
import DiTHarness
@testable import DiTModels
import TestSupport

/// The Latte forward against diffusers 0.42.1 (Tests/Fixtures/latte, float32 on CPU), and the ways of
/// running it that must agree with it exactly (block by block, per sample).
///
/// Tolerance: relative L2 ≤ 1e-4 (FORMAT.md §7); the reference's own float32-vs-float64 distance is
/// 1.9e-7, so any layout, epsilon or ordering mistake shows as 1e-2 or more.
@Suite("Latte forward parity")
struct LatteForwardTests {
    static func model() throws -> LatteTransformer {
        let config = try LatteConfiguration.load(Fixtures.folder("latte").appendingPathComponent("config.json"))
        return try LatteFamily.load(config, tensors: Fixtures.tensors("latte", "model.safetensors"))
    }

    static func input() throws -> LatteInput {
        let t = try Fixtures.tensors("latte", "forward.safetensors")
        return LatteInput(hiddenStates: try #require(t["input.hidden_states"]), timestep: try #require(t["input.timestep"]),
                          encoderHiddenStates: try #require(t["input.encoder_hidden_states"]))
    }

    @Test func forwardModulatedInputAndResidualMatchDiffusers() throws {
        let model = try Self.model()
        let t = try Fixtures.tensors("latte", "forward.safetensors")
        let results = try LatteFamily.forwardResults(model: model, input: Self.input())
        for key in ["output", "teacache.modulated_input", "teacache.residual"] {
            let ref = try #require(t[key]), got = try #require(results[key])
            #expect(got.shape == ref.shape, "\(key) shape \(got.shape) vs \(ref.shape)")
            #expect(try Tensor.relativeL2(got, ref) <= 1e-4, "\(key)")
        }
        #expect(try model(Self.input()) == results["output"])
    }

    /// `runBlocks` is `runBlock` over every pair, and the blockwise count is `num_layers`.
    @Test func blockByBlockIsTheForward() throws {
        let model = try Self.model()
        var a = try model.prepare(Self.input()), b = a
        try model.runBlocks(&a)
        for i in 0..<model.blockCount(b) { try model.runBlock(i, &b) }
        #expect(a.tokens == b.tokens)
        #expect(model.blockCount(b) == 1)
        #expect(throws: TensorError.self) { try model.runBlock(1, &b) }
    }

    /// A batch of two gives each sample's own forward (the per-sample modulation and caption broadcast
    /// over that sample's frames and tokens only), and selecting a sample of the state selects it.
    @Test func aBatchIsItsSamples() throws {
        let model = try Self.model()
        let one = try Self.input()
        var other = one
        other.hiddenStates = randomTensor(one.hiddenStates.shape, seed: 7)
        other.encoderHiddenStates = randomTensor(one.encoderHiddenStates.shape, seed: 8)
        other.timestep = try Tensor(shape: [1], repeating: 250)
        let both = LatteInput(hiddenStates: try .concatenate([one.hiddenStates, other.hiddenStates], axis: 0),
                              timestep: try .concatenate([one.timestep, other.timestep], axis: 0),
                              encoderHiddenStates: try .concatenate([one.encoderHiddenStates, other.encoderHiddenStates], axis: 0))
        let out = try model(both)
        #expect(relL2(try out.slice(axis: 0, 0..<1), try model(one)) < 1e-6)
        #expect(relL2(try out.slice(axis: 0, 1..<2), try model(other)) < 1e-6)
        let picked = try model.prepare(both).selecting(batch: [1])
        #expect(relL2(picked.tokens, try model.prepare(other).tokens) < 1e-6)
    }

    /// Without temporal attention the temporal blocks and the temporal table are skipped: the spatial
    /// blocks alone, checked against a model whose temporal blocks are never reached (one frame).
    @Test func temporalAttentionCanBeSwitchedOff() throws {
        let model = try Self.model()
        var x = try Self.input()
        let on = try model(x)
        x.enableTemporalAttentions = false
        let off = try model(x)
        #expect(relL2(off, on) > 1e-3)
        var state = try model.prepare(x)
        let before = state.tokens
        try model.runBlock(0, &state)
        #expect(state.tokens.shape == before.shape)
    }

    /// The preset's schedule is the standard rule and the verifier's run passes on the public folder.
    @Test func theFixtureVerifies() throws {
        let report = try FixtureVerifier.verify(folder: Fixtures.folder("latte"))
        #expect(report.passed, "\(report.lines.joined(separator: "\n"))")
        #expect(TeaCachePreset.latte.schedule == .standard)
        #expect(LatteFamily.velocity(try LatteConfiguration.load(Fixtures.url("latte", "config.json")))
                == VelocityConvention(channels: .first(count: 4, axis: 1)))
    }
}
