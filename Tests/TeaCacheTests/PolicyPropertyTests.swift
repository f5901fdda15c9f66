import Foundation
import Testing
@testable import TeaCache
import TestSupport

/// Properties of ``TeaCachePolicy`` beyond the fixture decisions.
@Suite struct PolicyPropertyTests {
    /// The recorded distances of the flux fixture (nil on forced calls).
    static func fluxDistances() throws -> [Double?] {
        try #require(try FixtureSchedule.named("flux").records.first).calls.map(\.relL1)
    }

    static func decide(_ config: TeaCacheConfiguration, _ distances: [Double?]) throws -> [CacheDecision] {
        var policy = try TeaCachePolicy(configuration: config, steps: distances.count)
        return try distances.enumerated().map { k, d in
            try policy.decide(step: k, branch: .cond, distance: k == 0 ? nil : (d ?? 0.05))
        }
    }

    @Test func thresholdZeroComputesEverythingEvenWithANegativePolynomial() throws {
        let distances = try Self.fluxDistances()
        let negative: [Double] = [0, 0, 0, 0, -1]   // P(d) = -1 everywhere
        let off = try Self.decide(try .faithful(coefficients: negative, threshold: 0), distances)
        #expect(off.allSatisfy { $0.action == .compute })
        // The same polynomial with any positive threshold skips every eligible call: 0 is special.
        let tiny = try Self.decide(try .faithful(coefficients: negative, threshold: 1e-12), distances)
        #expect(tiny.filter { $0.action == .skip }.count == distances.count - 2)
    }

    @Test func hugeThresholdComputesOnlyFirstAndLast() throws {
        let distances = try Self.fluxDistances()
        let config = try TeaCacheConfiguration.faithful(coefficients: TeaCachePreset.fluxReference.coefficients, threshold: 1e12)
        let computed = try Self.decide(config, distances).enumerated().filter { $0.element.action == .compute }.map(\.offset)
        #expect(computed == [0, distances.count - 1])
    }

    @Test func maxConsecutiveSkipsCapsStreaks() throws {
        let distances = try Self.fluxDistances()
        let schedule = TeaCacheSchedule(maxConsecutiveSkips: 1)
        let config = try TeaCacheConfiguration.faithful(coefficients: TeaCachePreset.fluxReference.coefficients, threshold: 1e12, schedule: schedule)
        let actions = try Self.decide(config, distances).map(\.action)
        for k in 1..<actions.count { #expect(!(actions[k] == .skip && actions[k - 1] == .skip)) }
        #expect(actions.filter { $0 == .skip }.count == 5)   // 10 eligible calls alternate skip/compute
    }

    @Test func windowAndCutoffForceCompute() throws {
        let s = TeaCacheSchedule(retainFirstSteps: 2, forceLastStep: false, cutoffStep: 8, startFraction: 0.3, endFraction: 0.7)
        let forced = (0..<10).filter { s.forcedReason(step: $0, steps: 10) != nil }
        #expect(forced == [0, 1, 2, 7, 8, 9])
        #expect(s.forcedReason(step: 0, steps: 10) == .retainedStep)
        #expect(s.forcedReason(step: 2, steps: 10) == .outsideWindow)
        #expect(s.forcedReason(step: 8, steps: 10) == .cutoff)
    }

    @Test func guardsComputeOnNonFiniteAndOutOfRangeDistances() throws {
        let faithful = try TeaCacheConfiguration.faithful(coefficients: TeaCachePreset.fluxReference.coefficients, threshold: 1e12)
        var p = try TeaCachePolicy(configuration: faithful, steps: 10)
        _ = try p.decide(step: 0, branch: .cond, distance: nil)
        // Faithful: NaN poisons the comparison (NaN < δ is false) so it computes via the threshold path.
        let nanFaithful = try p.decide(step: 1, branch: .cond, distance: .nan)
        #expect(nanFaithful.action == .compute && !nanFaithful.forced && nanFaithful.reason == .threshold)

        let guarded = try TeaCacheConfiguration.guarded(
            coefficients: TeaCachePreset.fluxReference.coefficients, threshold: 1e12, calibratedRange: 0.01...0.3)
        var g = try TeaCachePolicy(configuration: guarded, steps: 10)
        _ = try g.decide(step: 0, branch: .cond, distance: nil)
        #expect(try g.decide(step: 1, branch: .cond, distance: .infinity).reason == .nonFiniteDistance)
        #expect(try g.decide(step: 2, branch: .cond, distance: 0.5).reason == .outsideCalibratedRange)
        #expect(try g.decide(step: 3, branch: .cond, distance: 0.1).action == .skip)
    }

    @Test func branchesAndSamplesAreIndependent() throws {
        let config = try TeaCacheConfiguration.faithful(coefficients: [0, 0, 0, 1, 0], threshold: 0.25)
        var p = try TeaCachePolicy(configuration: config, steps: 6)
        _ = try p.decide(step: 0, branch: .cond, distance: nil)
        _ = try p.decide(step: 0, branch: .uncond, distance: nil)
        #expect(try p.decide(step: 1, branch: .cond, distance: 0.2).action == .skip)
        #expect(try p.decide(step: 1, branch: .uncond, distance: 0.01).action == .skip)
        #expect(try p.decide(step: 2, branch: .cond, distance: 0.1).action == .compute)   // 0.3 >= 0.25
        #expect(p.accumulator(for: TeaCacheSlot(branch: .uncond)) == 0.01)
        #expect(throws: CacheError.stepOutOfRange(branch: .cond, step: 6, steps: 6)) {
            try p.decide(step: 6, branch: .cond, distance: 0.1)
        }
    }
}

