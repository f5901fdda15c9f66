import Foundation
import Testing
import TeaCache
import Tensors
import DiTHarness
@testable import DiTModels
import TestSupport

/// The HiDream-I1 forward against diffusers 0.42.1 (the public fixture, float32 on CPU), and the
/// fixture's TeaCache run.
///
/// Tolerance: relative L2 ≤ 1e-4 (FORMAT.md §7); the reference's own float32 vs float64 distance is
/// ~2e-7, while an indexing, ordering or routing mistake gives errors of order 1e-2 or more.
@Suite struct HiDreamI1ForwardTests {
    static func configuration() throws -> HiDreamI1Configuration {
        try HiDreamI1Configuration.load(Fixtures.url("hidream_i1", "config.json"))
    }

    static func model() throws -> HiDreamI1Transformer {
        try HiDreamI1Family.load(configuration(), tensors: Fixtures.tensors("hidream_i1", "model.safetensors"))
    }

    static func inputs(_ t: [String: Tensor]) throws -> HiDreamI1Input {
        HiDreamI1Input(hiddenStates: try #require(t["input.hidden_states"]), timestep: try #require(t["input.timesteps"]),
                       encoderHiddenStatesT5: try #require(t["input.encoder_hidden_states_t5"]),
                       encoderHiddenStatesLlama3: try #require(t["input.encoder_hidden_states_llama3"]),
                       pooledEmbeds: try #require(t["input.pooled_embeds"]))
    }

    @Test func forwardMatchesDiffusers() throws {
        let model = try Self.model()
        let t = try Fixtures.tensors("hidream_i1", "forward.safetensors")
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
        #expect(out.shape == [1, 4, 8, 8])
        // The one-call forward is the same composition.
        #expect(try model(x) == out)
    }

    /// `teacache verify` on the public folder: forward, the TeaCache4HiDream-I1 counter (counters 0 and 1
    /// forced, the last call not), every decision and both final latents.
    @Test func verifyPassesOnTheFixture() throws {
        let report = try FixtureVerifier.verify(folder: Fixtures.folder("hidream_i1"))
        let failed = report.checks.filter { !$0.passed }.map { "\($0.name): \($0.measurement)" }
        #expect(report.family == "hidream_i1" && report.passed && failed.isEmpty, "\(failed)")
        let required: Set = ["forward output", "forward modulated_input", "forward residual", "sampling final uncached",
                             "sampling default decisions", "sampling default final cached"]
        #expect(required.isSubset(of: Set(report.checks.map(\.name))), "\(report.checks.map(\.name))")
    }

    /// The reference's counter: `counter < 0.1·N` forced (a float bound), no last-step forcing.
    @Test func scheduleIsTheReferenceCounter() throws {
        let s = TeaCacheSchedule.hiDreamI1Reference
        #expect((0..<12).filter { s.forcedReason(step: $0, steps: 12) != nil } == [0, 1])
        #expect((0..<50).filter { s.forcedReason(step: $0, steps: 50) != nil } == [0, 1, 2, 3, 4])
        #expect((0..<5).filter { s.forcedReason(step: $0, steps: 5) != nil } == [0])
        #expect(HiDreamI1Family.defaultPreset.schedule == s)
    }

    @Test func conventionsAndPresets() throws {
        #expect(HiDreamI1Family.timestepConvention.timestep(sigma: 0.625) == 625)
        #expect(HiDreamI1Family.velocity(HiDreamI1Configuration()) == .negated)
        #expect(HiDreamI1Family.presets.map(\.name) == ["hidream_i1", "hidream_i1_dev", "hidream_i1_fast"])
        #expect(HiDreamI1Family.defaultPreset.defaultThreshold == 0.3)
        #expect(TeaCachePreset.unportedModels.isEmpty)
        #expect(try DiTFamilies.family(forClass: "HiDreamImageTransformer2DModel") == HiDreamI1Family.self)
        #expect(try DiTFamilies.family(named: "hidream_i1") == HiDreamI1Family.self)
    }
}

/// Properties of the forward that need no reference file.
@Suite struct HiDreamI1PropertyTests {
    /// Batch elements are independent: a batch of two equals the two single-sample forwards (up to the
    /// batched sgemm's summation order; 1e-5 is far below any mixing error).
    @Test func batchElementsAreIndependent() throws {
        let model = try HiDreamI1ForwardTests.model()
        let one = try HiDreamI1ForwardTests.inputs(Fixtures.tensors("hidream_i1", "forward.safetensors"))
        var other = one
        other.hiddenStates = one.hiddenStates * -0.5
        other.timestep = try Tensor(shape: [1], scalars: [250])
        other.pooledEmbeds = one.pooledEmbeds * 2
        let both = HiDreamI1Input(
            hiddenStates: try Tensor.concatenate([one.hiddenStates, other.hiddenStates], axis: 0),
            timestep: try Tensor.concatenate([one.timestep, other.timestep], axis: 0),
            encoderHiddenStatesT5: try Tensor.concatenate([one.encoderHiddenStatesT5, other.encoderHiddenStatesT5 * 0.5], axis: 0),
            encoderHiddenStatesLlama3: try Tensor.concatenate([one.encoderHiddenStatesLlama3, other.encoderHiddenStatesLlama3], axis: 1),
            pooledEmbeds: try Tensor.concatenate([one.pooledEmbeds, other.pooledEmbeds], axis: 0))
        other.encoderHiddenStatesT5 = other.encoderHiddenStatesT5 * 0.5
        let out = try model(both)
        #expect(relL2(try out.slice(axis: 0, 0..<1), try model(one)) < 1e-5)
        #expect(relL2(try out.slice(axis: 0, 1..<2), try model(other)) < 1e-5)
    }

