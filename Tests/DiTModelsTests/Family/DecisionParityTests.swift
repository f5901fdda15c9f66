import Foundation
import Testing
import TeaCache
import DiTHarness
@testable import DiTModels
import TestSupport

/// Replays every recorded TeaCache decision of every fixture folder (public and variants) through
/// ``TeaCachePolicy``, with the counter rule and cache keys of the family that owns the folder
/// (``DiTFamily/teaCacheConfiguration(record:steps:)``, ``DiTFamily/recordedCacheKey(_:)``): the
/// policy alone, without a model, must make every decision and reproduce every number.
@Suite struct DecisionParityTests {
    /// Every folder under Tests/Fixtures (and Tests/Fixtures/variants) with a sampling.json.
    static var folders: [URL] {
        let fm = FileManager.default
        var out: [URL] = []
        for root in [Fixtures.root, Fixtures.root.appendingPathComponent("variants")] {
            for name in ((try? fm.contentsOfDirectory(atPath: root.path)) ?? []).sorted() {
                let url = root.appendingPathComponent(name)
                if fm.fileExists(atPath: url.appendingPathComponent("sampling.json").path) { out.append(url) }
            }
        }
        return out
    }

    /// The folders whose class a registered family loads (the others wait for their family).
    static var familyFolders: [URL] {
        folders.filter { url in
            guard let (cls, _) = try? ModelConfigFile.read(url.appendingPathComponent("config.json")) else { return false }
            return (try? DiTFamilies.family(forClass: cls)) != nil
        }
    }

    @Test func everyRegisteredFamilyHasFixtureFolders() {
        let verified = Set(Self.familyFolders.compactMap { url -> String? in
            guard let folder = try? FixtureFolder(url) else { return nil }
            return (try? FixtureVerifier.resolve(folder))?.family.name
        })
        for family in DiTFamilies.builtIn {
            #expect(verified.contains(family.name), "no fixture folder exercises \(family.name)")
        }
    }

    @Test(arguments: familyFolders)
    func everyRecordedDecisionIsReproduced(_ url: URL) throws {
        let folder = try FixtureFolder(url)
        let (family, _) = try FixtureVerifier.resolve(folder)
        try Self.replay(folder, family)
    }

    static func replay<F: DiTFamilyHarness>(_ folder: FixtureFolder, _: F.Type) throws {
        let name = folder.url.lastPathComponent
        let steps = try #require(folder.sampling.numSteps, "\(name): num_steps")
        #expect(!folder.sampling.records.isEmpty, "\(name) has no records")
        for record in folder.sampling.records {
            var policy = try TeaCachePolicy(configuration: F.teaCacheConfiguration(record: record, steps: steps), steps: steps)
            var nextStep: [BranchKey: Int] = [:]
            var skipped = 0
            for call in record.calls {
                let key = F.recordedCacheKey(call)
                let step = nextStep[key, default: 0]
                nextStep[key] = step + 1
                #expect(step == call.step, "\(name)/\(record.name) call \(call.call): per-key step")
                // A key's first call has no previous input (nil). A later forced call has no recorded
                // distance; pass an arbitrary one so the schedule alone must force it.
                let distance = call.relL1 ?? (step > 0 ? 0.05 : nil)
                let d = try policy.decide(step: step, branch: key, distance: distance)
                let label = "\(name)/\(record.name) call \(call.call)"
                #expect(d.forced == call.forced, "\(label): forced")
                #expect(d.action == (call.decision == "computed" ? .compute : .skip), "\(label): decision")
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
                #expect(relativelyClose(d.accumulatorAfter, call.accumulatorAfter, 1e-9),
                        "\(label): accumulator_after \(d.accumulatorAfter) vs \(call.accumulatorAfter)")
                if d.skips { skipped += 1 }
            }
            if let s = record.skippedCalls { #expect(skipped == s, "\(name)/\(record.name): skipped count") }
            if let c = record.computedCalls { #expect(record.calls.count - skipped == c, "\(name)/\(record.name): computed") }
            // A record whose every call is forced tests its counter rule (e.g. TeaCache4Lumina2 without
            // CFG, whose counter never advances); any other record must skip something to test anything.
            #expect(skipped > 0 || record.calls.allSatisfy(\.forced),
                    "\(name)/\(record.name): the record skips nothing, so it tests nothing")
        }
    }
}
