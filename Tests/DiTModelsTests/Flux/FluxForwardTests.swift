import Foundation
import Testing
import Tensors
@testable import DiTModels
import TestSupport

/// The FLUX forward against diffusers 0.42.1 (fixtures generated in float32 on CPU).
///
/// Tolerance: relative L2 ≤ 1e-4 (FORMAT.md §7). Both sides are float32; the reference's own float32 vs
/// float64 distance is ~2e-7, so 1e-4 leaves a wide margin for a different summation order while any
/// indexing, ordering or formula mistake gives errors of order 1e-2 or more.
@Suite struct FluxForwardTests {
    static func model(_ family: String) throws -> FluxTransformer {
        let config = try FluxConfiguration.load(Fixtures.folder(family).appendingPathComponent("config.json"))
        return try FluxFamily.load(config, tensors: Fixtures.tensors(family, "model.safetensors"))
    }

    static func inputs(_ t: [String: Tensor]) throws -> FluxInput {
        FluxInput(hiddenStates: try #require(t["input.hidden_states"]),
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

/// Properties of the forward that do not need a reference file.
@Suite struct FluxForwardPropertyTests {
    /// Batch elements are independent: a batch of two equals the two single-sample forwards
    /// (up to summation-order noise of the batched sgemm; 1e-5 relative is far below any mixing error).
    @Test func batchElementsAreIndependent() throws {
        let model = try FluxForwardTests.model("flux")
        let t = try Fixtures.tensors("flux", "forward.safetensors")
        let one = try FluxForwardTests.inputs(t)
        var other = one
        other.hiddenStates = one.hiddenStates * -0.5
        other.timestep = try Tensor(shape: [1], scalars: [0.25])
        var both = one
        both.hiddenStates = try Tensor.concatenate([one.hiddenStates, other.hiddenStates], axis: 0)
        both.encoderHiddenStates = try Tensor.concatenate([one.encoderHiddenStates, other.encoderHiddenStates], axis: 0)
        both.pooledProjections = try Tensor.concatenate([one.pooledProjections, other.pooledProjections], axis: 0)
        both.timestep = try Tensor(shape: [2], scalars: [one.timestep.scalars[0], 0.25])
        both.guidance = try Tensor(shape: [2], repeating: try #require(one.guidance).scalars[0])
        let out = try model(both)
        let expected = try Tensor.concatenate([model(one), model(other)], axis: 0)
        #expect(try Tensor.relativeL2(out, expected) <= 1e-5)
    }

    @Test func rejectsInputsThatDoNotFitTheConfiguration() throws {
        let model = try FluxForwardTests.model("flux")
        let x = try FluxForwardTests.inputs(Fixtures.tensors("flux", "forward.safetensors"))
        var noGuidance = x
        noGuidance.guidance = nil
        var wrongIDs = x
        wrongIDs.imageIDs = try Tensor(zeros: [x.imageIDs.shape[0] + 1, 3])
        var nan = x
        nan.hiddenStates[0, 0, 0] = .nan
        for bad in [noGuidance, wrongIDs, nan] {
            #expect(throws: TensorError.self) { try model(bad) }
        }
    }

    /// A random model is deterministic in its seed, and the taper leaves the timestep embedding smooth:
    /// one step of a 28-step schedule moves the conditioning much less than a jump across the schedule.
    @Test func randomModelIsSeededAndTapered() throws {
        let config = try FluxConfiguration.parse(Data(FluxLoadingTests.fixtureConfig.utf8))
        let a = try FluxFamily.random(config, seed: 7, steps: 28)
        let b = try FluxFamily.random(config, seed: 7, steps: 28)
        #expect(a.xEmbedder.weight.float32Tensor() == b.xEmbedder.weight.float32Tensor() && a.projOut.weight.float32Tensor() == b.projOut.weight.float32Tensor())
        let emb = a.timeTextEmbed
        let pooled = try Tensor(zeros: [1, 32])
        let g = try Tensor(shape: [1], scalars: [3.5])
        func temb(_ t: Float) throws -> Tensor {
            try emb(timestep: Tensor(shape: [1], scalars: [t]), guidance: g, pooled: pooled)
        }
        let near = try Tensor.meanAbsoluteDifference(temb(0.5), temb(0.5 - 1.0 / 28))
        let far = try Tensor.meanAbsoluteDifference(temb(0.9), temb(0.1))
        #expect(near < 0.25 * far)
    }
}

/// The state between blocks run one at a time (First-Block Cache): the image tokens read through
/// `streams` are current after every block, also between single-stream blocks, where the state keeps the
/// joint sequence instead of concatenating the streams again.
@Suite struct FluxStateTests {
    /// A random model with one double-stream and three single-stream blocks, and a batch of two.
    static func model() throws -> (FluxTransformer, FluxInput) {
        let config = try FluxConfiguration.parse(FluxLoadingTests.config { $0["num_single_layers"] = 3 })
        let model = try FluxFamily.random(config, seed: 3, steps: 28)
        let input = try FluxFamily.randomInputs(configuration: config, batch: 2, latentHeight: 4, latentWidth: 6,
                                                textTokens: 5, seed: 4)
        return (model, input)
    }

    /// Keeping the joint sequence between single-stream blocks gives exactly what diffusers' per-block
    /// concatenate and split gives (here: dropping the kept sequence before every block by assigning the
    /// streams, which makes the next block concatenate text and image tokens again).
    @Test func streamsAreCurrentBetweenSingleStreamBlocks() throws {
        let (model, input) = try Self.model()
        var kept = try model.prepare(input)
        var rejoined = kept
        for i in 0..<model.blockCount(kept) {
            try model.runBlock(i, &kept)
            rejoined.streams = rejoined.streams
            #expect(rejoined.joint == nil)
            try model.runBlock(i, &rejoined)
            #expect(kept.joint != nil || i == 0 || i == model.blockCount(kept) - 1)
            #expect(kept.streams[0] == rejoined.streams[0], "block \(i): image tokens")
            #expect(kept.text == rejoined.text, "block \(i): text tokens")
            if let joint = kept.joint {
                // The kept joint sequence is [text, image] of the current streams.
                #expect(joint == (try Tensor.concatenate([kept.text, kept.streams[0]], axis: 1)))
            }
        }
        var whole = try model.prepare(input)
        try model.runBlocks(&whole)
        #expect(whole.joint == nil && whole.streams[0] == kept.streams[0])
    }

    /// Assigning the streams between single-stream blocks replaces the image tokens the next block reads.
    @Test func assignedStreamsFeedTheNextSingleStreamBlock() throws {
        let (model, input) = try Self.model()
        var s = try model.prepare(input)
        try model.runBlock(0, &s)
        try model.runBlock(1, &s)
        let replaced = s.streams[0] * 0.5
        var viaStreams = s
        viaStreams.streams = [replaced]
        #expect(viaStreams.streams[0] == replaced && viaStreams.text == s.text && viaStreams.joint == nil)
        try model.runBlock(2, &viaStreams)
        var viaJoint = s
        viaJoint.joint = try Tensor.concatenate([s.text, replaced], axis: 1)
        try model.runBlock(2, &viaJoint)
        #expect(viaStreams.streams[0] == viaJoint.streams[0] && viaStreams.text == viaJoint.text)
        var unchanged = s
        try model.runBlock(2, &unchanged)
        #expect(try Tensor.relativeL2(viaStreams.streams[0], unchanged.streams[0]) > 1e-3)
    }
}
