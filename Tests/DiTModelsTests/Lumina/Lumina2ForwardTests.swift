import Foundation
import Testing
import Tensors
import DiTHarness
@testable import DiTModels
import TestSupport

/// The Lumina2 forward against diffusers 0.42.1 (Tests/Fixtures/lumina2 and its variants, float32 on
/// CPU): output, the joint modulated input and the joint residual, padding included.
///
/// Tolerance: relative L2 ≤ 1e-4 (FORMAT.md §7; the reference's own float32-vs-float64 distance is
/// ~3e-7). diffusers rotates in complex128, this port in float32: ~1e-7 more.
@Suite("Lumina2 forward parity")
struct Lumina2ForwardTests {
    static func load(_ folder: URL) throws -> (Lumina2Transformer, Lumina2Input, [String: Tensor], FixtureFolder) {
        let f = try FixtureFolder(folder)
        let c = try Lumina2Configuration.parse(f.config, className: f.className)
        let model = try Lumina2Family.load(c, weightsAt: f.weightsURL)
        return (model, try Lumina2Family.forwardInput(f.forwardArguments(), configuration: c), f.forwardTensors, f)
    }

    @Test(arguments: ["lumina2", "variants/lumina2_b2_lengths", "variants/lumina2_axes_refiners", "variants/lumina2_gqa_two_axes"])
    func forwardMatchesDiffusers(_ name: String) throws {
        let (model, x, t, folder) = try Self.load(Fixtures.root.appendingPathComponent(name))
        var p = try model.prepare(x)
        let hIn = p.joint
        let m = try model.modulatedInput(p)
        try model.runBlocks(&p)
        let out = try model.outputHead(p)
        try LuminaTestSupport.expectMatches([("output", out, "output"), ("modulated input", m, "teacache.modulated_input"),
                                             ("residual", try p.joint - hIn, "teacache.residual")], t, name)
        let json = try JSONSerialization.jsonObject(with: Data(contentsOf: folder.url.appendingPathComponent("forward.json"))) as? [String: Any]
        #expect(p.maxSequenceLength == json?["teacache_cache_key"] as? Int, "\(name): max_seq_len")
        #expect(try model(x) == out)
    }

    /// Batch 2 with captions of 6 and 3 tokens: the joint sequences are padded to 22 and masked; each
    /// sample alone (unpadded, no mask) gives the same output, and its joint rows are the batch's rows.
    @Test func paddedBatchEqualsSamplesAlone() throws {
        let (model, x, _, _) = try Self.load(Fixtures.root.appendingPathComponent("variants/lumina2_b2_lengths"))
        let p = try model.prepare(x)
        #expect(p.captionLengths == [6, 3] && p.maxSequenceLength == 22 && p.keyMask != nil)
        let both = try model(x)
        for i in 0..<2 {
            let one = Lumina2Input(hiddenStates: try x.hiddenStates.slice(axis: 0, i..<(i + 1)),
                                   timestep: try x.timestep.slice(axis: 0, i..<(i + 1)),
                                   encoderHiddenStates: try x.encoderHiddenStates.slice(axis: 0, i..<(i + 1)),
                                   encoderAttentionMask: try x.encoderAttentionMask.slice(axis: 0, i..<(i + 1)))
            let alone = try model.prepare(one)
            #expect(alone.keyMask == nil && alone.maxSequenceLength == p.captionLengths[i] + 16)
            #expect(relL2(try model(one), try both.slice(axis: 0, i..<(i + 1))) <= 1e-5, "sample \(i)")
            let rows = try p.joint.slice(axis: 0, i..<(i + 1)).slice(axis: 1, 0..<alone.maxSequenceLength)
            #expect(relL2(rows, alone.joint) <= 1e-6)
        }
    }

