import DiTModels
import Foundation
import TeaCache
import Tensors

/// Runs a model family against a fixture folder (FORMAT.md) and compares every number the folder holds:
/// the forward (`output`, `teacache.*`), the sampling schedule, the uncached loop, and for each TeaCache
/// record every per-call decision, distance, rescaled and accumulated value and the final latent; with
/// policy recordings in the folder (``PolicyRecordingVerifier``) every record it can run.
public enum FixtureVerifier {
    /// Acceptance tolerances (FORMAT.md §7).
    public struct Tolerances: Sendable {
        /// Relative L2 of forward tensors.
        public var forwardRelativeL2 = 1e-4
        /// Relative L2 of final latents.
        public var latentRelativeL2 = 1e-4
        /// Absolute difference of per-call relative L1 distances.
        public var relL1Absolute = 1e-5
        /// Relative difference of rescaled and accumulated values.
        public var accumulatorRelative = 1e-3
        /// The floor of the scale those differences are relative to, as a share of the record's threshold
        /// (0: purely relative). With 16- and 8-bit weights the distances differ by up to
        /// ``relL1Absolute``, and where a polynomial crosses zero its rescaled value has no relative
        /// accuracy at all; what decides a skip is the accumulated value against the threshold, so the
        /// differences are measured against at least the threshold there.
        public var accumulatorFloorOfThreshold = 0.0
        /// Relative difference of the sigma/dt/timestep schedule (it is computed the same way in Float32).
        public var scheduleRelative = 1e-6
        /// The share of TeaCache calls whose decision may differ from the record (0: every one identical).
        public var decisionMismatchShare = 0.0

        /// The FORMAT.md §7 tolerances.
        public init() {}

        /// The tolerances of a model loaded with `precision` weights: FORMAT.md §7 for float32; for the
        /// others about twice the worst error measured over the 101 public and variant fixture folders of
        /// the 14 families (README, "Weight precision": forward rel L2 at most 2.0e-2 bf16, 1.9e-3 f16,
        /// 3.5e-2 int8; final latents 2.0e-2, 1.6e-3, 2.9e-2 — the worst from ConsisID's residual, a deep
        /// difference, and HiDream-I1's expert routing), and up to 10% of TeaCache decisions may differ:
        /// rounding perturbs each distance by about the format's precision, which tips a decision only
        /// where the accumulator sat within that much of the threshold (2 of 1,572 calls at bf16, 0 at f16
        /// and int8).
        public static func forPrecision(_ precision: WeightPrecision) -> Tolerances {
            var t = Tolerances()
            switch precision {
            case .float32: return t
            case .float16:
                t.forwardRelativeL2 = 4e-3; t.latentRelativeL2 = 4e-3
                t.relL1Absolute = 2e-3; t.accumulatorRelative = 5e-2; t.decisionMismatchShare = 0.1
                t.accumulatorFloorOfThreshold = 1
            case .bfloat16:
                t.forwardRelativeL2 = 4e-2; t.latentRelativeL2 = 4e-2
                t.relL1Absolute = 2e-2; t.accumulatorRelative = 0.5; t.decisionMismatchShare = 0.1
                t.accumulatorFloorOfThreshold = 1
            case .int8:
                t.forwardRelativeL2 = 7e-2; t.latentRelativeL2 = 6e-2
                t.relL1Absolute = 5e-2; t.accumulatorRelative = 0.5; t.decisionMismatchShare = 0.1
                t.accumulatorFloorOfThreshold = 1
            }
            return t
        }
    }

    /// Verifies the fixture folder at `url` with the family it resolves to (``resolve(_:)``).
    ///
    /// - Throws: `VerifyError` when the folder is incomplete or malformed or no family handles it;
    ///   `ModelLoadError` when the model cannot be built; errors of the model or TeaCache when a call
    ///   fails. Numeric disagreements are not errors: they are failed checks in the report.
    ///
    /// With `precision` other than float32 the model's weight matrices are held in it and the checks use
    /// `tolerances` (by default ``Tolerances/forPrecision(_:)``).
    public static func verify(folder url: URL, precision: WeightPrecision = .float32,
                              tolerances: Tolerances? = nil) throws -> VerifyReport {
        let folder = try FixtureFolder(url)
        let (family, name) = try resolve(folder)
        return try verify(folder, family: family, name: name, precision: precision,
                          tolerances: tolerances ?? .forPrecision(precision))
    }

