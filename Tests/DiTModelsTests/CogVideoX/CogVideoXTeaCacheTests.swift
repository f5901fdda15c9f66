import Foundation
import Testing
import TeaCache
import Tensors
import DiTHarness
@testable import DiTModels
import TestSupport

/// TeaCache on CogVideoX (FORMAT.md §4–5): the modulated input is `emb`, two cached streams (video and
/// text tokens), the standard counter.
@Suite("CogVideoX TeaCache")
struct CogVideoXTeaCacheTests {
    /// `teacache verify` on the public folder: a passing check for each reference tensor of
    /// forward.safetensors (output, `emb`, both residuals) and for the record's decisions and latents.
    @Test func verifyPassesOnThePublicFixture() throws {
        let report = try FixtureVerifier.verify(folder: Fixtures.folder("cogvideox"))
        let passed = Set(report.checks.filter(\.passed).map(\.name))
        #expect(report.family == "cogvideox" && passed.count == report.checks.count, "\(report.lines.joined(separator: "\n"))")
        let references = try CogVideoXFixtures.tensors("cogvideox", "forward.safetensors").keys
            .filter { !$0.hasPrefix("input.") }
            .map { "forward " + $0.replacingOccurrences(of: "teacache.", with: "") }
        #expect(Set(references) == ["forward output", "forward modulated_input", "forward residual", "forward residual_encoder"])
        #expect(passed.isSuperset(of: references + ["sampling default decisions", "sampling default final cached"]))
    }

    /// Both streams are cached: the state exposes `[video, text]`, a skipped call adds both stored
    /// residuals (the text one equals the fixture's `teacache.residual_encoder`), and a skip at distance 0
    /// reproduces the computed output. (The output head reads only the video tokens and every call
    /// re-embeds the text, so the text residual never reaches a latent — the reference caches it anyway.)
    @Test func aSkipAddsBothResiduals() throws {
        let model = try CogVideoXFixtures.model("cogvideox")
        let t = try CogVideoXFixtures.tensors("cogvideox", "forward.safetensors")
        let x = try CogVideoXFixtures.input(t)
        let cached = CachedTransformer(model: model, configuration: try .faithful(coefficients: [0, 0, 0, 0, 0], threshold: 1))
        try cached.beginRun(steps: 3)
        _ = try cached(x)       // step 0: forced compute, stores both residuals
        let skipped = try cached(x)  // step 1: distance 0 → skip
        let trace = try #require(cached.trace)
        #expect(trace.entries.map(\.decision) == [.compute, .skip])
        #expect(try Tensor.relativeL2(skipped, #require(t["output"])) <= 1e-4)
        var state = try model.prepare(x)
        #expect(state.streams.map(\.shape) == [[1, 16, 32], [1, 6, 32]])
        let before = state.streams
        try model.runBlocks(&state)
        #expect(try Tensor.relativeL2(state.streams[1] - before[1], #require(t["teacache.residual_encoder"])) <= 1e-4)
    }

    @Test func stateSelectionGathersBatchElements() throws {
        let c = tinyCogVideoX15(layers: 2, ofs: 24)
        let model = try CogVideoXFamily.random(c, seed: 3, steps: 10)
        var x = cogInput(c, batch: 3, text: 3)
        x.timestep = try Tensor(shape: [3], scalars: [900, 500, 100])
        let full = try model.prepare(x)
        let sub = try full.selecting(batch: [2, 0])
        #expect(sub.batchSize == 2 && sub.latentShape == [2, 2, 4, 4, 4])
        #expect(try sub.emb.slice(axis: 0, 0..<1) == full.emb.slice(axis: 0, 2..<3))
        var a = sub, b = full
        try model.runBlocks(&a)
        try model.runBlocks(&b)
        // Blocks act per sample: the gathered run equals the matching rows of the full run (1e-6 relative
        // covers reordered float sums of another batch split).
        #expect(relL2(try a.video.slice(axis: 0, 0..<1), try b.video.slice(axis: 0, 2..<3)) < 1e-6)
        #expect(relL2(try a.text.slice(axis: 0, 1..<2), try b.text.slice(axis: 0, 0..<1)) < 1e-6)
        #expect(try model.outputHead(a).shape == [2, 2, 4, 4, 4])
        #expect(throws: (any Error).self) { try full.selecting(batch: [3]) }
    }

