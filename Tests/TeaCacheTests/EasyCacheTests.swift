import Foundation
import Testing
import Tensors
@testable import TeaCache

/// EasyCache against the rule written out as a plain loop over Float scalars, and step masks on every policy.
@Suite struct EasyCacheTests {
    static func meanAbs(_ a: [Float], _ b: [Float]? = nil) -> Double {
        var sum = 0.0
        for i in a.indices { sum += Double(abs(a[i] - (b?[i] ?? 0))) }
        return sum / Double(a.count)
    }

    /// EasyCache by hand: decisions and outputs.
    static func naive(_ model: TinyDiT, _ inputs: [TinyDiT.Input], threshold: Double, warmup: Int, cap: Int?) throws -> (outputs: [Tensor], computed: [Bool]) {
        var prevX: [Float]?, xc: [Float]?, vc: [Float]?, rate: Double?, acc = 0.0, streak = 0
        var residual: Tensor?
        var outs: [Tensor] = [], computed: [Bool] = []
        for (step, input) in inputs.enumerated() {
            var s = try model.prepare(input)
            let xt = s.streams[0], x = xt.scalars
            var compute = true
            if step >= warmup, residual != nil, let p = prevX, let k = rate, let v = vc, cap.map({ streak < $0 }) ?? true {
                let e = acc + k * Double(Float(meanAbs(x, p)) / Float(meanAbs(v)))
                if e < threshold { compute = false; acc = e }
            }
            prevX = x
            if compute {
                try model.runBlocks(&s)
                let v = s.streams[0].scalars
                residual = try s.streams[0] - xt
                if let xo = xc, let vo = vc, meanAbs(x, xo) > 0 {
                    rate = Double(Float(meanAbs(v, vo)) / Float(meanAbs(x, xo)))
                }
                xc = x
                vc = v
                acc = 0
                streak = 0
            } else {
                s.streams[0] = try xt + residual!
                streak += 1
            }
            computed.append(compute)
            outs.append(try model.outputHead(s))
        }
        return (outs, computed)
    }

