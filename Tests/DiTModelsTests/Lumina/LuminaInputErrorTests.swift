import Foundation
import Testing
import Tensors
@testable import DiTModels
import TestSupport

/// Bad inputs to both forwards are typed errors that say what to fix, raised before any large
/// allocation: wrong shapes, NaN/inf, masks of the wrong length or with other values than 0/1, a
/// caption mask selecting nothing (Lumina-Next divides by it), rotary tables too small, positions beyond
/// `axes_lens`, a bad proportional-attention base, and inputs beyond the memory budget.
@Suite struct LuminaInputErrorTests {
    static func next() throws -> (LuminaNextTransformer, LuminaNextInput) {
        let (model, args, _) = try LuminaNextForwardTests.load(Fixtures.folder("lumina_next"))
        return (model, try LuminaNextFamily.forwardInput(args, configuration: model.configuration))
    }

    @Test func luminaNextRejectsBadInputs() throws {
        var (model, good) = try Self.next()
        _ = try model(good)
        var cases: [(String, (inout LuminaNextInput) throws -> Void)] = [
            ("rank-3 latent", { $0.hiddenStates = try Tensor(zeros: [1, 4, 8]) }),
            ("wrong channels", { $0.hiddenStates = try Tensor(zeros: [1, 3, 8, 8]) }),
            ("odd latent", { $0.hiddenStates = try Tensor(zeros: [1, 4, 7, 8]) }),
            ("caption batch", { $0.encoderHiddenStates = try Tensor(zeros: [2, 6, 32]) }),
            ("caption width", { $0.encoderHiddenStates = try Tensor(zeros: [1, 6, 31]) }),
            ("mask length", { $0.encoderMask = try Tensor(shape: [1, 5], repeating: 1) }),
            ("mask values", { $0.encoderMask = try Tensor(shape: [1, 6], scalars: [1, 1, 2, 0, 0, 0]) }),
            ("empty mask", { $0.encoderMask = try Tensor(zeros: [1, 6]) }),
            ("timestep shape", { $0.timestep = try Tensor(zeros: [3]) }),
            ("timestep NaN", { $0.timestep = try Tensor(shape: [1], scalars: [.nan]) }),
            ("latent inf", { var x = $0.hiddenStates; x.withUnsafeMutableBufferPointer { $0[5] = .infinity }; $0.hiddenStates = x }),
            ("caption NaN", { var x = $0.encoderHiddenStates; x.withUnsafeMutableBufferPointer { $0[0] = .nan }; $0.encoderHiddenStates = x }),
            ("small table", { $0.rotary = .table(try Tensor(zeros: [3, 4, 8, 2])) }),
            ("table NaN", { $0.rotary = .table(try Tensor(shape: [4, 4, 8, 2], repeating: .nan)) }),
            ("bad factor", { $0.rotary = .computed(linearFactor: 0, ntkFactor: 1) }),
            ("base 1", { $0.baseSequenceLength = 1 }),
        ]
        cases.append(("budget", { _ in model.memoryBudget = MemoryBudget(bytes: 1000) }))
        try LuminaTestSupport.expectEveryCaseThrows(good, cases) { _ = try model($0) }
        model.memoryBudget = .machineDefault
        good.baseSequenceLength = nil
        _ = try model(good)
    }

    @Test func lumina2RejectsBadInputs() throws {
        var (model, good, _, _) = try Lumina2ForwardTests.load(Fixtures.folder("lumina2"))
        _ = try model(good)
        var cases: [(String, (inout Lumina2Input) throws -> Void)] = [
            ("wrong channels", { $0.hiddenStates = try Tensor(zeros: [1, 5, 8, 8]) }),
            ("odd latent", { $0.hiddenStates = try Tensor(zeros: [1, 4, 8, 9]) }),
            ("empty caption", { $0.encoderHiddenStates = try Tensor(zeros: [1, 0, 16]); $0.encoderAttentionMask = try Tensor(zeros: [1, 0]) }),
            ("caption width", { $0.encoderHiddenStates = try Tensor(zeros: [1, 8, 15]) }),
            ("mask batch", { $0.encoderAttentionMask = try Tensor(shape: [2, 8], repeating: 1) }),
            ("mask values", { $0.encoderAttentionMask = try Tensor(shape: [1, 8], repeating: 0.5) }),
            ("timestep rank", { $0.timestep = try Tensor(zeros: [1, 1]) }),
            ("caption inf", { var x = $0.encoderHiddenStates; x.withUnsafeMutableBufferPointer { $0[3] = -.infinity }; $0.encoderHiddenStates = x }),
            // axes_lens = [300, 512, 512] with patch 2: a 2 × 1026 latent has 513 patch columns.
            ("grid beyond axes_lens", { $0.hiddenStates = try Tensor(zeros: [1, 4, 2, 1026]) }),
        ]
        cases.append(("budget", { _ in model.memoryBudget = MemoryBudget(bytes: 1000) }))
        try LuminaTestSupport.expectEveryCaseThrows(good, cases) { _ = try model($0) }
        // An all-zero caption mask is valid (no caption token enters the joint sequence), as in diffusers.
        model.memoryBudget = .machineDefault
        good.encoderAttentionMask = try Tensor(zeros: [1, 8])
        let state = try model.prepare(good)
        #expect(state.captionLengths == [0] && state.maxSequenceLength == 16)
        #expect(try model(good).isFinite)
    }

    /// A caption longer than `axes_lens[0] − 1` tokens: its image tokens would sit at a position the
    /// reference's table does not have.
    @Test func captionBeyondAxesLensIsRejected() throws {
        var c = try Lumina2Configuration.load(Fixtures.folder("lumina2").appendingPathComponent("config.json"))
        c.axesLens = [6, 512, 512]
        let model = try Lumina2Family.random(c, seed: 1, steps: 4)
        let x = try Lumina2Family.randomInputs(configuration: c, batch: 1, latentHeight: 4, latentWidth: 4, textTokens: 8,
                                                    validTokens: 5, seed: 2)
        _ = try model(x)
        var longer = x
        longer.encoderAttentionMask = try Tensor(shape: [1, 8], repeating: 1)
        #expect(performing: { try model(longer) }, throws: { e in
            guard case let TensorError.invalidArgument(_, reason)? = e as? TensorError else { return false }
            return reason.contains("axes_lens[0]")
        })
    }

    /// The modulated input needs a layer; benchmark and random-input sizes are bounded.
    @Test func noLayerAndHugeSizesAreTyped() throws {
        var c = LuminaNextConfiguration()
        (c.hiddenSize, c.numAttentionHeads, c.numKVHeads, c.numLayers, c.crossAttentionDim, c.multipleOf) = (16, 2, 2, 0, 8, 8)
        let model = try LuminaNextFamily.random(c, seed: 1, steps: 4)
        let x = try LuminaNextFamily.randomInputs(configuration: c, batch: 1, latentHeight: 4, latentWidth: 4, textTokens: 3, seed: 1)
        #expect(throws: TensorError.self) { try model.modulatedInput(model.prepare(x)) }
        #expect(try model(x).shape == [1, 8, 4, 4])
        #expect(throws: ModelLoadError.self) {
            try LuminaNextFamily.cost(c, sizes: BenchmarkInputs(["batch": 65536, "latent_height": 65536, "latent_width": 65536, "text_tokens": 1]))
        }
        #expect(throws: ModelLoadError.self) {
            try Lumina2Family.randomInputs(Lumina2Family.benchmarkDefault.configuration,
                                           sizes: BenchmarkInputs(["batch": 1, "latent_height": 63, "latent_width": 64, "text_tokens": 8]), seed: 1)
        }
    }
}
