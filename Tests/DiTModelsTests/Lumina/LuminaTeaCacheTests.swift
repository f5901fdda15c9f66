import Foundation
import Testing
import TeaCache
import Tensors
import DiTHarness
@testable import DiTModels
import TestSupport

/// TeaCache on the Lumina models: the faithful Lumina2 mode (entries keyed by `max_seq_len`, the
/// reference's shared counter) reproduces the reference's quirk — nothing is skipped without CFG or with
/// equal cond/uncond lengths — while the library's default (one entry per branch, the standard schedule)
/// skips in both cases; the cache keys; batch selection of both states.
@Suite struct LuminaTeaCacheTests {
    static let coefficients = TeaCachePreset.lumina2V1.coefficients

    /// The sampling run of a lumina2 fixture folder, with an optional CFG override and cond masks reused
    /// for the uncond branch (equal lengths).
    struct Lumina2Run {
        let model: Lumina2Transformer
        let folder: FixtureFolder
        let sampler: FlowMatchEulerSampler
        let uncondArguments: FixtureArguments

        init(_ name: String, cfg: Float?, equalLengths: Bool = false) throws {
            folder = try FixtureFolder(Fixtures.root.appendingPathComponent(name))
            let c = try Lumina2Configuration.parse(folder.config, className: folder.className)
            model = try Lumina2Family.load(c, weightsAt: folder.weightsURL)
            sampler = try FlowMatchEulerSampler(steps: 12, timestepConvention: .oneMinusSigma, velocity: .negated, guidanceScale: cfg)
            var u = folder.samplingArguments(branch: cfg == nil ? "cond" : "uncond")
            if equalLengths, let m = folder.samplingArguments(branch: "cond").optionalTensor("encoder_attention_mask") {
                u.tensors["encoder_attention_mask"] = m
            }
            uncondArguments = u
        }

        func input(_ latent: Tensor, _ t: Float, _ branch: BranchKey) throws -> Lumina2Input {
            let a = branch == .uncond ? uncondArguments : folder.samplingArguments(branch: "cond")
            return try Lumina2Family.samplingInput(latent: latent, timestep: t, conditioning: a, configuration: model.configuration)
        }

        func uncached() throws -> Tensor {
            try sampler.sample(from: folder.samplingTensor("latent.initial")) { l, t, b, _ in try model.forward(input(l, t, b)) }
        }

        func cached(keying: Lumina2TeaCacheKeying, schedule: TeaCacheSchedule, threshold: Double) throws -> (Tensor, CacheTrace) {
            let cache = CachedTransformer(model: model.withTeaCacheKeying(keying),
                                          configuration: try .faithful(coefficients: coefficients, threshold: threshold, schedule: schedule))
            try cache.beginRun(steps: 12)
            let out = try sampler.sample(from: folder.samplingTensor("latent.initial")) { l, t, b, _ in try cache(input(l, t, b), branch: b) }
            return (out, try #require(cache.endRun()))
        }
    }

    /// Without CFG: the faithful mode forces every call (the uncached latent, bit for bit); the default
    /// mode skips.
    @Test func withoutCFGOnlyTheDefaultSkips() throws {
        let run = try Lumina2Run("variants/lumina2_nocfg", cfg: nil)
        let uncached = try run.uncached()
        let (faithful, ft) = try run.cached(keying: .sequenceLength, schedule: .lumina2Reference, threshold: 0.3)
        #expect(ft.summary.skipped == 0 && ft.entries.allSatisfy(\.forced))
        #expect(faithful == uncached)
        let (def, dt) = try run.cached(keying: .branch, schedule: .standard, threshold: 0.3)
        #expect(dt.summary.skipped > 0, "the default keying must skip without CFG")
        #expect(dt.entries.allSatisfy { $0.branch == .cond })
        #expect(def != uncached)
    }

