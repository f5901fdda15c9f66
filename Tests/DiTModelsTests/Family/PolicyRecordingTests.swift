import Foundation
import Safetensors
import Testing
import TeaCache
import Tensors
import DiTHarness
@testable import DiTModels
import TestSupport

/// The shared policy recordings (Tests/Fixtures/policies/refs_<fixture>: diffusers 0.42.1's First-Block Cache,
/// MagCache and TaylorSeer lite-mode hooks and cache-dit 1.5.3's DBCache on the public flux, tangoflux and wan21
/// fixture models; format in the README there): every record of an implemented policy must make identical
/// per-call decisions and end within relative L2 1e-4 of the recorded final latent (float32 noise between the
/// implementations is ~1e-7); `teacache verify` on a folder holding a fixture and its recording runs them all.
@Suite struct PolicyRecordingTests {
    static let fixtures = ["flux", "tangoflux", "wan21"]
    static func refs(_ fixture: String) -> URL { Fixtures.root.appendingPathComponent("policies/refs_\(fixture)") }

    static func checks(_ fixture: String) throws -> (checks: [VerifyCheck], unsupported: [String]) {
        let folder = try FixtureFolder(Fixtures.folder(fixture))
        let (family, _) = try FixtureVerifier.resolve(folder)
        return try run(family, folder, refs: refs(fixture))
    }

    static func run<F: DiTFamilyHarness>(_: F.Type, _ folder: FixtureFolder, refs: URL) throws -> (checks: [VerifyCheck], unsupported: [String]) {
        let configuration = try F.Configuration.parse(folder.config, className: folder.className)
        let model = try F.load(configuration, weightsAt: folder.weightsURL)
        return try PolicyRecordingVerifier.checks(folder, refs: refs, F.self, model: model, configuration: configuration,
                                                  tolerance: 1e-4)
    }