    /// The registered family handling `folder` (`DiTFamilies`, by config.json's class) and the fixture
    /// family name: the one stated by forward.json/sampling.json when present (it must be one of the
    /// family's `DiTFamilyHarness.fixtureNames`), else the family's `DiTFamilyHarness.fixtureName(configuration:)`.
    public static func resolve(_ folder: FixtureFolder) throws(VerifyError) -> (family: any DiTFamilyHarness.Type, name: String) {
        let family: any DiTFamilyHarness.Type
        do { family = try DiTFamilies.harness(forClass: folder.className) } catch {
            throw .unknownFamily("no family handles class \(folder.className) (\(error))")
        }
        if let stated = try folder.statedFamily() {
            guard family.fixtureNames.contains(stated) else {
                let owner = DiTFamilies.harnessed.first { $0.fixtureNames.contains(stated) }
                if let owner {
                    throw .malformedFixture(
                        file: "config.json",
                        reason: "class \(folder.className) is not a \(stated) class (\(owner.classNames.joined(separator: ", ")))")
                }
                throw .unknownFamily("\"\(stated)\" (known: \(DiTFamilies.harnessed.flatMap { $0.fixtureNames }.joined(separator: ", ")))")
            }
            return (family, stated)
        }
        guard let name = try fixtureName(family, folder) else {
            throw .malformedFixture(file: "config.json", reason: "the configuration is none of the \(family.name) family's fixture kinds")
        }
        return (family, name)
    }

    private static func fixtureName<F: DiTFamilyHarness>(_: F.Type, _ folder: FixtureFolder) throws(VerifyError) -> String? {
        let c: F.Configuration
        do { c = try F.Configuration.parse(folder.config, className: folder.className) } catch {
            throw .malformedFixture(file: "config.json", reason: "the \(F.name) family cannot read it: \(error)")
        }
        return F.fixtureName(configuration: c)
    }

    /// Verifies a loaded folder with a given family.
    public static func verify<F: DiTFamilyHarness>(
        _ folder: FixtureFolder, family: F.Type, name: String, precision: WeightPrecision = .float32,
        tolerances tol: Tolerances = Tolerances()
    ) throws -> VerifyReport {
        let configuration = try F.Configuration.parse(folder.config, className: folder.className)
        let model = try F.load(configuration, weightsAt: folder.weightsURL, precision: precision)
        var checks = try forwardChecks(folder, F.self, configuration, model, tol)
        checks += try samplingChecks(folder, F.self, configuration, model, tol)
        guard PolicyRecordingVerifier.hasRecordings(folder.url) else { return VerifyReport(family: name, checks: checks) }
        let policies = try PolicyRecordingVerifier.checks(folder, refs: folder.url, F.self, model: model,
                                                          configuration: configuration, tolerance: tol.latentRelativeL2)
        return VerifyReport(family: name, checks: checks + policies.checks, notes: policies.unsupported)
    }

    // MARK: - Forward

    private static func forwardChecks<F: DiTFamilyHarness>(
        _ folder: FixtureFolder, _: F.Type, _ configuration: F.Configuration, _ model: F.Model, _ tol: Tolerances
    ) throws -> [VerifyCheck] {
        let references = folder.forwardTensors.keys
            .filter { $0 == "output" || $0.hasPrefix("teacache.") }
            .sorted { ($0 == "output" ? "" : $0) < ($1 == "output" ? "" : $1) }
        guard references.contains("output") else { throw VerifyError.missingTensor(name: "output", file: "forward.safetensors") }
        let results = try F.forwardResults(model: model, input: F.forwardInput(folder.forwardArguments(), configuration: configuration))
        return references.map { ref in
            let label = "forward " + (ref.hasPrefix("teacache.") ? String(ref.dropFirst("teacache.".count)) : ref)
            guard let got = results[ref], let expected = folder.forwardTensors[ref] else {
                return VerifyCheck(name: label, measurement: "not produced by the model", passed: false)
            }
            return compare(label, got, expected, tol.forwardRelativeL2)
        }
    }

    // MARK: - Sampling