    @Test(arguments: [(0.02, 0.2, nil as Int?), (0.08, 0.2, nil), (0.3, 0.1, 2), (1e9, 0.0, nil), (0.0, 0.2, nil)])
    func easyCacheMatchesTheNaiveLoop(_ setting: (Double, Double, Int?)) throws {
        let (threshold, warmupRatio, cap) = setting
        let model = try TinyDiT(seed: 61, depth: 2)
        let inputs = try CachePolicyTests.inputs(steps: 12)
        let c = try EasyCacheConfiguration(threshold: threshold, warmupRatio: warmupRatio, maxConsecutiveSkips: cap)
        let cached = CachedTransformer(model: model, policy: .easyCache(c))
        try cached.beginRun(steps: inputs.count)
        let outs = try inputs.map { try cached($0) }
        let trace = try #require(cached.endRun())
        let expected = try Self.naive(model, inputs, threshold: threshold, warmup: c.warmupSteps(forSteps: inputs.count), cap: cap)
        #expect(trace.entries.map { $0.decision == .compute } == expected.computed, "\(setting)")
        for (k, (a, b)) in zip(outs, expected.outputs).enumerated() {
            #expect(try Tensor.relativeL2(a, b) <= 1e-6, "\(setting) step \(k)")
        }
        if threshold == 0 { #expect(trace.summary.skipped == 0) }
        if threshold == 1e9 {
            // Two computes measure the rate, then everything skips.
            #expect(expected.computed == [true, true] + Array(repeating: false, count: 10))
        }
        if threshold == 0.08 { #expect(trace.summary.skipped > 0 && trace.summary.computed > 3, "the setting exercises both") }
    }

    @Test func configurationIsValidated() throws {
        #expect(throws: CacheError.self) { try EasyCacheConfiguration(threshold: -1) }
        #expect(throws: CacheError.self) { try EasyCacheConfiguration(warmupRatio: 1.5) }
        #expect(throws: CacheError.self) { try EasyCacheConfiguration(maxConsecutiveSkips: 0) }
        let policy = CachePolicy.easyCache(try EasyCacheConfiguration(threshold: 0.1, maxConsecutiveSkips: 3))
        #expect(try JSONDecoder().decode(CachePolicy.self, from: JSONEncoder().encode(policy)) == policy)
        #expect(try JSONDecoder().decode(EasyCacheConfiguration.self, from: Data("{}".utf8)) == EasyCacheConfiguration())
    }
}

/// ``CacheStepMask``: the masked steps compute whatever the policy would decide, for every policy.
@Suite struct StepMaskTests {
    static func policies() throws -> [CachePolicy] {
        [.teaCache(try .faithful(coefficients: [0, 0, 0, 1, 0], threshold: 1e9)),
         .firstBlock(try FirstBlockCacheConfiguration(threshold: 1e9)),
         .magCache(try MagCacheConfiguration(magRatios: Array(repeating: 1.0, count: 10), threshold: 1e9, maxSkipSteps: 100)),
         .taylorSeer(try TaylorSeerConfiguration(cacheInterval: 6, disableBeforeStep: 1)),
         .easyCache(try EasyCacheConfiguration(threshold: 1e9, warmupRatio: 0))]
    }

    @Test func maskedStepsComputeForEveryPolicy() throws {
        let model = try TinyDiT(seed: 62, depth: 2)
        let inputs = try CachePolicyTests.inputs(steps: 10)
        let mask = try CacheStepMask(computing: [4, 6])
        for policy in try Self.policies() {
            let cached = CachedTransformer(model: model, policy: policy)
            try cached.beginRun(steps: inputs.count)
            for input in inputs { _ = try cached(input) }
            let free = try #require(cached.endRun())
            #expect(free.entries[4].decision == .skip && free.entries[6].decision == .skip, "\(policy.name): the mask must matter")

            cached.stepMask = mask
            try cached.beginRun(steps: inputs.count)
            let outs = try inputs.map { try cached($0) }
            let masked = try #require(cached.endRun())
            for step in [4, 6] {
                let e = masked.entries[step]
                #expect(e.decision == .compute && e.forced && e.reason == .stepMask, "\(policy.name) step \(step)")
            }
            // Before the first masked step nothing changes; a masked compute is a real compute: uncached output.
            #expect(masked.entries.prefix(4).map(\.decision) == free.entries.prefix(4).map(\.decision), "\(policy.name)")
            #expect(try Tensor.relativeL2(outs[4], try model.forward(inputs[4])) <= 1e-6, "\(policy.name)")
            cached.stepMask = nil
        }
    }

    /// TeaCache treats a masked step as a forced one: its accumulator restarts from 0.
    @Test func teaCacheAccumulatorRestartsAtAMaskedStep() throws {
        let model = try TinyDiT(seed: 63)
        let inputs = try CachePolicyTests.inputs(steps: 8)
        let cached = CachedTransformer(model: model, policy: .teaCache(try .faithful(coefficients: [0, 0, 0, 1, 0], threshold: 1e9)))
        cached.stepMask = try CacheStepMask(computing: [3])
        try cached.beginRun(steps: inputs.count)
        for input in inputs { _ = try cached(input) }
        let t = try #require(cached.endRun())
        #expect(t.entries[3].accumulatorAfter == 0 && t.entries[3].accumulated == nil)
        #expect(t.entries[4].accumulated == t.entries[4].rescaled, "the sum starts again after the masked step")
    }

    @Test func masksAreBuiltAndCheckedAgainstTheRun() throws {
        #expect(try CacheStepMask.bookends(first: 2, last: 1, every: 4, steps: 10).computeSteps == [0, 1, 4, 8, 9])
        #expect(try CacheStepMask.bookends(first: 20, last: 0, steps: 3).computeSteps == [0, 1, 2])
        #expect(throws: CacheError.self) { try CacheStepMask(computing: [-1]) }
        #expect(throws: CacheError.self) { try CacheStepMask.bookends(first: -1, last: 0, steps: 4) }
        let cached = CachedTransformer(model: try TinyDiT(seed: 64), policy: try Self.policies()[0])
        cached.stepMask = try CacheStepMask(computing: [5])
        #expect(throws: CacheError.self) { try cached.beginRun(steps: 5) }
        #expect(throws: CacheError.runNotStarted) { try cached(try CachePolicyTests.inputs(steps: 1)[0]) }
    }
}