    /// `out_channels` other than `in_channels` sets the width of `norm_out.linear_2` and the output
    /// channels (a sampling loop needs them equal, so no fixture has it).
    @Test func outChannelsSetTheOutputWidth() throws {
        var c = try Lumina2Configuration.load(Fixtures.folder("lumina2").appendingPathComponent("config.json"))
        c.outChannelsSetting = 6
        let model = try Lumina2Family.random(c, seed: 3, steps: 4)
        let x = try Lumina2Family.randomInputs(configuration: c, batch: 2, latentHeight: 4, latentWidth: 6, textTokens: 5,
                                                    validTokens: 3, seed: 4)
        #expect(try model(x).shape == [2, 6, 4, 6])
        #expect(model.normOut.linear2.weight.shape == [2 * 2 * 6, 32])
    }

    /// diffusers' position ids: caption token j at (j, 0, 0), image token (r, c) at (c_i, r, c), padding
    /// at (0, 0, 0); the caption table is zero beyond the caption and the image table is the image part.
    @Test func rotaryPositionsFollowDiffusers() throws {
        var c = Lumina2Configuration()
        c.hiddenSize = 32; c.numAttentionHeads = 2; c.axesDimRope = [4, 6, 6]; c.axesLens = [10, 4, 4]
        let t = try Lumina2RotaryTables(configuration: c, captionLengths: [3, 1], captionTokens: 4, rows: 2, cols: 3)
        #expect(t.joint.cos.shape == [2, 9, 16] && t.caption.cos.shape == [2, 4, 16] && t.image.cos.shape == [2, 6, 16])
        func angle(_ pos: [Double], channel k: Int) -> Double {
            let axes = [4, 6, 6]
            var start = 0
            for (a, d) in axes.enumerated() {
                if k < start + d { let i = (k - start) / 2; return pos[a] / Foundation.pow(10000, Double(2 * i) / Double(d)) }
                start += d
            }
            return .nan
        }
        for (i, cl) in [3, 1].enumerated() {
            for j in 0..<9 {
                let pos: [Double]
                if j < cl { pos = [Double(j), 0, 0] } else if j < cl + 6 { pos = [Double(cl), Double((j - cl) / 3), Double((j - cl) % 3)] }
                else { pos = [0, 0, 0] }
                for k in 0..<16 {
                    #expect(abs(Double(t.joint.cos[i, j, k]) - Foundation.cos(angle(pos, channel: k))) <= 1e-6)
                    #expect(abs(Double(t.joint.sin[i, j, k]) - Foundation.sin(angle(pos, channel: k))) <= 1e-6)
                }
            }
            for j in 0..<4 { #expect(t.caption.cos[i, j, 5] == (j < cl ? t.joint.cos[i, j, 5] : 0)) }
            for j in 0..<6 { #expect(t.image.sin[i, j, 7] == t.joint.sin[i, cl + j, 7]) }
        }
        #expect(!t.joint.uniform)
        // Rotating a batch with per-sample tables equals rotating each sample with its own.
        let x = randomTensor([2, 9, 32], seed: 3)
        let both = try t.joint.apply(x, heads: 2)
        for i in 0..<2 {
            let alone = try RotaryEmbedding.apply(x.slice(axis: 0, i..<(i + 1)), cos: t.joint.cos.slice(axis: 0, i..<(i + 1)).reshaped([9, 16]),
                                                  sin: t.joint.sin.slice(axis: 0, i..<(i + 1)).reshaped([9, 16]), heads: 2)
            #expect(try both.slice(axis: 0, i..<(i + 1)) == alone)
        }
        // Positions beyond axes_lens are rejected, as diffusers' tables end there.
        #expect(throws: TensorError.self) {
            try Lumina2RotaryTables(configuration: c, captionLengths: [10], captionTokens: 10, rows: 2, cols: 2)
        }
        #expect(throws: TensorError.self) {
            try Lumina2RotaryTables(configuration: c, captionLengths: [2], captionTokens: 4, rows: 5, cols: 2)
        }
    }
}
