import Foundation
import Testing
@testable import TeaCache

/// Replays every recorded TeaCache decision of every fixture family through ``TeaCachePolicy``.
@Suite struct DecisionParityTests {
    /// The schedule and branch/step mapping of a record (FORMAT.md §4), expressed per branch.
    struct Mapping {
        var schedule: TeaCacheSchedule
        var branch: (SamplingFixture.Call) -> BranchKey
        var step: (SamplingFixture.Call) -> Int
    }

    static func mapping(for record: SamplingFixture.Record, steps n: Int) throws -> Mapping {
        let state = record.teacache_state
        switch state.kind {
        case "standard":
            #expect(state.counter_period == n)
            return Mapping(schedule: .standard, branch: { BranchKey($0.cfg_branch) }, step: { $0.counter })
        case "wan21":
            // One counter over 2N calls (cond even, uncond odd) → per-branch step = counter / 2.
            #expect(state.counter_period == 2 * n)
            let ret = try #require(state.ret_steps), cutoff = try #require(state.cutoff_steps)
            #expect(ret % 2 == 0 && cutoff % 2 == 0)
            let schedule = TeaCacheSchedule(retainFirstSteps: ret / 2, forceLastStep: false, cutoffStep: cutoff / 2)
            return Mapping(schedule: schedule, branch: { BranchKey($0.cfg_branch) }, step: { $0.counter / 2 })
        case "lumina2":
            return Mapping(schedule: .standard, branch: { BranchKey(String($0.cache_key ?? -1)) }, step: { $0.counter })
        default:
            Issue.record("unknown teacache_state kind \(state.kind)")
            throw TeaCacheError.invalidSchedule(state.kind)
        }
    }

    @Test func everyRecordedDecisionIsReproduced() throws {
        let families = try Fixtures.samplingFamilies()
        #expect(!families.isEmpty, "no fixture families found under \(Fixtures.directory.path)")
        var checkedCalls = 0, checkedSkips = 0
        for (name, fixture) in families {
            #expect(!fixture.records.isEmpty, "\(name) has no records")
            for record in fixture.records {
                let n = fixture.num_steps
                let map = try Self.mapping(for: record, steps: n)
                let config = try TeaCacheConfiguration.faithful(
                    coefficients: record.coefficients, threshold: record.threshold, schedule: map.schedule)
                var policy = try TeaCachePolicy(configuration: config, steps: n)
                var seen = Set<BranchKey>()
                var skipped = 0
                for call in record.calls {
                    let branch = map.branch(call), step = map.step(call)
                    // A branch's first call has no previous input (nil). A later forced call has no recorded
                    // distance; pass an arbitrary one so the schedule alone must force it.
                    let distance = call.rel_l1 ?? (seen.contains(branch) ? 0.05 : nil)
                    seen.insert(branch)
                    let d = try policy.decide(step: step, branch: branch, distance: distance)
                    let label = "\(name)/\(record.name) call \(call.call)"
                    #expect(d.forced == call.forced, "\(label): forced")
                    #expect(d.action.rawValue == call.decision, "\(label): decision")
                    // Same Double arithmetic as numpy.poly1d / Python floats: 1e-9 relative.
                    if let r = call.rescaled {
                        let got = try #require(d.rescaled, "\(label): rescaled missing")
                        #expect(relativelyClose(got, r, 1e-9), "\(label): rescaled \(got) vs \(r)")
                    } else {
                        #expect(d.rescaled == nil, "\(label): unexpected rescaled")
                    }
                    if let a = call.accumulated {
                        let got = try #require(d.accumulated, "\(label): accumulated missing")
                        #expect(relativelyClose(got, a, 1e-9), "\(label): accumulated \(got) vs \(a)")
                    } else {
                        #expect(d.accumulated == nil, "\(label): unexpected accumulated")
                    }
                    #expect(relativelyClose(d.accumulatorAfter, call.accumulator_after, 1e-9),
                            "\(label): accumulator_after \(d.accumulatorAfter) vs \(call.accumulator_after)")
                    if d.skips { skipped += 1 }
                    checkedCalls += 1
                }
                #expect(skipped == record.skipped_calls, "\(name)/\(record.name): skipped count")
                #expect(record.calls.count - skipped == record.computed_calls, "\(name)/\(record.name): computed count")
                checkedSkips += skipped
            }
        }
        #expect(checkedCalls > 0 && checkedSkips > 0)
    }
}