    /// The sampler of a fixture folder's loop (FORMAT.md §2: its step count, timestep convention,
    /// velocity convention and CFG).
    public static func sampler<F: DiTFamilyHarness>(
        _ folder: FixtureFolder, _: F.Type, configuration: F.Configuration
    ) throws -> FlowMatchEulerSampler {
        let s = folder.sampling
        let timesteps = try folder.samplingTensor("timesteps")
        guard let convention = TimestepConvention(rawValue: s.timestepConvention) else {
            throw VerifyError.unsupported("timestep convention \"\(s.timestepConvention)\"")
        }
        if let cfg = s.cfg, cfg.callOrder != ["cond", "uncond"] {
            throw VerifyError.unsupported("CFG call order \(cfg.callOrder) (only cond, then uncond)")
        }
        return try FlowMatchEulerSampler(steps: timesteps.count, timestepConvention: convention,
                                         velocity: velocity(s.velocity, family: F.velocity(configuration)),
                                         guidanceScale: s.cfg?.guidanceScale)
    }

    /// Runs a fixture folder's sampling loop from `latent.initial` with its stored conditioning: with plain
    /// forwards when `policy` is nil, else through a `CachedTransformer` with that policy (the trace
    /// is returned).
    public static func sample<F: DiTFamilyHarness>(
        _ folder: FixtureFolder, _: F.Type, model: F.Model, configuration: F.Configuration, policy: CachePolicy?
    ) throws -> (latent: Tensor, trace: CacheTrace?) {
        let sampler = try sampler(folder, F.self, configuration: configuration)
        var conditioning: [BranchKey: FixtureArguments] = [.cond: folder.samplingArguments(branch: "cond")]
        if folder.sampling.cfg != nil { conditioning[.uncond] = folder.samplingArguments(branch: "uncond") }
        func input(_ latent: Tensor, _ t: Float, _ branch: BranchKey) throws -> F.Model.Input {
            guard let a = conditioning[branch] else { throw VerifyError.unsupported("no conditioning for branch \(branch)") }
            return try F.samplingInput(latent: latent, timestep: t, conditioning: a, configuration: configuration)
        }
        let initial = try folder.samplingTensor("latent.initial")
        guard let policy else {
            return (try sampler.sample(from: initial) { latent, t, branch, _ in try model.forward(input(latent, t, branch)) }, nil)
        }
        let cached = CachedTransformer(model: model, policy: policy)
        try cached.beginRun(steps: sampler.steps)
        let final = try sampler.sample(from: initial) { latent, t, branch, _ in try cached(input(latent, t, branch), branch: branch) }
        return (final, cached.endRun())
    }

    private static func samplingChecks<F: DiTFamilyHarness>(
        _ folder: FixtureFolder, _: F.Type, _ configuration: F.Configuration, _ model: F.Model, _ tol: Tolerances
    ) throws -> [VerifyCheck] {
        let steps = try sampler(folder, F.self, configuration: configuration).steps
        var checks = [try scheduleCheck(folder, sampler(folder, F.self, configuration: configuration), tol)]
        let uncached = try sample(folder, F.self, model: model, configuration: configuration, policy: nil).latent
        checks.append(compare("sampling final uncached", uncached, try folder.samplingTensor("latent.final_uncached"),
                              tol.latentRelativeL2))
        for record in folder.sampling.records {
            let run = try sample(folder, F.self, model: try F.model(model, for: record), configuration: configuration,
                                 policy: .teaCache(try F.teaCacheConfiguration(record: record, steps: steps)))
            checks += decisionChecks(record, run.trace ?? CacheTrace(steps: steps), F.recordedCacheKey, tol)
            checks.append(compare("sampling \(record.name) final cached", run.latent,
                                  try folder.samplingTensor(record.finalCachedTensor), tol.latentRelativeL2))
        }
        return checks
    }

    private static func scheduleCheck(
        _ folder: FixtureFolder, _ sampler: FlowMatchEulerSampler, _ tol: Tolerances
    ) throws -> VerifyCheck {
        var worst = 0.0
        var shapesAgree = true
        for (name, ours) in [("sigmas", sampler.sigmas), ("dt", sampler.dt), ("timesteps", sampler.timesteps)] {
            let ref = try folder.samplingTensor(name).scalars
            guard ref.count == ours.count else { shapesAgree = false; continue }
            for (a, b) in zip(ours, ref) {
                worst = max(worst, abs(Double(a) - Double(b)) / max(1, abs(Double(b))))
            }
        }
        guard shapesAgree else {
            return VerifyCheck(name: "sampling schedule", measurement: "lengths differ from \(sampler.steps) steps", passed: false)
        }
        return VerifyCheck(name: "sampling schedule", measurement: "max rel diff \(formatError(worst))",
                           passed: worst <= tol.scheduleRelative)
    }

