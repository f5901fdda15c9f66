import Foundation
import Testing
import Tensors
@testable import TeaCache

/// TaylorSeer (lite mode) on the synthetic DiT against the rule and the expansion written out as a plain loop
/// (the diffusers recordings are checked in DiTModelsTests/PolicyRecordingTests), and the open protocol with a
/// policy written here.
@Suite struct TaylorSeerTests {
    /// diffusers' compute rule, spelled out with a non-negative modulo.
    static func computes(_ k: Int, interval: Int, before: Int, after: Int?) -> Bool {
        var m = (k - before - 1) % interval
        if m < 0 { m += interval }
        return k < before || m == 0 || (after.map { k >= $0 } ?? false)
    }

    /// Outputs of the naive loop: full forwards on compute steps, divided differences of the outputs, and the
    /// Taylor sum `Σ F_o Δᵒ / o!` on the others, in Float32 scalars.
    static func naive(_ model: TinyDiT, _ inputs: [TinyDiT.Input], interval: Int, before: Int, after: Int?, order: Int) throws -> [Tensor] {
        var factors: [[Float]] = [], last = 0, shape: [Int] = []
        var outs: [Tensor] = []
        for (k, input) in inputs.enumerated() {
            if computes(k, interval: interval, before: before, after: after) || factors.isEmpty {
                let y = try model.forward(input)
                shape = y.shape
                var new = [y.scalars]
                if !factors.isEmpty {
                    let delta = Float(k - last)
                    for j in 0..<min(order, factors.count) {
                        new.append(zip(new[j], factors[j]).map { ($0 - $1) / delta })
                    }
                }
                factors = new
                last = k
                outs.append(y)
            } else {
                let delta = Double(k - last)
                var y = factors[0]
                var factorial = 1.0
                for o in 1..<factors.count {
                    factorial *= Double(o)
                    let c = Float(pow(delta, Double(o)) / factorial)
                    y = zip(y, factors[o]).map { $0 + $1 * c }
                }
                outs.append(try Tensor(shape: shape, scalars: y))
            }
        }
        return outs
    }

    @Test(arguments: [(2, 2, nil as Int?, 1), (3, 3, nil, 2), (4, 2, 10, 1), (1, 0, nil, 1), (3, 1, 6, 3)])
    func taylorSeerMatchesTheNaiveLoop(_ setting: (Int, Int, Int?, Int)) throws {
        let (interval, before, after, order) = setting
        let model = try TinyDiT(seed: 51, depth: 2)
        let inputs = try CachePolicyTests.inputs(steps: 12)
        let c = try TaylorSeerConfiguration(cacheInterval: interval, disableBeforeStep: before, disableAfterStep: after, maxOrder: order)
        let cached = CachedTransformer(model: model, policy: .taylorSeer(c))
        try cached.beginRun(steps: inputs.count)
        let runsBefore = model.counter.blockStackRuns
        let outs = try inputs.map { try cached($0) }
        let stackRuns = model.counter.blockStackRuns - runsBefore
        let trace = try #require(cached.endRun())
        let expected = try Self.naive(model, inputs, interval: interval, before: before, after: after, order: order)
        let computed = (0..<inputs.count).map { Self.computes($0, interval: interval, before: before, after: after) || $0 == 0 }
        #expect(trace.entries.map { $0.decision == .compute } == computed, "\(setting)")
        #expect(stackRuns == computed.filter { $0 }.count, "forecast calls run no block")
        for (k, (a, b)) in zip(outs, expected).enumerated() {
            #expect(try Tensor.relativeL2(a, b) <= 1e-6, "\(setting) step \(k)")
        }
        #expect(trace.summary.skipped > 0 || interval == 1)
    }

