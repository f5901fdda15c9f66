import Foundation
import Testing
import Tensors
import DiTHarness
@testable import DiTModels
import TestSupport

/// The Lumina-Next forward against diffusers 0.42.1 (Tests/Fixtures/lumina_next and its variants,
/// float32 on CPU), with the rotary table as the fixture passes it and as computed here from sizes.
///
/// Tolerance: relative L2 ≤ 1e-4 (FORMAT.md §7). The reference's own float32-vs-float64 distance is
/// ~3e-7, so 1e-4 leaves room for another summation order while a wrong epsilon, scale, gate, head
/// grouping or layout gives errors of 1e-2 or more.
@Suite("Lumina-Next forward parity")
struct LuminaNextForwardTests {
    static func load(_ folder: URL) throws -> (LuminaNextTransformer, FixtureArguments, [String: Tensor]) {
        let f = try FixtureFolder(folder)
        let c = try LuminaNextConfiguration.parse(f.config, className: f.className)
        return (try LuminaNextFamily.load(c, weightsAt: f.weightsURL), f.forwardArguments(), f.forwardTensors)
    }

    @Test func forwardMatchesDiffusers() throws {
        let (model, args, t) = try Self.load(Fixtures.folder("lumina_next"))
        let x = try LuminaNextFamily.forwardInput(args, configuration: model.configuration)
        #expect(x.baseSequenceLength == 64)
        var p = try model.prepare(x)
        let hIn = p.tokens
        let m = try model.modulatedInput(p)
        try model.runBlocks(&p)
        let out = try model.outputHead(p)
        try LuminaTestSupport.expectMatches([("output", out, "output"), ("modulated input", m, "teacache.modulated_input"),
                                             ("residual", try p.tokens - hIn, "teacache.residual")], t, "lumina_next")
        #expect(try model(x) == out)
    }

    /// The table computed from the grid equals the fixture's `image_rotary_emb` (diffusers' float32
    /// table: 1e-6 absolute covers a last-ulp difference of an angle), and the forward with it matches.
    @Test func computedRotaryTableMatchesTheFixture() throws {
        let (model, args, t) = try Self.load(Fixtures.folder("lumina_next"))
        let table = try args.tensor("image_rotary_emb")
        let c = model.configuration
        let ours = try LuminaNextRotaryEmbedding.table(headDim: c.headDim, rows: table.shape[0], cols: table.shape[1])
        #expect(ours.shape == table.shape)
        #expect(zip(ours.scalars, table.scalars).allSatisfy { abs($0 - $1) <= 1e-6 })
        var x = try LuminaNextFamily.forwardInput(args, configuration: c)
        x.rotary = .unscaled
        #expect(relL2(try model(x), try #require(t["output"])) <= 1e-4)
    }

    /// Variant folders whose table was made with scaling factors or a larger grid (forward.json's
    /// `image_rotary_emb_source`): the computed table equals it, and the forward from sizes and factors
    /// matches diffusers.
    @Test(arguments: ["lumina_next_grid_scaled", "lumina_next_plain"])
    func scaledRotaryTablesMatchVariants(_ name: String) throws {
        let folder = Fixtures.root.appendingPathComponent("variants").appendingPathComponent(name)
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: folder.appendingPathComponent("forward.json"))) as? [String: Any]
        let source = try #require(json?["image_rotary_emb_source"] as? [String: Any], "\(name) states how its table was made")
        let (linear, ntk) = (try #require(source["linear_factor"] as? Double), try #require(source["ntk_factor"] as? Double))
        let (rows, cols) = (try #require(source["len_h"] as? Int), try #require(source["len_w"] as? Int))
        let (model, args, t) = try Self.load(folder)
        let table = try args.tensor("image_rotary_emb")
        let ours = try LuminaNextRotaryEmbedding.table(headDim: model.configuration.headDim, rows: rows, cols: cols,
                                                       linearFactor: linear, ntkFactor: ntk)
        #expect(zip(ours.scalars, table.scalars).allSatisfy { abs($0 - $1) <= 2e-6 }, "\(name)")
        var x = try LuminaNextFamily.forwardInput(args, configuration: model.configuration)
        x.rotary = .computed(linearFactor: linear, ntkFactor: ntk)
        #expect(relL2(try model(x), try #require(t["output"])) <= 1e-4, "\(name)")
    }

    /// The pipeline's defaults: base `(8·sample_size // 16)²`, scaling `√(H·W)/sample_size` as a linear
    /// factor below the watershed and as an NTK factor from it on.
    @Test func pipelineSettings() throws {
        var c = LuminaNextConfiguration()
        c.sampleSize = 16
        let below = try LuminaNextFamily.pipelineSettings(configuration: c, latentHeight: 6, latentWidth: 10, timestep: 0.3)
        #expect(below.baseSequenceLength == 64)
        guard case let .computed(linear, ntk) = below.rotary else { Issue.record("computed"); return }
        #expect(abs(linear - (48.0 * 80 / (128 * 128)).squareRoot()) < 1e-15 && ntk == 1)
        let above = try LuminaNextFamily.pipelineSettings(configuration: c, latentHeight: 32, latentWidth: 32, timestep: 0.3,
                                                               scalingWatershed: 0.2)
        guard case let .computed(l2, n2) = above.rotary else { Issue.record("computed"); return }
        #expect(l2 == 1 && n2 == 2)
        c.sampleSize = nil
        #expect(throws: ModelLoadError.self) {
            try LuminaNextFamily.pipelineSettings(configuration: c, latentHeight: 8, latentWidth: 8, timestep: 0)
        }
    }

    /// A batch of two equals the two samples run alone (masks, timesteps and captions per sample).
    @Test func batchElementsAreIndependent() throws {
        let (model, args, _) = try Self.load(Fixtures.root.appendingPathComponent("variants/lumina_next_b2_mask"))
        let x = try LuminaNextFamily.forwardInput(args, configuration: model.configuration)
        let both = try model(x)
        for i in 0..<2 {
            var one = x
            one.hiddenStates = try x.hiddenStates.slice(axis: 0, i..<(i + 1))
            one.timestep = try x.timestep.slice(axis: 0, i..<(i + 1))
            one.encoderHiddenStates = try x.encoderHiddenStates.slice(axis: 0, i..<(i + 1))
            one.encoderMask = try x.encoderMask.slice(axis: 0, i..<(i + 1))
            #expect(relL2(try model(one), try both.slice(axis: 0, i..<(i + 1))) <= 1e-6, "sample \(i)")
        }
    }
}
