import Testing
import TeaCache
import Tensors
@testable import DiTModels

/// ``SamplingInputs/init(cond:uncond:batch:adjust:)``: which base each branch gets, the latent and the
/// timestep written into it, and `adjust` after them.
@Suite struct SamplingInputsTests {
    struct Call: LatentTimestepInput {
        var hiddenStates: Tensor
        var timestep: Tensor
        var caption: Float
        var seenTimestep: Float = -1
    }

    @Test func branchesGetTheirBaseWithTheCallsLatentAndTimestep() throws {
        let noise = try Tensor(shape: [2, 3], scalars: [1, 2, 3, 4, 5, 6])
        let cond = Call(hiddenStates: noise, timestep: try Tensor(shape: [2], repeating: 0), caption: 1)
        let uncond = Call(hiddenStates: noise, timestep: try Tensor(shape: [2], repeating: 0), caption: -1)
        let inputs = SamplingInputs(cond: cond, uncond: uncond, batch: 2) { x, t in x.seenTimestep = t }
        #expect(inputs.latent.scalars == noise.scalars)
        let latent = try Tensor(shape: [2, 3], repeating: 7)
        let c = try inputs.makeInput(latent, 0.25, .cond)
        let u = try inputs.makeInput(latent, 0.5, .uncond)
        #expect(c.caption == 1 && u.caption == -1)
        #expect(c.hiddenStates.scalars == latent.scalars && u.hiddenStates.scalars == latent.scalars)
        #expect(c.timestep.shape == [2] && c.timestep.scalars == [0.25, 0.25])
        #expect(u.timestep.scalars == [0.5, 0.5])
        #expect(c.seenTimestep == 0.25 && u.seenTimestep == 0.5)
        // Without an unconditional base, both branches use `cond`.
        let single = SamplingInputs(cond: cond, batch: 2)
        #expect(try single.makeInput(latent, 0.75, .uncond).caption == 1)
    }
}
