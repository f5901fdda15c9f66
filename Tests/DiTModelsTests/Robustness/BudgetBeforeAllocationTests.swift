import Foundation
import Testing
import Tensors
import DiTHarness
@testable import DiTModels

/// `bench forward`'s entry point refuses a run far over its memory budget from the sizes alone — in well
/// under a second, before the model or any input is allocated — and names inputs that would fit.
@Suite struct BudgetBeforeAllocationTests {
    /// FLUX.1-dev's transformer configuration (3072 wide, 19 double + 38 single blocks).
    static var fluxDev: FluxConfiguration {
        var c = FluxConfiguration()
        c.patchSize = 1
        c.inChannels = 64
        c.numLayers = 19
        c.numSingleLayers = 38
        c.attentionHeadDim = 128
        c.numAttentionHeads = 24
        c.jointAttentionDim = 4096
        c.pooledProjectionDim = 768
        c.guidanceEmbeds = true
        c.axesDimsRope = [16, 56, 56]
        return c
    }

    /// A 4096×4096-pixel image (512×512 latent): 65,536 image tokens.
    static let hugeInputs = BenchmarkInputs(["batch": 2, "latent_height": 512, "latent_width": 512, "text_tokens": 512])

    @Test func aForwardFarOverBudgetIsRefusedInUnderASecondWithInputsThatFit() throws {
        let budget = MemoryBudget(gigabytes: 2)
        let clock = ContinuousClock()
        var message = ""
        let elapsed = clock.measure {
            do {
                _ = try ForwardBenchmark.make(FluxFamily.self, configuration: Self.fluxDev, inputs: Self.hugeInputs,
                                              memoryBudget: budget)
                Issue.record("a forward far over the budget was accepted")
            } catch let TensorError.memoryBudgetExceeded(operation, bytes, limit) {
                #expect(bytes > 10 * limit && limit == budget.bytes, "\(bytes) bytes")
                message = "\(TensorError.memoryBudgetExceeded(operation: operation, bytes: bytes, budget: limit))"
            } catch {
                Issue.record("unexpected error \(error)")
            }
        }
        #expect(elapsed < .seconds(1), "refusing took \(elapsed)")
        #expect(message.contains("inputs that fit: batch 1, latent_height "), "\(message)")
        #expect(message.contains("over the budget of 2 GB"), "\(message)")
    }

    /// The suggested inputs fit, and twice their extents would not (the largest of their proportions).
    @Test func theSuggestedInputsFitAndTwiceThemDoNot() throws {
        let budget = MemoryBudget(gigabytes: 2)
        let fit = try #require(RunBudget.largestFittingInputs(FluxFamily.self, configuration: Self.fluxDev,
                                                               inputs: Self.hugeInputs, budget: budget))
        #expect(fit.values["batch"] == 1)
        let h = try #require(fit.values["latent_height"]), w = try #require(fit.values["latent_width"])
        #expect(h == w && h % 2 == 0 && h < 512)
        let cost = try FluxFamily.cost(Self.fluxDev, sizes: fit)
        #expect(Double(cost.activationBytes) <= budget.bytes)
        let doubled = BenchmarkInputs(fit.values.mapValues { $0 } .merging(
            ["latent_height": 2 * h, "latent_width": 2 * w, "text_tokens": 2 * fit.values["text_tokens"]!]) { $1 })
        #expect(Double(try FluxFamily.cost(Self.fluxDev, sizes: doubled).activationBytes) > budget.bytes)
        // A budget nothing fits in: no suggestion, still a typed refusal.
        #expect(RunBudget.largestFittingInputs(FluxFamily.self, configuration: Self.fluxDev, inputs: Self.hugeInputs,
                                               budget: MemoryBudget(bytes: 1)) == nil)
        #expect(throws: TensorError.self) {
            try RunBudget.check(FluxFamily.self, configuration: Self.fluxDev, inputs: Self.hugeInputs, budget: MemoryBudget(bytes: 1))
        }
    }

    /// Within budget, the weights get exactly what the activations leave.
    @Test func theWeightsGetWhatTheActivationsLeave() throws {
        let inputs = BenchmarkInputs(["batch": 1, "latent_height": 8, "latent_width": 8, "text_tokens": 8])
        let cost = try FluxFamily.cost(Self.fluxDev, sizes: inputs)
        let budget = MemoryBudget(bytes: 3 * Double(cost.activationBytes))
        let (_, parameters) = try RunBudget.check(FluxFamily.self, configuration: Self.fluxDev, inputs: inputs, budget: budget,
                                                  activationSets: 2)
        #expect(parameters == cost.activationBytes / 4)
    }
}