    private static func decisionChecks(
        _ record: SamplingRecord, _ trace: CacheTrace, _ key: (SamplingRecord.Call) -> BranchKey, _ tol: Tolerances
    ) -> [VerifyCheck] {
        let prefix = "sampling \(record.name)"
        let expected = record.calls, got = trace.entries
        guard expected.count == got.count else {
            return [VerifyCheck(name: "\(prefix) decisions", measurement: "\(got.count) calls, expected \(expected.count)",
                                passed: false)]
        }
        var identical = 0, firstMismatch: Int?
        var relL1Diff = 0.0, accDiff = 0.0
        var valuesMissing = false
        for (e, g) in zip(expected, got) {
            let same = (e.decision == "computed") == (g.decision == .compute) && e.forced == g.forced
                && key(e) == g.branch && e.step == g.step
            if same { identical += 1 } else if firstMismatch == nil { firstMismatch = e.call }
            if let r = e.relL1 {
                if let d = g.distance { relL1Diff = max(relL1Diff, abs(d - r)) } else { valuesMissing = true }
            }
            // The accumulator is a sum of rescaled terms; where a negative term cancels it (polynomials that
            // go negative, e.g. Wan ret-mode −0.26 + 0.25) its relative error is amplified, so it is measured
            // relative to the larger of the sum and its newest term, which is itself checked relatively.
            let accScale = max(abs(e.accumulated ?? 0), abs(e.rescaled ?? 0))
            let floor = tol.accumulatorFloorOfThreshold * record.threshold
            for (ref, ours, scale) in [(e.rescaled, g.rescaled, abs(e.rescaled ?? 0)), (e.accumulated, g.accumulated, accScale)] {
                guard let ref else { continue }
                guard let ours else { valuesMissing = true; continue }
                accDiff = max(accDiff, abs(ours - ref) / max(scale, floor, 1e-12))
            }
        }
        let mismatch = firstMismatch.map { ", first difference at call \($0)" } ?? ""
        return [
            VerifyCheck(name: "\(prefix) decisions", measurement: "\(identical)/\(expected.count) identical\(mismatch)",
                        passed: Double(expected.count - identical) <= tol.decisionMismatchShare * Double(expected.count)),
            VerifyCheck(name: "\(prefix) rel_l1", measurement: "max abs diff \(formatError(relL1Diff))"
                            + (valuesMissing ? " (some values not computed)" : ""),
                        passed: !valuesMissing && relL1Diff <= tol.relL1Absolute),
            VerifyCheck(name: "\(prefix) rescaled/accumulated", measurement: "max rel diff \(formatError(accDiff))",
                        passed: !valuesMissing && accDiff <= tol.accumulatorRelative),
        ]
    }

    /// The loop's velocity convention: the sign sampling.json states, with the family's channel selection
    /// (checked against the file's description: `"all"` for an all-channel family).
    private static func velocity(_ d: SamplingDescription.Velocity, family: VelocityConvention) throws -> VelocityConvention {
        if d.channels == "all" {
            guard family.channels == .all else {
                throw VerifyError.unsupported("sampling.json takes all output channels as the velocity; the family takes \(family.channels)")
            }
        } else if family.channels == .all {
            throw VerifyError.unsupported("velocity channels \"\(d.channels)\" but the family takes all channels")
        }
        return VelocityConvention(sign: d.sign, channels: family.channels)
    }

    /// A relative-L2 check of `got` against `expected` (shapes first).
    public static func compare(_ name: String, _ got: Tensor, _ expected: Tensor, _ tolerance: Double) -> VerifyCheck {
        guard got.shape == expected.shape else {
            return VerifyCheck(name: name, measurement: "shape \(got.shape), expected \(expected.shape)", passed: false)
        }
        // Different shapes: infinitely far, so the check fails and its line names both shapes.
        let e = (try? Tensor.relativeL2(got, expected)) ?? .infinity
        return VerifyCheck(name: name, measurement: "rel L2 \(formatError(e))", passed: e <= tolerance)
    }
}