    /// Per-sample decisions: samples at different timesteps get their own distances.
    @Test func perSampleDecisionsRun() throws {
        let c = tinyCogVideoX15()
        let model = try CogVideoXFamily.random(c, seed: 3, steps: 4)
        let config = try TeaCachePreset.cogVideoX15_5B.configuration(threshold: 0.3).withPerSample(true)
        let cached = CachedTransformer(model: model, configuration: config)
        try cached.beginRun(steps: 4)
        var x = cogInput(c, batch: 2, text: 3)
        for (i, t) in [(1000, 980), (750, 740), (500, 495), (250, 240)].enumerated() {
            x.timestep = try Tensor(shape: [2], scalars: [Float(t.0), Float(t.1)])
            #expect(try cached(x).shape == [2, 2, 4, 4, 4], "step \(i)")
        }
        #expect(try #require(cached.trace).entries.count == 8)
    }

    /// Every CogVideoX preset is the family's, 1.5-5B first (the demo's default); ConsisID's is the ConsisID family's.
    @Test func presetsOfTheFamily() throws {
        let names = CogVideoXFamily.presets.map(\.name)
        #expect(names == ["cogvideox1.5_5b", "cogvideox1.5_5b_i2v", "cogvideox_2b", "cogvideox_5b", "cogvideox_5b_i2v"])
        #expect(ConsisIDFamily.presets.map(\.name) == ["consisid"])
        #expect(CogVideoXFamily.defaultPreset == .cogVideoX15_5B)
        #expect(TeaCachePreset.cogVideoX15_5B.defaultThreshold == 0.2)
        #expect(TeaCachePreset.cogVideoX15_5B.speedups.map(\.speedup) == [1.3, 1.8, 2.1])
        #expect(!TeaCachePreset.unportedModels.contains { names.contains($0.name) })
        for p in CogVideoXFamily.presets { try p.validate() }
    }

    /// Block by block (First-Block Cache's path) on every layout folder — sincos 2B, rotary crop grid,
    /// learned positions, 1.5 slice grid with ofs, 3 layers: one block at a time gives the streams of
    /// the whole stack and of the diffusers fixture's residuals (`teacache.residual` = video after −
    /// before, `teacache.residual_encoder` = the same for the text), and an index outside the stack is a
    /// typed error.
    @Test(arguments: ["cogvideox", "cogvideox_2b", "cogvideox_5b", "cogvideox_5b_i2v_learned", "cogvideox_ofs_i2v",
                      "cogvideox_l3_grid"])
    func blockByBlockMatchesTheStackAndDiffusers(_ name: String) throws {
        let model = try CogVideoXFixtures.model(name)
        let t = try CogVideoXFixtures.tensors(name, "forward.safetensors")
        let before = try model.prepare(CogVideoXFixtures.input(t))
        var whole = before, stepwise = before
        try model.runBlocks(&whole)
        #expect(model.blockCount(stepwise) == model.configuration.numLayers)
        for i in 0..<model.blockCount(stepwise) { try model.runBlock(i, &stepwise) }
        try model.finishBlocks(&stepwise)
        for (a, b) in zip(stepwise.streams, whole.streams) { #expect(try Tensor.relativeL2(a, b) == 0) }
        let video = try stepwise.video - before.video, text = try stepwise.text - before.text
        #expect(try Tensor.relativeL2(video, #require(t["teacache.residual"])) <= 1e-4)
        #expect(try Tensor.relativeL2(text, #require(t["teacache.residual_encoder"])) <= 1e-4)
        #expect(throws: TensorError.self) { try model.runBlock(model.configuration.numLayers, &stepwise) }
        #expect(throws: TensorError.self) { try model.runBlock(-1, &stepwise) }
    }
}