    /// Block by block equals the block stack, and the image tokens are the one cached stream.
    @Test func blockwiseEqualsTheStack() throws {
        let model = try HiDreamI1ForwardTests.model()
        let x = try HiDreamI1ForwardTests.inputs(Fixtures.tensors("hidream_i1", "forward.safetensors"))
        var a = try model.prepare(x), b = a
        try model.runBlocks(&a)
        for i in 0..<model.blockCount(b) { try model.runBlock(i, &b) }
        #expect(a.image == b.image && a.text == b.text)
        #expect(a.streams.count == 1 && a.streams[0] == a.image)
        #expect(throws: TensorError.self) { try model.runBlock(2, &b) }
    }

    /// Rotary axes covering half a head rotate its first half only: the second half passes unchanged,
    /// so a model whose heads differ only there gives the first-half rotation of diffusers' chunked path.
    /// Checked through a no-expert, half-rotary model against the same model with whole-head axes on
    /// position-free tokens (a 2×2 latent with patch 2 is a single token at position 0, where every
    /// rotation is the identity): both must agree exactly.
    @Test func halfHeadRotaryIsTheIdentityAtPositionZero() throws {
        var half = Self.tiny(routed: 0)
        half.attentionHeadDim = 12
        half.axesDimsRope = [2, 2, 2]
        var whole = half
        whole.axesDimsRope = [4, 4, 4]
        let weights = try HiDreamI1Family.random(half, seed: 5, steps: 12)
        let reloaded = try HiDreamI1Family.random(whole, seed: 5, steps: 12)
        let x = try Self.input(half, side: 2, seed: 6)
        #expect(try weights(x) == reloaded(x))
    }

    /// A non-square latent runs padded to `max_seq` (its output has the latent's shape) and its real
    /// tokens see the padding tokens: a larger `max_resolution` (more padding) changes the output, as
    /// diffusers' zeroed keys still take part in the softmax. The padded run's parity with diffusers is
    /// the `hidream_i1_h4w8` variant folder.
    @Test func nonSquareLatentsRunPadded() throws {
        var c = Self.tiny()
        c.maxResolution = [6, 6]
        let model = try HiDreamI1Family.random(c, seed: 7, steps: 12)
        var x = try Self.input(c, side: 4, seed: 8)
        x.hiddenStates = randomTensor([1, 4, 4, 6], seed: 9)
        let out = try model(x)
        #expect(out.shape == [1, 4, 4, 6])
        var wider = c
        wider.maxResolution = [8, 8]
        let other = try HiDreamI1Family.random(wider, seed: 7, steps: 12)
        #expect(relL2(try other(x), out) > 1e-4)
        var state = try model.prepare(x)
        #expect(state.image.shape == [1, 9, c.innerDim])
        try model.runBlocks(&state)
        #expect(try model.outputHead(state) == out)
    }

    static func tiny(routed: Int = 3, activated: Int = 2) -> HiDreamI1Configuration {
        var c = HiDreamI1Configuration()
        c.patchSize = 2
        c.inChannels = 4
        c.numLayers = 1
        c.numSingleLayers = 1
        c.attentionHeadDim = 6
        c.numAttentionHeads = 2
        c.captionChannels = [8, 6]
        c.textEmbDim = 5
        c.numRoutedExperts = routed
        c.numActivatedExperts = activated
        c.axesDimsRope = [2, 2, 2]
        c.llamaLayers = [1, -1]
        return c
    }

