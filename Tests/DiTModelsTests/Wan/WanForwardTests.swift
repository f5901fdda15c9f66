import Foundation
import Testing
import Tensors
@testable import DiTModels
import TestSupport

/// The Wan2.1 forward against diffusers 0.42.1 (Tests/Fixtures/wan21, float32 on CPU).
///
/// Tolerance: relative L2 ≤ 1e-4 (FORMAT.md §7). The reference's own float32-vs-float64 distance is
/// ~2e-7, so 1e-4 leaves room for a different summation order while any ordering, epsilon or layout
/// mistake gives errors of 1e-2 or more.
@Suite("Wan forward parity")
struct WanForwardTests {
    static func model() throws -> WanTransformer {
        let config = try WanConfiguration.load(Fixtures.folder("wan21").appendingPathComponent("config.json"))
        return try WanFamily.load(config, tensors: Fixtures.tensors("wan21", "model.safetensors"))
    }

    @Test func forwardMatchesDiffusers() throws {
        let model = try Self.model()
        let t = try Fixtures.tensors("wan21", "forward.safetensors")
        let x = WanInput(hiddenStates: try #require(t["input.hidden_states"]),
                         timestep: try #require(t["input.timestep"]),
                         encoderHiddenStates: try #require(t["input.encoder_hidden_states"]))
        var p = try model.prepare(x)
        let hIn = p.tokens
        let timestepProjection = p.blocks.timestepProjection, temb = p.temb
        try model.runBlocks(&p)
        let residual = try p.tokens - hIn
        let out = try model.outputHead(p)
        let checks: [(String, Tensor, String)] = [
            ("output", out, "output"),
            ("timestep_proj", timestepProjection, "teacache.modulated_input"),
            ("temb", temb, "teacache.modulated_input_temb"),
            ("residual", residual, "teacache.residual"),
        ]
        for (label, value, key) in checks {
            let ref = try #require(t[key])
            #expect(value.shape == ref.shape, "\(label) shape \(value.shape) vs \(ref.shape)")
            let e = try Tensor.relativeL2(value, ref)
            #expect(e <= 1e-4, "\(label) rel L2 \(e)")
        }
        #expect(try model(x) == out)
    }
}
