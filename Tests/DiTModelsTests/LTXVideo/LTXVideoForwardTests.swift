import Foundation
import Testing
import Tensors
@testable import DiTModels
import TestSupport

/// The LTX-Video forward against diffusers 0.42.1 (Tests/Fixtures/ltx_video and the LTX variant folders,
/// float32 on CPU).
///
/// Tolerance: relative L2 ≤ 1e-4 (FORMAT.md §7). The reference's own float32-vs-float64 distance is
/// ~2e-7, so 1e-4 leaves room for another summation order, while a wrong epsilon, layout, rotary
/// channel order or modulation order gives errors of 1e-2 or more.
@Suite("LTX-Video forward parity")
struct LTXVideoForwardTests {
    /// Output, modulated input and residual (through the output norm) of every folder; the variants add
    /// batch 2 with different paddings, explicit `video_coords`, per-token timesteps, no biases, affine
    /// norms with 3 layers, GEGLU and another grid with patch sizes 2.
    @Test(arguments: ["ltx_video", "variants/ltx_video_b2", "variants/ltx_video_vcoords_b2",
                      "variants/ltx_video_pertoken", "variants/ltx_video_noris_d28"])
    func forwardMatchesDiffusers(folder: String) throws {
        let (model, x, t) = try ltxFixture(folder)
        var p = try model.prepare(x)
        let hIn = p.tokens
        let m = try model.modulatedInput(p)
        try model.runBlocks(&p)
        let residual = try p.tokens - hIn
        let out = try model.outputHead(p)
        for (label, value, key) in [("output", out, "output"), ("modulated input", m, "teacache.modulated_input"),
                                    ("residual", residual, "teacache.residual")] {
            let ref = try #require(t[key])
            #expect(value.shape == ref.shape, "\(folder) \(label) shape \(value.shape) vs \(ref.shape)")
            let e = try Tensor.relativeL2(value, ref)
            #expect(e <= 1e-4, "\(folder) \(label) rel L2 \(e)")
        }
        #expect(try model(x) == out)
    }

    /// A per-token timestep `[B, S]` holding one value per sample gives the per-sample forward (the
    /// per-token path embeds every token separately, so only float noise may differ).
    @Test func perTokenTimestepWithEqualValuesIsThePerSampleForward() throws {
        let model = try LTXVideoFamily.random(tinyLTXConfiguration(), seed: 4, steps: 50)
        let x = try tinyLTXInput()
        var perToken = x
        perToken.timestep = try Tensor(shape: [2, 12], repeating: 600)
        #expect(relL2(try model(perToken), try model(x)) < 1e-6)
        var flat = x
        flat.timestep = try Tensor(shape: [24], repeating: 600)  // diffusers flattens the timestep
        #expect(relL2(try model(flat), try model(x)) < 1e-6)
    }

    /// `video_coords` equal to the scaled grid (in the grid's units) give the grid's rotary tables.
    @Test func explicitCoordinatesReproduceTheGrid() throws {
        let c = tinyLTXConfiguration()
        let model = try LTXVideoFamily.random(c, seed: 4, steps: 50)
        let x = try tinyLTXInput()
        let grid = model.rotary.gridCoordinates(frames: 2, height: 2, width: 3, scale: [0.32, 32, 32])
        // video_coords [1, 3, S] in base units: coordinate · base.
        var vc = [Float](repeating: 0, count: 3 * 12)
        for t in 0..<12 { for a in 0..<3 { vc[a * 12 + t] = grid[t * 3 + a] * LTXVideoRotaryEmbedding.bases[a] } }
        var y = x
        y.videoCoords = try Tensor(shape: [1, 3, 12], scalars: vc)
        y.numFrames = nil; y.height = nil; y.width = nil
        // coordinate · base / base may differ from the coordinate by one rounding: angles move by ~1e-7.
        #expect(relL2(try model(y), try model(x)) < 1e-5)
    }
}