    static func input(_ c: HiDreamI1Configuration, side: Int, seed: UInt64, batch: Int = 1) throws -> HiDreamI1Input {
        HiDreamI1Input(hiddenStates: randomTensor([batch, c.inChannels, side, side], seed: seed),
                       timestep: try Tensor(shape: [batch], repeating: 700),
                       encoderHiddenStatesT5: randomTensor([batch, 3, c.captionChannels[0]], seed: seed + 1),
                       encoderHiddenStatesLlama3: randomTensor([3, batch, 2, c.captionChannels[1]], seed: seed + 2),
                       pooledEmbeds: randomTensor([batch, c.textEmbDim], seed: seed + 3))
    }
}

/// The mixture-of-experts feed-forward against a naive Double composition, and `torch.topk`'s CPU tie
/// order.
@Suite struct HiDreamI1MixtureOfExpertsTests {
    static func silu(_ x: Double) -> Double { x / (1 + Foundation.exp(-x)) }

    /// `Σ_{e ∈ top-k} p_e·expert_e(x) + shared(x)` per token, with `p = softmax(gate·x)` not renormalised,
    /// top-k by value (random weights: no ties). Tolerance 1e-5 relative (float32 against Double).
    @Test(arguments: [(4, 2), (3, 1), (5, 5)])
    func matchesNaiveRouting(routed: Int, activated: Int) throws {
        let c = HiDreamI1PropertyTests.tiny(routed: routed, activated: activated)
        let d = c.innerDim
        let loader = WeightLoader(randomSeed: 11)
        let moe = HiDreamI1MixtureOfExperts(loader.root["ff_i"], configuration: c)
        try loader.finish()
        let w = loader.supplied.mapValues(doubles)
        let x = randomTensor([2, 5, d], seed: 12)
        let xs = doubles(x)
        func swiglu(_ scope: String, _ row: [Double], hidden: Int) -> [Double] {
            let a = naiveLinear(row, inFeatures: d, weight: w["ff_i.\(scope).w1.weight"]!, bias: nil)
            let b = naiveLinear(row, inFeatures: d, weight: w["ff_i.\(scope).w3.weight"]!, bias: nil)
            return naiveLinear(zip(a, b).map { Self.silu($0) * $1 }, inFeatures: hidden, weight: w["ff_i.\(scope).w2.weight"]!, bias: nil)
        }
        var expected: [Double] = []
        for r in 0..<10 {
            let row = Array(xs[(r * d)..<((r + 1) * d)])
            let logits = naiveLinear(row, inFeatures: d, weight: w["ff_i.gate.weight"]!, bias: nil)
            let m = logits.max()!
            let e = logits.map { Foundation.exp($0 - m) }
            let p = e.map { $0 / e.reduce(0, +) }
            let top = p.indices.sorted { p[$0] > p[$1] }.prefix(activated)
            var y = swiglu("shared_experts", row, hidden: c.sharedExpertHiddenDim)
            for i in top {
                let out = swiglu("experts.\(i)", row, hidden: c.expertHiddenDim)
                y = zip(y, out).map { $0 + p[i] * $1 }
            }
            expected += y
        }
        let got = try moe(x)
        #expect(got.shape == x.shape)
        let reference = try Tensor(shape: x.shape, scalars: expected.map(Float.init))
        #expect(relL2(got, reference) < 1e-5, "rel L2 \(relL2(got, reference))")
    }

    /// Tied scores are routed as `torch.topk(scores, k, sorted=False)` routes them on the CPU (torch 2.15,
    /// values printed by it): nth_element's introselect below 64·k values, heap select from 64·k on.
    @Test func tiesFollowTorchTopK() {
        let cases: [([Float], Int, [Int])] = [
            (Array(repeating: 0.125, count: 8), 2, [5, 6]),
            (Array(repeating: 0.125, count: 8), 3, [4, 5, 6]),
            (Array(repeating: 0.125, count: 128), 2, [0, 1]),
            (Array(repeating: 0.25, count: 4), 2, [2, 3]),
            (Array(repeating: 0.25, count: 4), 3, [0, 2, 3]),
            ([0.1, 0.3, 0.3, 0.3], 2, [2, 3]),
            ([0.3, 0.3, 0.2, 0.2], 1, [1]),
            ([0.2, 0.1, 0.2, 0.2, 0.1, 0.2, 0.0, 0.2], 3, [0, 3, 5]),
            (Array(repeating: 0.1, count: 5) + Array(repeating: 0.3, count: 5), 4, [5, 6, 7, 8]),
            (Array(repeating: 0.5, count: 200), 3, [0, 1, 2]),
            (Array((0..<70).flatMap { _ in [Float(0.1), 0.2] }), 2, [1, 3]),
            (Array((0..<70).flatMap { _ in [Float(0.2), 0.1] }), 2, [0, 2]),
            (Array(repeating: 0.0625, count: 16), 4, [9, 10, 11, 12]),
            (Array(repeating: 0.0625, count: 16), 8, [8, 9, 10, 11, 12, 13, 14, 15]),
        ]
        for (values, k, expected) in cases {
            #expect(TorchTopK.indices(values, k: k).sorted() == expected, "\(values.count) values, k = \(k)")
        }
        // Without ties the selection is the k largest.
        let v: [Float] = [0.3, 0.9, 0.1, 0.7, 0.5]
        #expect(TorchTopK.indices(v, k: 2).sorted() == [1, 3])
        #expect(TorchTopK.indices(v, k: 5).sorted() == [0, 1, 2, 3, 4])
    }
}

/// Typed errors for configurations, weights and inputs the model cannot run.
@Suite struct HiDreamI1ErrorTests {
    static func field(_ c: HiDreamI1Configuration) -> String? {
        do { try c.validate(); return nil } catch {
            guard case let .unsupportedConfig(field, _, _) = error else { return "other" }
            return field
        }
    }

