import Foundation
import Testing
@testable import TeaCache

/// ``TeaCacheSchedule/sharedCounter`` (TeaCache4Lumina2's counter shared by all entries, advanced only by
/// calls of other branches than the first): expected forced-call sets from a simulation of the reference's
/// counter code, the per-branch equivalence with two alternating branches, the quirk with one branch, and
/// the bounds, per-sample and coding rules.
@Suite struct SharedCounterTests {
    static let identity: [Double] = [0, 0, 0, 1, 0]

    /// The reference counter, simulated: the counter a call sees, for a sequence of keys.
    static func referenceCounters(_ keys: [String], steps n: Int) -> [Int] {
        var cnt = 0, first: String? = nil, seen: [Int] = []
        for k in keys {
            seen.append(cnt)
            if first == nil { first = k }
            if k != first { cnt += 1; if cnt >= n { cnt = 0 } }
        }
        return seen
    }

    /// Runs `keys` through a policy (one call each, per-key steps) and returns which calls were forced.
    static func forced(_ keys: [String], steps n: Int, threshold: Double = 1e9) throws -> [Bool] {
        let config = try TeaCacheConfiguration.faithful(coefficients: identity, threshold: threshold,
                                                        schedule: TeaCacheSchedule(sharedCounter: .advancedByOtherBranchesThanFirst))
        var policy = try TeaCachePolicy(configuration: config, steps: n)
        var step: [String: Int] = [:]
        return try keys.map { k in
            let s = step[k, default: 0]
            step[k] = s + 1
            return try policy.decide(step: s, branch: BranchKey(k), distance: s == 0 ? nil : 0.01).forced
        }
    }

    @Test func twoAlternatingBranchesForceTheFirstAndLastStepOfEach() throws {
        let n = 6
        let keys = (0..<n).flatMap { _ in ["22", "19"] }
        let counters = Self.referenceCounters(keys, steps: n)
        #expect(counters == (0..<n).flatMap { [$0, $0] })
        let forced = try Self.forced(keys, steps: n)
        #expect(forced == counters.map { $0 == 0 || $0 == n - 1 })
        // The same decisions as per-branch steps with the standard schedule.
        var standard = try TeaCachePolicy(configuration: try .faithful(coefficients: Self.identity, threshold: 1e9), steps: n)
        let perBranch = try keys.enumerated().map { i, k in
            try standard.decide(step: i / 2, branch: BranchKey(k), distance: i < 2 ? nil : 0.01).forced
        }
        #expect(forced == perBranch)
    }

    /// One branch (no CFG): the counter never advances, so every call is forced and nothing is skipped,
    /// however large the threshold; the same branch called twice per step (equal cond/uncond lengths)
    /// goes beyond `steps` calls without an error.
    @Test func oneBranchIsAlwaysForced() throws {
        let n = 5
        #expect(try Self.forced(Array(repeating: "21", count: n), steps: n).allSatisfy { $0 })
        #expect(try Self.forced(Array(repeating: "21", count: 2 * n), steps: n).allSatisfy { $0 })
        let config = try TeaCacheConfiguration.faithful(coefficients: Self.identity, threshold: 1e9,
                                                        schedule: TeaCacheSchedule(sharedCounter: .advancedByOtherBranchesThanFirst))
        var policy = try TeaCachePolicy(configuration: config, steps: n)
        #expect(policy.sharedCounter == 0)
        _ = try policy.decide(step: 0, branch: "a", distance: nil)
        _ = try policy.decide(step: 0, branch: "b", distance: nil)
        #expect(policy.sharedCounter == 1)
        // Without a shared counter the usual bound holds.
        var plain = try TeaCachePolicy(configuration: try .faithful(coefficients: Self.identity, threshold: 1), steps: n)
        #expect(throws: CacheError.stepOutOfRange(branch: "a", step: n, steps: n)) {
            try plain.decide(step: n, branch: "a", distance: 0.1)
        }
        #expect(plain.sharedCounter == nil)
    }

    /// A later branch of another key than the first: its first call sees the counter advanced, the
    /// counter wraps at `steps` (`>=`, as the reference), and a never-seen key is forced by its missing
    /// previous input.
    @Test func counterWrapsAndNewKeysAreForced() throws {
        let n = 3
        let keys = ["a", "b", "b", "b", "b", "c"]
        let counters = Self.referenceCounters(keys, steps: n)
        #expect(counters == [0, 0, 1, 2, 0, 1])
        let forced = try Self.forced(keys, steps: n, threshold: 1e9)
        #expect(forced == [true, true, false, true, true, true])
    }

    @Test func perSampleDecisionsAreRejected() throws {
        let schedule = TeaCacheSchedule(sharedCounter: .advancedByOtherBranchesThanFirst)
        #expect(throws: CacheError.self) {
            try TeaCacheConfiguration(coefficients: Self.identity, threshold: 0.1, schedule: schedule, perSample: true)
        }
        let c = try TeaCacheConfiguration.faithful(coefficients: Self.identity, threshold: 0.1, schedule: schedule)
        #expect(throws: CacheError.self) { try c.withPerSample(true).validate() }
    }

    /// Schedules written before the field existed decode to per-branch steps; the field round-trips.
    @Test func codingIsBackwardCompatible() throws {
        let old = #"{"retainFirstSteps": 1, "forceLastStep": true, "startFraction": 0, "endFraction": 1}"#
        let decoded = try JSONDecoder().decode(TeaCacheSchedule.self, from: Data(old.utf8))
        #expect(decoded == .standard && decoded.sharedCounter == nil)
        let shared = TeaCacheSchedule(sharedCounter: .advancedByOtherBranchesThanFirst)
        let data = try JSONEncoder().encode(shared)
        #expect(String(decoding: data, as: UTF8.self).contains("advancedByOtherBranchesThanFirst"))
        #expect(try JSONDecoder().decode(TeaCacheSchedule.self, from: data) == shared)
        #expect(!String(decoding: try JSONEncoder().encode(TeaCacheSchedule.standard), as: UTF8.self).contains("sharedCounter"))
    }
}
