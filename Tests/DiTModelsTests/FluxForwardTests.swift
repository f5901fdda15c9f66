import Foundation
import Testing
import Tensors
@testable import DiTModels

/// The FLUX forward against diffusers 0.42.1 (fixtures generated in float32 on CPU).
///
/// Tolerance: relative L2 ≤ 1e-4 (FORMAT.md §7). Both sides are float32; the reference's own float32 vs
/// float64 distance is ~2e-7, so 1e-4 leaves a wide margin for a different summation order while any
/// indexing, ordering or formula mistake gives errors of order 1e-2 or more.
@Suite struct FluxForwardTests {
    static func model(_ family: String) throws -> FluxTransformer {
        let config = try FluxConfiguration.load(Fixtures.folder(family).appendingPathComponent("config.json"))
        return try FluxTransformer(configuration: config, tensors: Fixtures.tensors(family, "model.safetensors"))
    }

    static func inputs(_ t: [String: Tensor]) throws -> FluxInputs {
        FluxInputs(hiddenStates: try #require(t["input.hidden_states"]),
                   encoderHiddenStates: try #require(t["input.encoder_hidden_states"]),
                   pooledProjections: try #require(t["input.pooled_projections"]),
                   timestep: try #require(t["input.timestep"]),
                   imageIDs: try #require(t["input.img_ids"]), textIDs: try #require(t["input.txt_ids"]),
                   guidance: t["input.guidance"])
    }

    @Test(arguments: ["flux", "tangoflux"])
    func forwardMatchesDiffusers(family: String) throws {
        let model = try Self.model(family)
        let t = try Fixtures.tensors(family, "forward.safetensors")
        let x = try Self.inputs(t)
        var p = try model.prepare(x)
        let m = try model.modulatedInput(p)
        let hIn = p.image
        try model.runBlocks(&p)
        let residual = try p.image - hIn
        let out = try model.outputHead(p)
        let eOut = try Tensor.relativeL2(out, #require(t["output"]))
        let eM = try Tensor.relativeL2(m, #require(t["teacache.modulated_input"]))
        let eR = try Tensor.relativeL2(residual, #require(t["teacache.residual"]))
        #expect(eOut <= 1e-4, "output rel L2 \(eOut)")
        #expect(eM <= 1e-4, "modulated input rel L2 \(eM)")
        #expect(eR <= 1e-4, "residual rel L2 \(eR)")
        // The one-call forward is the same composition.
        #expect(try model(x) == out)
    }
}
