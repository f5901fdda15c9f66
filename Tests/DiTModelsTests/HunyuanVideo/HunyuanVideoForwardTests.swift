import Foundation
import Testing
import Tensors
@testable import DiTModels
import TestSupport

/// The HunyuanVideo forward against diffusers 0.42.1 (Tests/Fixtures/hunyuan_video, float32 on CPU).
///
/// Tolerance: relative L2 ≤ 1e-4 (FORMAT.md §7). The reference's own float32-vs-float64 distance is
/// ~2.4e-7, so 1e-4 leaves room for a different summation order, while a wrong mask, norm, rotary layout,
/// token order or unpatchify order gives errors of 1e-2 or more.
@Suite("HunyuanVideo forward parity")
struct HunyuanVideoForwardTests {
    static func model() throws -> HunyuanVideoTransformer {
        let config = try HunyuanVideoConfiguration.load(Fixtures.folder("hunyuan_video").appendingPathComponent("config.json"))
        return try HunyuanVideoFamily.load(config, tensors: Fixtures.tensors("hunyuan_video", "model.safetensors"))
    }

    static func input(_ t: [String: Tensor]) throws -> HunyuanVideoInput {
        HunyuanVideoInput(hiddenStates: try #require(t["input.hidden_states"]), timestep: try #require(t["input.timestep"]),
                          encoderHiddenStates: try #require(t["input.encoder_hidden_states"]),
                          encoderAttentionMask: try #require(t["input.encoder_attention_mask"]),
                          pooledProjections: try #require(t["input.pooled_projections"]),
                          guidance: t["input.guidance"])
    }

    @Test func forwardMatchesDiffusers() throws {
        let model = try Self.model()
        let t = try Fixtures.tensors("hunyuan_video", "forward.safetensors")
        let x = try Self.input(t)
        // The fixture pads its text: the mask is what makes the reference differ from an unmasked forward.
        #expect(x.encoderAttentionMask.scalars.contains(0))
        var p = try model.prepare(x)
        let hIn = p.image
        let modulated = try model.modulatedInput(p)
        try model.runBlocks(&p)
        let residual = try p.image - hIn
        let out = try model.outputHead(p)
        let computed = ["output": out, "teacache.modulated_input": modulated, "teacache.residual": residual]
        for (name, value) in computed.sorted(by: { $0.key < $1.key }) {
            let reference = try #require(t[name])
            #expect(value.shape == reference.shape, "\(name): shape \(value.shape), diffusers \(reference.shape)")
            let distance = try Tensor.relativeL2(value, reference)
            #expect(distance <= 1e-4, "\(name): rel L2 \(distance)")
        }
        #expect(try model(x) == out)
    }

    /// The text mask matters: treating the padded token as valid moves the output far beyond the tolerance.
    @Test func theTextMaskIsHonoured() throws {
        let model = try Self.model()
        let t = try Fixtures.tensors("hunyuan_video", "forward.safetensors")
        var x = try Self.input(t)
        x.encoderAttentionMask = try Tensor(shape: x.encoderAttentionMask.shape, repeating: 1)
        let e = try Tensor.relativeL2(model(x), #require(t["output"]))
        #expect(e > 1e-3, "an unmasked forward should differ from the masked reference, rel L2 \(e)")
    }
}
