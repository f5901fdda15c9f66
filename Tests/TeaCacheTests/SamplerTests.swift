import Foundation
import Testing
import Tensors
@testable import TeaCache
import TestSupport

/// ``FlowMatchEulerSampler`` against the fixtures' schedules and a hand-written loop.
@Suite struct SamplerTests {
    @Test func schedulesMatchEveryFixtureBitwise() throws {
        let families = try FixtureSchedule.all()
        #expect(!families.isEmpty)
        for (name, f) in families {
            let convention = try #require(TimestepConvention(rawValue: f.timestepConvention), "\(name)")
            let steps = try #require(f.numSteps, "\(name): num_steps")
            let sampler = try FlowMatchEulerSampler(steps: steps, timestepConvention: convention,
                                                    guidanceScale: f.cfg?.guidanceScale)
            // The JSON holds exact float32 values as decimals: Float(Double) recovers them exactly.
            #expect(sampler.sigmas == (try #require(f.sigmas)).map { Float($0) }, "\(name) sigmas")
            #expect(sampler.dt == (try #require(f.dt)).map { Float($0) }, "\(name) dt")
            let timesteps = (try #require(f.timesteps)).map { Float($0) }
            if convention == .quarterLogSigma {
                // torch's float32 log (MKL) is not correctly rounded; logf is: one ulp apart at most.
                #expect(zip(sampler.timesteps, timesteps).allSatisfy { abs($0 - $1) <= $1.ulp }, "\(name) timesteps")
            } else {
                #expect(sampler.timesteps == timesteps, "\(name) timesteps")
            }
            #expect(sampler.branches.count * steps == f.modelCalls, "\(name): calls per run")
        }
    }

    /// v = a·x + b on every element; naive scalar Euler loop as the reference.
    @Test(arguments: [Float(1), -1])
    func closedFormModelMatchesNaiveLoop(sign: Float) throws {
        let n = 7
        let a: Float = -0.7, b: Float = 0.3
        var rng = SeededGenerator(seed: 30)
        let x0 = try rng.tensor([2, 3, 4])
        let sampler = try FlowMatchEulerSampler(steps: n, timestepConvention: .sigmaTimes1000,
                                                velocity: VelocityConvention(sign: sign))
        var calls: [(BranchKey, Int, Float)] = []
        let result = try sampler.sample(from: x0) { latent, t, branch, step in
            calls.append((branch, step, t))
            return latent * a + b
        }
        var x = x0.scalars
        for i in 0..<n {
            for j in x.indices {
                let out = a * x[j] + b
                let v = sign < 0 ? -out : out
                x[j] = x[j] + sampler.dt[i] * v
            }
        }
        #expect(result.scalars == x)
        #expect(calls.map(\.1) == Array(0..<n))
        #expect(calls.allSatisfy { $0.0 == .cond })
        #expect(calls.map(\.2) == sampler.timesteps)
    }

    @Test func guidanceAndChannelSelectionMatchNaiveLoop() throws {
        let n = 5, g: Float = 4
        var rng = SeededGenerator(seed: 31)
        let x0 = try rng.tensor([1, 2, 3])
        // Lumina-Next style: the model predicts 2C channels on axis 1; the first C (negated) are v.
        let sampler = try FlowMatchEulerSampler(
            steps: n, timestepConvention: .oneMinusSigma,
            velocity: VelocityConvention(sign: -1, channels: .first(count: 2, axis: 1)), guidanceScale: g)
        var order: [BranchKey] = []
        let result = try sampler.sample(from: x0) { latent, t, branch, _ in
            order.append(branch)
            let k: Float = branch == .cond ? 0.9 : -0.4
            let out = latent * k + t
            return try Tensor.concatenate([out, out * 100], axis: 1)
        }
        #expect(order == Array(repeating: [BranchKey.cond, .uncond], count: n).flatMap { $0 })
        var x = x0.scalars
        for i in 0..<n {
            let t = sampler.timesteps[i]
            for j in x.indices {
                let c = x[j] * 0.9 + t, u = x[j] * -0.4 + t
                let out = u + g * (c - u)
                x[j] = x[j] + sampler.dt[i] * -out
            }
        }
        #expect(result.scalars == x)
    }

    @Test func progressReportsAndCancels() throws {
        let sampler = try FlowMatchEulerSampler(steps: 6, timestepConvention: .sigma)
        var seen: [Int] = []
        #expect(throws: CacheError.cancelled(completedSteps: 2, totalSteps: 6)) {
            try sampler.sample(from: try Tensor(zeros: [1, 2]), model: { x, _, _, _ in x }) { p in
                seen.append(p.step)
                #expect(p.total == 6 && p.elapsed >= 0)
                return p.step == 2 ? .cancel : .proceed
            }
        }
        #expect(seen == [1, 2])
    }

    @Test func invalidSettingsAreTyped() throws {
        #expect(throws: CacheError.self) { try FlowMatchEulerSampler(steps: 0, timestepConvention: .sigma) }
        #expect(throws: CacheError.invalidSampler("steps is 1000001; use at most 1000000")) {
            try FlowMatchEulerSampler(steps: FlowMatchEulerSampler.maximumSteps + 1, timestepConvention: .sigma)
        }
        #expect(throws: CacheError.self) {
            try FlowMatchEulerSampler(steps: 4, timestepConvention: .sigma, velocity: VelocityConvention(sign: 2))
        }
        let s = try FlowMatchEulerSampler(steps: 2, timestepConvention: .sigma)
        #expect(throws: CacheError.self) {   // output shape differs from the latent
            try s.sample(from: try Tensor(zeros: [1, 2]), model: { _, _, _, _ in try Tensor(zeros: [1, 3]) })
        }
    }

    @Test func cachedModelAtThresholdZeroMatchesUncachedSampling() throws {
        let model = try TinyDiT(seed: 32)
        var rng = SeededGenerator(seed: 33)
        let x0 = try rng.tensor([1, 5, 4])
        let sampler = try FlowMatchEulerSampler(steps: 6, timestepConvention: .sigma, guidanceScale: 2)
        let plain = try sampler.sample(from: x0) { x, t, _, _ in try model.forward(TinyDiT.Input(latent: x, timesteps: [t])) }
        let cached = CachedTransformer(model: model, configuration: try .faithful(coefficients: [0, 0, 0, 1, 0], threshold: 0))
        try cached.beginRun(steps: sampler.steps)
        let viaCache = try sampler.sample(from: x0) { x, t, branch, _ in
            try cached(TinyDiT.Input(latent: x, timesteps: [t]), branch: branch)
        }
        #expect(viaCache == plain)
        #expect(cached.nextStep(for: .cond) == 6 && cached.nextStep(for: .uncond) == 6)
    }
}
