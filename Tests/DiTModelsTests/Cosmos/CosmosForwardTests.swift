import Foundation
import Testing
import Tensors
@testable import DiTModels
import TestSupport

/// The Cosmos forward against diffusers 0.42.1 (Tests/Fixtures/cosmos, float32 on CPU), and the layers new
/// with this family against naive references.
///
/// Tolerance: relative L2 ≤ 1e-4 (FORMAT.md §7; the reference's own float32-vs-float64 distance is
/// 2.7e-7). Layer tests: the naive references run in Double, so float32 rounding (≈ 1e-7 relative) is all
/// that may differ: 1e-5.
@Suite("Cosmos forward parity")
struct CosmosForwardTests {
    static let folder = Fixtures.folder("cosmos")

    static func configuration() throws -> CosmosConfiguration {
        try CosmosConfiguration.load(folder.appendingPathComponent("config.json"))
    }

    static func model() throws -> CosmosTransformer {
        try CosmosFamily.load(configuration(), tensors: Fixtures.tensors("cosmos", "model.safetensors"))
    }

    static func input() throws -> CosmosInput {
        let t = try Fixtures.tensors("cosmos", "forward.safetensors")
        return CosmosInput(hiddenStates: try #require(t["input.hidden_states"]), timestep: try #require(t["input.timestep"]),
                           encoderHiddenStates: try #require(t["input.encoder_hidden_states"]), fps: 30)
    }

    @Test func forwardMatchesDiffusers() throws {
        let model = try Self.model()
        let t = try Fixtures.tensors("cosmos", "forward.safetensors")
        let x = try Self.input()
        var p = try model.prepare(x)
        let hIn = p.tokens
        let modulated = try model.modulatedInput(p)
        try model.runBlocks(&p)
        let residual = try p.tokens - hIn
        let out = try model.outputHead(p)
        for (label, value, key) in [("output", out, "output"), ("modulated input", modulated, "teacache.modulated_input"),
                                    ("residual", residual, "teacache.residual")] {
            let ref = try #require(t[key])
            #expect(value.shape == ref.shape, "\(label) shape \(value.shape) vs \(ref.shape)")
            #expect(relL2(value, ref) <= 1e-4, "\(label) rel L2 \(relL2(value, ref))")
        }
        #expect(try model(x) == out)
    }

    /// The modulated input is block 0's adaLN of h_in without the learnable positions: adding them (what
    /// block 0 itself normalises) gives a different tensor, far from the fixture's.
    @Test func modulatedInputIsTakenBeforeThePositionEmbedding() throws {
        let model = try Self.model()
        let t = try Fixtures.tensors("cosmos", "forward.safetensors")
        var state = try model.prepare(Self.input())
        let positions = try #require(state.blocks.extraPositions)
        state.tokens = try state.tokens + positions
        #expect(relL2(try model.modulatedInput(state), try #require(t["teacache.modulated_input"])) > 1e-2)
    }

    /// Batch 2 = each sample alone (other latent, other text in row 1).
    @Test func batchOfTwoEqualsEachSampleAlone() throws {
        let model = try Self.model()
        let a = try Self.input()
        var b = a
        b.hiddenStates = randomTensor(a.hiddenStates.shape, seed: 5)
        b.encoderHiddenStates = randomTensor(a.encoderHiddenStates.shape, seed: 6)
        b.timestep = try Tensor(shape: [1], repeating: -0.1)
        let both = CosmosInput(hiddenStates: try Tensor.concatenate([a.hiddenStates, b.hiddenStates], axis: 0),
                               timestep: try Tensor.concatenate([a.timestep, b.timestep], axis: 0),
                               encoderHiddenStates: try Tensor.concatenate([a.encoderHiddenStates, b.encoderHiddenStates], axis: 0),
                               fps: 30)
        let out = try model(both)
        #expect(relL2(try out.slice(axis: 0, 0..<1), try model(a)) <= 1e-6)
        #expect(relL2(try out.slice(axis: 0, 1..<2), try model(b)) <= 1e-6)
    }

    /// Per-frame timesteps `[B, 1, F, 1, 1]` that are all equal give the per-sample forward; different
    /// frame values change only what their frame's tokens see (the output differs).
    @Test func perFrameTimestepsReduceToPerSample() throws {
        let model = try Self.model()
        let x = try Self.input()
        let f = x.hiddenStates.shape[2]
        var perFrame = x
        perFrame.timestep = try Tensor(shape: [1, 1, f, 1, 1], repeating: x.timestep.scalars[0])
        #expect(relL2(try model(perFrame), try model(x)) <= 1e-6)
        perFrame.timestep = try Tensor(shape: [1, 1, f, 1, 1], scalars: (0..<f).map { Float($0) * -0.2 })
        #expect(relL2(try model(perFrame), try model(x)) > 1e-3)
    }

    /// `CosmosRotaryPosEmbed` in Double: per axis base `10000·scale^(d/(d−2))`, frequencies
    /// `base^(−2i/d)`, frame positions `i·24/fps`; the table is `[t‖h‖w, t‖h‖w]`.
    @Test(arguments: [30, nil] as [Int?])
    func rotaryTablesMatchTheFormula(fps: Int?) throws {
        let c = CosmosConfiguration(numAttentionHeads: 1, attentionHeadDim: 20, ropeScale: [2, 1.5, 3])
        let (f, h, w) = (3, 4, 5)
        let tables = try CosmosRotaryTables.tables(configuration: c, frames: f, height: h, width: w, fps: fps)
        let dims = c.rotaryAxesDims  // [8, 6, 6]
        #expect(dims == [8, 6, 6])
        let cosT = tables.cos.scalars, sinT = tables.sin.scalars
        var worst = 0.0
        var token = 0
        for i in 0..<f { for j in 0..<h { for k in 0..<w {
            let positions = [Double(i) * (fps.map { 24 / Double($0) } ?? 1), Double(j), Double(k)]
            var col = 0
            for axis in 0..<3 {
                let d = Double(dims[axis])
                let base = 10000 * pow(c.ropeScale[axis], d / (d - 2))
                for m in 0..<(dims[axis] / 2) {
                    let angle = positions[axis] / pow(base, Double(2 * m) / d)
                    for offset in [0, 10] {
                        worst = max(worst, abs(Double(cosT[token * 20 + offset + col]) - cos(angle)),
                                    abs(Double(sinT[token * 20 + offset + col]) - sin(angle)))
                    }
                    col += 1
                }
            }
            token += 1
        } } }
        #expect(worst <= 1e-5, "worst abs error \(worst)")
    }

    /// `CosmosLearnablePositionalEmbed` in Double: `e / (1e-6 + ‖e‖/√D)` of the summed table rows.
    @Test func learnablePositionsMatchTheFormula() throws {
        let d = 6
        let tables = (randomTensor([3, d], seed: 1), randomTensor([4, d], seed: 2), randomTensor([5, d], seed: 3))
        let layer = CosmosLearnablePositions(frames: tables.0, rows: tables.1, columns: tables.2)
        let out = try layer(frames: 2, height: 3, width: 4).scalars
        var worst = 0.0, token = 0
        for i in 0..<2 { for j in 0..<3 { for k in 0..<4 {
            let e = (0..<d).map { Double(tables.0.scalars[i * d + $0]) + Double(tables.1.scalars[j * d + $0]) + Double(tables.2.scalars[k * d + $0]) }
            let norm = sqrt(e.reduce(0) { $0 + $1 * $1 })
            for c in 0..<d {
                let want = e[c] / (1e-6 + norm / sqrt(Double(d)))
                worst = max(worst, abs(Double(out[token * d + c]) - want) / max(abs(want), 1e-3))
            }
            token += 1
        } } }
        #expect(worst <= 1e-5, "worst rel error \(worst)")
        #expect(throws: TensorError.self) { try layer(frames: 4, height: 1, width: 1) }
    }

    /// Nearest resize as PyTorch: index `⌊dst·in/out⌋` (identity at equal size), repeated over batch and frames.
    @Test func paddingMaskIsResizedByNearestNeighbour() throws {
        let mask = try Tensor(shape: [1, 1, 3, 4], scalars: (0..<12).map(Float.init))
        let down = try CosmosTransformer.paddingChannel(mask, batch: 2, frames: 2, height: 2, width: 2)
        #expect(down.shape == [2, 1, 2, 2, 2])
        // rows ⌊0·1.5⌋ = 0, ⌊1·1.5⌋ = 1; columns 0, 2.
        #expect(Array(down.scalars[0..<4]) == [0, 2, 4, 6])
        #expect(Array(down.scalars[12..<16]) == [0, 2, 4, 6])
        let up = try CosmosTransformer.paddingChannel(mask, batch: 1, frames: 1, height: 5, width: 4)
        // rows ⌊i·0.6⌋ = 0, 0, 1, 1, 2.
        #expect(up.scalars.enumerated().allSatisfy { i, v in v == Float([0, 0, 1, 1, 2][i / 4] * 4 + i % 4) })
        #expect(throws: TensorError.self) { try CosmosTransformer.paddingChannel(randomTensor([2, 1, 3, 3], seed: 1), batch: 1, frames: 1, height: 3, width: 3) }
    }
}