    @Test func badConfigurationsNameTheirField() throws {
        let good = HiDreamI1PropertyTests.tiny()
        #expect(Self.field(good) == nil)
        var c = good; c.patchSize = nil
        #expect(Self.field(c) == "patch_size")
        c = good; c.captionChannels = [8]
        #expect(Self.field(c) == "caption_channels")
        c = good; c.numActivatedExperts = 4
        #expect(Self.field(c) == "num_activated_experts")
        c = good; c.numRoutedExperts = 0; c.numActivatedExperts = 4
        #expect(Self.field(c) == nil, "without experts the activated count is unused")
        c = good; c.axesDimsRope = [2, 2, 4]
        #expect(Self.field(c) == "axes_dims_rope")
        c = good; c.axesDimsRope = [2, 4]
        #expect(Self.field(c) == "axes_dims_rope")
        c = good; c.llamaLayers = [0]
        #expect(Self.field(c) == "llama_layers")
        c = good; c.numLayers = 0; c.numSingleLayers = 0; c.llamaLayers = []
        #expect(Self.field(c) == "num_layers")
        c = good; c.numAttentionHeads = 0
        #expect(Self.field(c) == "num_attention_heads")
        #expect(throws: ModelLoadError.self) {
            _ = try HiDreamI1Configuration.parse(Data(#"{"_class_name": "HiDreamImageTransformer2DModel", "patch_size": 2}"#.utf8))
        }
    }

    @Test func missingAndMisshapedWeightsAreListed() throws {
        let c = try HiDreamI1ForwardTests.configuration()
        var t = try Fixtures.tensors("hidream_i1", "model.safetensors")
        t["double_stream_blocks.0.block.ff_i.gate.weight"] = nil
        t["single_stream_blocks.0.block.ff_i.experts.1.w2.weight"] = try Tensor(zeros: [12, 255])
        #expect { _ = try HiDreamI1Family.load(c, tensors: t) } throws: { e in
            guard case let ModelLoadError.weightMismatch(missing, _, misshaped) = e else { return false }
            return missing == ["double_stream_blocks.0.block.ff_i.gate.weight"]
                && misshaped.map(\.name) == ["single_stream_blocks.0.block.ff_i.experts.1.w2.weight"]
        }
    }

    @Test func badInputsAreRefused() throws {
        var c = HiDreamI1PropertyTests.tiny()
        c.maxResolution = [4, 4]
        let model = try HiDreamI1Family.random(c, seed: 1, steps: 12)
        let good = try HiDreamI1PropertyTests.input(c, side: 4, seed: 2)
        _ = try model(good)
        var x = good; x.hiddenStates = randomTensor([1, 4, 4, 6], seed: 3)
        #expect(throws: TensorError.self, "non-square: 6 patches, max_seq 4") { try model(x) }
        x = good; x.hiddenStates = randomTensor([1, 4, 5, 5], seed: 3)
        #expect(throws: TensorError.self, "not a multiple of the patch") { try model(x) }
        x = good; x.hiddenStates = randomTensor([1, 3, 4, 4], seed: 3)
        #expect(throws: TensorError.self, "channels") { try model(x) }
        x = good; x.encoderHiddenStatesLlama3 = randomTensor([1, 1, 2, 6], seed: 3)
        #expect(throws: TensorError.self, "llama layer 1 of 1") { try model(x) }
        x = good; x.encoderHiddenStatesT5 = randomTensor([1, 3, 7], seed: 3)
        #expect(throws: TensorError.self, "T5 width") { try model(x) }
        x = good; x.pooledEmbeds = randomTensor([2, 5], seed: 3)
        #expect(throws: TensorError.self, "pooled batch") { try model(x) }
        x = good; x.timestep = try Tensor(shape: [1], scalars: [.nan])
        #expect(throws: TensorError.self, "NaN") { try model(x) }
        var small = model
        small.memoryBudget = MemoryBudget(bytes: 1000)
        #expect(throws: TensorError.self, "budget") { try small(good) }
    }
}