    /// CFG with cond and uncond of equal caption length: the faithful mode shares one entry between the
    /// two branches (2N calls on one key, no error) and never skips; the default mode keeps two entries
    /// and skips.
    @Test func equalLengthsShareOneEntryInTheFaithfulMode() throws {
        let run = try Lumina2Run("lumina2", cfg: 4, equalLengths: true)
        let uncached = try run.uncached()
        let (faithful, ft) = try run.cached(keying: .sequenceLength, schedule: .lumina2Reference, threshold: 0.3)
        #expect(Set(ft.entries.map(\.branch)) == [BranchKey(22)] && ft.entries.count == 24)
        #expect(ft.summary.skipped == 0)
        #expect(faithful == uncached)
        let (_, dt) = try run.cached(keying: .branch, schedule: .standard, threshold: 0.3)
        #expect(Set(dt.entries.map(\.branch)) == [.cond, .uncond] && dt.summary.skipped > 0)
    }

    /// The public folder's CFG loop in faithful mode keys cond by 22 and uncond by 19, as recorded.
    @Test func faithfulKeysAreTheJointLengths() throws {
        let run = try Lumina2Run("lumina2", cfg: 4)
        let record = try #require(run.folder.sampling.records.first)
        let (_, trace) = try run.cached(keying: .sequenceLength, schedule: .lumina2Reference, threshold: record.threshold)
        #expect(trace.entries.map(\.branch) == record.calls.map(Lumina2Family.recordedCacheKey))
        #expect(trace.entries.map(\.branch.name).prefix(2) == ["22", "19"])
        let state = try run.model.prepare(run.input(run.folder.samplingTensor("latent.initial"), 0, .uncond))
        #expect(try run.model.cacheKey(for: state, branch: .uncond) == .uncond)
        #expect(try run.model.withTeaCacheKeying(.sequenceLength).cacheKey(for: state, branch: .uncond) == BranchKey(19))
    }

    /// Selecting batch elements of a prepared state and running the blocks gives the rows of the whole
    /// batch's result (both models; Lumina2 with padding and a mask).
    @Test func selectedStatesRunLikeTheirRows() throws {
        let l2 = try Lumina2ForwardTests.load(Fixtures.root.appendingPathComponent("variants/lumina2_b2_lengths"))
        var full = try l2.0.prepare(l2.1)
        let before = full
        try l2.0.runBlocks(&full)
        for i in [1, 0] {
            var one = try before.selecting(batch: [i])
            #expect(one.batchSize == 1 && one.captionLengths == [before.captionLengths[i]])
            try l2.0.runBlocks(&one)
            #expect(relL2(one.joint, try full.joint.slice(axis: 0, i..<(i + 1))) <= 1e-6, "lumina2 sample \(i)")
            #expect(relL2(try l2.0.outputHead(one), try l2.0.outputHead(full).slice(axis: 0, i..<(i + 1))) <= 1e-6)
        }
        let (next, args, _) = try LuminaNextForwardTests.load(Fixtures.root.appendingPathComponent("variants/lumina_next_b2_mask"))
        var nf = try next.prepare(LuminaNextFamily.forwardInput(args, configuration: next.configuration))
        let nb = nf
        try next.runBlocks(&nf)
        var one = try nb.selecting(batch: [1])
        try next.runBlocks(&one)
        #expect(relL2(one.tokens, try nf.tokens.slice(axis: 0, 1..<2)) <= 1e-6)
    }

    /// Per-sample decisions (default keying) on a padded batch: threshold 0 computes every sample of every
    /// call and gives the uncached latent.
    @Test func perSampleModeRunsOnAPaddedBatch() throws {
        let run = try Lumina2Run("variants/lumina2_b2_lengths", cfg: 4)
        let cache = CachedTransformer(model: run.model, configuration: try .faithful(coefficients: Self.coefficients, threshold: 0).withPerSample(true))
        try cache.beginRun(steps: 12)
        let out = try run.sampler.sample(from: run.folder.samplingTensor("latent.initial")) { l, t, b, _ in try cache(run.input(l, t, b), branch: b) }
        #expect(relL2(out, try run.uncached()) <= 1e-6)
        #expect(cache.endRun()?.entries.count == 48)
    }
}