    @Test(arguments: fixtures)
    func everyImplementedRecordMatches(_ fixture: String) throws {
        let recordings = try PolicyRecordings(folder: Self.refs(fixture))
        let result = try Self.checks(fixture)
        for c in result.checks { #expect(c.passed, "\(fixture): \(c.line)") }
        let run = Set(result.checks.compactMap { c in c.name.hasSuffix(" decisions") ? c.name : nil })
        // Every record ran: TaylorSeer, MagCache, and on the two-block models First-Block Cache and DBCache.
        for r in recordings.records {
            #expect(run.contains("policy \(r.name) decisions"), "\(fixture): \(r.name) was not run")
        }
        #expect(recordings.records.contains { $0.policy == "taylorseer" })
        // The records of policies not implemented here are named, one line each.
        let missing = recordings.records.filter { r in !run.contains("policy \(r.name) decisions") }.map(\.name)
        #expect(result.unsupported.count == missing.count)
        for (line, name) in zip(result.unsupported, missing) { #expect(line.contains(name), "\(line)") }
    }

    /// TaylorSeer's compute steps are the recorded `compute_steps` per branch (FORMAT.md 7.3's rule).
    @Test(arguments: fixtures)
    func taylorSeerComputeStepsFollowTheRule(_ fixture: String) throws {
        struct Record: Decodable {
            var name: String
            var compute_steps: [String: [Int]]?
        }
        struct File: Decodable { var records: [Record] }
        let url = Self.refs(fixture).appendingPathComponent(PolicyRecordingVerifier.jsonName)
        let steps = try JSONDecoder().decode(File.self, from: Data(contentsOf: url)).records
        let recordings = try PolicyRecordings(folder: Self.refs(fixture))
        let taylor = recordings.records.filter { $0.policy == "taylorseer" }
        #expect(taylor.count == 3)
        for r in taylor {
            guard case .success(.taylorSeer(let c)) = recordings.policy(r) else { Issue.record("\(r.name)"); continue }
            let ours = (0..<12).filter { c.computeReason(step: $0) != nil }
            let recorded = try #require(steps.first { $0.name == r.name }?.compute_steps)
            for (_, list) in recorded { #expect(ours == list, "\(fixture) \(r.name)") }
        }
    }

    /// diffusers advances MagCache's step index only on computed calls on a single-block model (wan21): the
    /// recorded decisions need that rule, and the every-call rule gives other ones.
    @Test func magCacheStepIndexRuleMatters() throws {
        let recordings = try PolicyRecordings(folder: Self.refs("wan21"))
        let record = try #require(recordings.records.first { $0.name == "magcache.3" })
        guard case .success(.magCache(let c)) = recordings.policy(record) else { Issue.record("not a MagCache record"); return }
        #expect(c.stepIndex == .computedCallsOnly)
        var everyCall = c
        everyCall.stepIndex = .everyCall
        func decisions(_ c: MagCacheConfiguration) throws -> [String] {
            var p = try MagCachePolicy(configuration: c, steps: 12)
            var hasResidual = false
            return try (0..<12).map { step in
                let d = try p.decide(step: step, branch: .cond, hasResidual: hasResidual)
                hasResidual = true
                return d.action.rawValue
            }
        }
        let recorded = record.calls.filter { $0.cfgBranch == "cond" }.map(\.decision)
        #expect(try decisions(c) == recorded)
        #expect(try decisions(everyCall) != recorded)
    }

    /// `teacache verify DIR` on a folder with a fixture and its recording: the fixture's own checks, then every
    /// runnable record, the DBCache records named as not run.
    @Test func verifyRunsTheRecordingsOfAFolder() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("policy-verify-\(UUID().uuidString)")
        try FileManager.default.copyItem(at: Fixtures.folder("flux"), to: dir)
        defer { try? FileManager.default.removeItem(at: dir) }
        for f in [PolicyRecordingVerifier.jsonName, PolicyRecordingVerifier.tensorsName] {
            try FileManager.default.copyItem(at: Self.refs("flux").appendingPathComponent(f), to: dir.appendingPathComponent(f))
        }
        let report = try FixtureVerifier.verify(folder: dir)
        #expect(report.passed, "\(report.lines.joined(separator: "\n"))")
        #expect(report.checks.count == 9 + 1 + 2 * 12)   // fixture checks, uncached, 12 records × (decisions, latent)
        #expect(report.notes.isEmpty)
        #expect(report.lines.last == "verify flux: PASS")

        // A record of a policy this port lacks is named, not run, and does not fail the folder.
        let json = dir.appendingPathComponent(PolicyRecordingVerifier.jsonName)
        let edited = try String(contentsOf: json, encoding: .utf8).replacingOccurrences(of: "\"policy\": \"dbcache\"", with: "\"policy\": \"fora\"")
        try edited.write(to: json, atomically: true, encoding: .utf8)
        let partial = try FixtureVerifier.verify(folder: dir)
        #expect(partial.passed && partial.checks.count == 9 + 1 + 2 * 8)
        #expect(partial.notes.count == 4 && partial.notes.allSatisfy { $0.contains("policy fora is not implemented") })
    }

    /// cache-dit's TaylorSeer calibrator (dbcache.13) forecasts the middle residual: the same decisions with the
    /// stale residual end outside the 1e-4 tolerance (flux ~2e-3, tangoflux, with one skip, less), so the forecast is what matches.
    @Test(arguments: ["flux", "tangoflux"])
    func dbCacheCalibratorIsAForecast(_ fixture: String) throws {
        let recordings = try PolicyRecordings(folder: Self.refs(fixture))
        let record = try #require(recordings.records.first { $0.name == "dbcache.13" })
        guard case .success(.forecasting(let base, let forecast)) = recordings.policy(record) else {
            Issue.record("dbcache.13 is not a forecasting DBCache"); return
        }
        #expect(forecast == (try ResidualForecast.cacheDitTaylorSeer(order: 1)))
        let folder = try FixtureFolder(Fixtures.folder(fixture))
        let (family, _) = try FixtureVerifier.resolve(folder)
        let expected = try #require(try SafetensorsFile(contentsOf: Self.refs(fixture).appendingPathComponent(PolicyRecordingVerifier.tensorsName))
            .loadAll()[record.finalTensor])
        let stale = try Self.sample(family, folder, base)
        #expect(stale.trace?.entries.map(\.decision.rawValue) == record.calls.map(\.decision))
        let e = try Tensor.relativeL2(stale.latent, expected)
        #expect(e > 3e-4, "\(fixture): the stale residual ends \(e) from the recording")
    }

    static func sample<F: DiTFamilyHarness>(_: F.Type, _ folder: FixtureFolder, _ policy: CachePolicy) throws -> (latent: Tensor, trace: CacheTrace?) {
        let configuration = try F.Configuration.parse(folder.config, className: folder.className)
        let model = try F.load(configuration, weightsAt: folder.weightsURL)
        return try FixtureVerifier.sample(folder, F.self, model: model, configuration: configuration, policy: policy)
    }

    /// A recorded latent moved by 1e-3 relative fails its check, and only that one.
    @Test func alteredRecordedLatentFails() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("policy-refs-\(UUID().uuidString)")
        try FileManager.default.copyItem(at: Self.refs("tangoflux"), to: dir)
        defer { try? FileManager.default.removeItem(at: dir) }
        let url = dir.appendingPathComponent(PolicyRecordingVerifier.tensorsName)
        var tensors = try SafetensorsFile(contentsOf: url).loadAll()
        tensors["latent.final.taylorseer.6"] = try #require(tensors["latent.final.taylorseer.6"]) * 1.001
        var writer = SafetensorsWriter()
        for (name, t) in tensors { try writer.add(t, named: name) }
        try writer.write(to: url)
        let folder = try FixtureFolder(Fixtures.folder("tangoflux"))
        let (family, _) = try FixtureVerifier.resolve(folder)
        let result = try Self.run(family, folder, refs: dir)
        #expect(result.checks.filter { !$0.passed }.map(\.name) == ["policy taylorseer.6 final latent"])
    }
}