/// ``CacheTrace`` summary and JSON.
@Suite struct TraceTests {
    static func entry(_ call: Int, _ action: CacheDecision.Action, distance: Double? = 0.1) -> CacheTrace.Entry {
        CacheTrace.Entry(call: call, step: call, branch: .cond, decision: CacheDecision(
            action: action, forced: call == 0, reason: call == 0 ? .retainedStep : .threshold, distance: distance,
            rescaled: distance, accumulated: distance, accumulatorAfter: action == .skip ? 0.1 : 0))
    }

    @Test func summaryCountsAndStreaks() {
        let actions: [CacheDecision.Action] = [.compute, .skip, .skip, .compute, .skip, .compute]
        let trace = CacheTrace(steps: 6, entries: actions.enumerated().map { Self.entry($0.offset, $0.element) })
        let s = trace.summary
        #expect(s.calls == 6 && s.computed == 3 && s.skipped == 3)
        #expect(s.longestSkipStreak == 2)
        #expect(s.predictedSpeedup == 2.0)
    }

    @Test func jsonRoundTripKeepsNonFiniteDistances() throws {
        var trace = CacheTrace(steps: 3, entries: [Self.entry(0, .compute, distance: nil), Self.entry(1, .skip),
                                                      Self.entry(2, .compute, distance: .infinity)])
        trace.entries[1].distance = .nan
        let back = try CacheTrace(jsonData: try trace.jsonData())
        #expect(back.entries.count == 3)
        #expect(back.entries[1].distance?.isNaN == true)
        #expect(back.entries[2].distance == .infinity)
        #expect(back.entries[0] == trace.entries[0])
        let text = String(decoding: try trace.jsonData(), as: UTF8.self)
        #expect(text.contains("\"predictedSpeedup\""))
        #expect(throws: CacheError.self) { try CacheTrace(jsonData: Data("{}".utf8)) }
    }

    @Test func replayScheduleRejectsDuplicatesAndBadSteps() {
        let e = TeaCacheReplaySchedule.Entry(branch: .cond, step: 1, action: .skip, forced: false)
        #expect(throws: CacheError.self) { try TeaCacheReplaySchedule(steps: 3, entries: [e, e]) }
        #expect(throws: CacheError.self) {
            try TeaCacheReplaySchedule(steps: 1, entries: [e])
        }
    }
}