    @Test func configurationIsValidatedAndDecodesDefaults() throws {
        #expect(throws: CacheError.self) { try TaylorSeerConfiguration(cacheInterval: 0) }
        #expect(throws: CacheError.self) { try TaylorSeerConfiguration(disableBeforeStep: -1) }
        #expect(throws: CacheError.self) { try TaylorSeerConfiguration(disableAfterStep: -2) }
        #expect(throws: CacheError.self) { try TaylorSeerConfiguration(maxOrder: 9) }
        let decoded = try JSONDecoder().decode(TaylorSeerConfiguration.self, from: Data("{}".utf8))
        #expect(decoded == TaylorSeerConfiguration.diffusersDefault)
        #expect(throws: DecodingError.self) {
            try JSONDecoder().decode(TaylorSeerConfiguration.self, from: Data(#"{"cacheInterval": 0}"#.utf8))
        }
        let policy = CachePolicy.taylorSeer(try TaylorSeerConfiguration(cacheInterval: 3, disableAfterStep: 9, maxOrder: 2))
        #expect(try JSONDecoder().decode(CachePolicy.self, from: JSONEncoder().encode(policy)) == policy)
        #expect(policy.name == "taylorseer")
    }
}

/// A policy written outside the module, in one type: compute every `period`-th call and otherwise add half
/// the stored residual (a deliberately odd reuse, so the test sees that the wrapper applies what the policy
/// supplies).
struct HalfResidualEveryOther: StepCachePolicy {
    var period = 2
    var stored: [BranchKey: [Tensor]] = [:]
    var name: String { "half-residual" }
    mutating func beginRun(steps: Int) throws(CacheError) { stored = [:] }
    mutating func decide(_ call: CacheCall) throws(CacheError) -> [CacheDecision] {
        let compute = call.step % period == 0 || stored[call.branch] == nil
        return [CacheDecision(action: compute ? .compute : .skip, forced: false, reason: .interval,
                              details: .custom(["period": Double(period)]))]
    }
    mutating func reuse(_ call: CacheCall) throws(CacheError) -> CacheReuse {
        .residual((stored[call.branch] ?? []).map { $0 * 0.5 })
    }
    mutating func didCompute(_ call: CacheCall, residuals: [Tensor], output: Tensor) throws(CacheError) {
        stored[call.branch] = residuals
    }
    mutating func reset(_ branch: BranchKey, batch: Int) { stored[branch] = nil }
}

@Suite struct CustomPolicyTests {
    @Test func aPolicyOfYourOwnRunsOnTheWrapper() throws {
        let model = try TinyDiT(seed: 52)
        let inputs = try CachePolicyTests.inputs(steps: 6)
        let cached = CachedTransformer(model: model, custom: HalfResidualEveryOther())
        try cached.beginRun(steps: inputs.count)
        let outs = try inputs.map { try cached($0) }
        let trace = try #require(cached.endRun())
        #expect(trace.entries.map(\.decision) == [.compute, .skip, .compute, .skip, .compute, .skip])
        #expect(trace.entries[1].details == .custom(["period": 2]))
        var residual: Tensor?
        for (k, input) in inputs.enumerated() {
            var s = try model.prepare(input)
            if k % 2 == 0 {
                let h = s.streams[0]
                try model.runBlocks(&s)
                residual = try s.streams[0] - h
            } else {
                s.streams[0] = try s.streams[0] + residual! * 0.5
            }
            #expect(try Tensor.relativeL2(outs[k], try model.outputHead(s)) <= 1e-6, "step \(k)")
        }
        // Setting a built-in policy replaces the custom one.
        cached.policy = .magCache(try MagCacheConfiguration(magRatios: [1, 1]))
        #expect(cached.customPolicy == nil)
    }
}

/// The former public names still compile and name the same types.
@Suite struct FormerNamesTests {
    @available(*, deprecated, message: "uses the deprecated names on purpose")
    @Test func formerNamesAreTheGenericTypes() throws {
        #expect(TeaCacheError.self == CacheError.self)
        #expect(TeaCacheTrace.self == CacheTrace.self)
        #expect(TeaCacheDecision.self == CacheDecision.self)
        let d = TeaCacheDecision(action: .skip, forced: false, reason: .threshold, distance: 0.1, rescaled: 0.2,
                                 accumulated: 0.3, accumulatorAfter: 0.3)
        #expect(d.details == .teaCache(rescaled: 0.2, accumulated: 0.3, accumulatorAfter: 0.3))
        #expect(d.rescaled == 0.2 && d.accumulated == 0.3 && d.accumulatorAfter == 0.3)
    }
}
