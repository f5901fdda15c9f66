import Foundation
import Safetensors
import Testing
import TeaCache
import Tensors
import DiTHarness
@testable import DiTModels
import TestSupport

/// First-Block Cache and MagCache against recordings of diffusers 0.42.1's own hooks
/// (`apply_first_block_cache`, `apply_mag_cache`) on the tiny FLUX and Wan fixture models
/// (Tests/Fixtures/policies, README there): every call's decision must be identical and the final latent
/// within relative L2 1e-4 (FORMAT.md §7's latent tolerance; the runs differ only by float32 summation
/// order). MagCache on Wan uses ratios from diffusers' calibration mode on the same model, which the Swift
/// calibration must reproduce (1e-5 relative: Float32 norms over 8 tokens).
@Suite struct PolicyParityTests {
    struct Recording: Decodable {
        struct Call: Decodable {
            var call: Int
            var step: Int
            var cfg_branch: String
            var decision: String
        }
        var fixture: String
        var policy: String
        var threshold: Double
        var max_skip_steps: Int?
        var retention_ratio: Double?
        var mag_ratios: [Double]?
        var calibration_ratios: [String: [Double]]?
        var calls: [Call]
        var final_tensor: String
    }

    static let root = Fixtures.root.appendingPathComponent("policies")
    static var folders: [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? [])
            .filter { FileManager.default.fileExists(atPath: root.appendingPathComponent($0).appendingPathComponent("policy.json").path) }
            .sorted()
    }

    @Test func recordingsArePresent() {
        #expect(Set(Self.folders).isSuperset(of: ["flux_first_block", "flux_mag_cache", "wan21_qknone_first_block",
                                                  "wan21_qknone_mag_cache"]))
    }

    @Test(arguments: folders)
    func policyMatchesDiffusersHooks(_ name: String) throws {
        let dir = Self.root.appendingPathComponent(name)
        let rec = try JSONDecoder().decode(Recording.self, from: Data(contentsOf: dir.appendingPathComponent("policy.json")))
        let expected = try #require(try SafetensorsFile(contentsOf: dir.appendingPathComponent("policy.safetensors")).loadAll()[rec.final_tensor])
        let folder = try FixtureFolder(Fixtures.root.appendingPathComponent(rec.fixture))
        let (family, _) = try FixtureVerifier.resolve(folder)
        try Self.check(family, folder, rec, expected)
    }

    static func policy(_ rec: Recording) throws -> CachePolicy {
        switch rec.policy {
        case "first_block": return .firstBlock(try FirstBlockCacheConfiguration(threshold: rec.threshold))
        case "mag_cache":
            return .magCache(try MagCacheConfiguration(magRatios: try #require(rec.mag_ratios), threshold: rec.threshold,
                                                       maxSkipSteps: rec.max_skip_steps ?? 3, retentionRatio: rec.retention_ratio ?? 0.2))
        default: throw VerifyError.unsupported("policy \(rec.policy)")
        }
    }

    static func check<F: DiTFamilyHarness>(_: F.Type, _ folder: FixtureFolder, _ rec: Recording, _ expected: Tensor) throws {
        let configuration = try F.Configuration.parse(folder.config, className: folder.className)
        let model = try F.load(configuration, weightsAt: folder.weightsURL)
        let run = try FixtureVerifier.sample(folder, F.self, model: model, configuration: configuration, policy: policy(rec))
        let trace = try #require(run.trace)
        #expect(trace.entries.count == rec.calls.count)
        for (e, c) in zip(trace.entries, rec.calls) {
            #expect(e.branch.name == c.cfg_branch && e.step == c.step, "\(rec.fixture) call \(c.call)")
            #expect(e.decision.rawValue == c.decision, "\(rec.policy) on \(rec.fixture): call \(c.call) (\(c.cfg_branch), step \(c.step))")
        }
        #expect(trace.summary.skipped > 0, "the recording skips nothing, so it tests nothing")
        let e = try Tensor.relativeL2(run.latent, expected)
        #expect(e <= 1e-4, "\(rec.policy) on \(rec.fixture): final latent rel L2 \(e)")

        // diffusers' calibration mode on the same model, per CFG branch.
        guard let calibration = rec.calibration_ratios else { return }
        let cached = CachedTransformer(model: model, configuration: try .faithful(coefficients: [0, 0, 0, 0, 0], threshold: 0))
        cached.magRatioRecorder = MagRatioRecorder()
        let sampler = try FixtureVerifier.sampler(folder, F.self, configuration: configuration)
        try cached.beginRun(steps: sampler.steps)
        let branches: [(String, BranchKey)] = [("cond", .cond), ("uncond", .uncond)]
        var conditioning: [BranchKey: FixtureArguments] = [:]
        for (n, b) in branches { conditioning[b] = folder.samplingArguments(branch: n) }
        _ = try sampler.sample(from: folder.samplingTensor("latent.initial")) { latent, t, branch, _ in
            try cached(F.samplingInput(latent: latent, timestep: t, conditioning: try #require(conditioning[branch]),
                                       configuration: configuration), branch: branch)
        }
        let recorded = try #require(cached.magRatioRecorder).sequences
        var recorder = try #require(cached.magRatioRecorder)
        recorder.beginRun()
        let byBranch = Dictionary(uniqueKeysWithValues: zip(["cond", "uncond"], recorder.sequences))
        #expect(recorded.isEmpty && byBranch.count == 2)
        for (branch, reference) in calibration {
            let ours = try #require(byBranch[branch])
            #expect(ours.count == reference.count)
            for (a, b) in zip(ours, reference) { #expect(abs(a - b) <= 1e-5 * b, "\(branch) ratio \(a) vs \(b)") }
        }
    }
}
