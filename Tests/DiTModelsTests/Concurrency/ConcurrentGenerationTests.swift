import Dispatch
import Foundation
import Synchronization
import TeaCache
import Tensors
import Testing
@testable import DiTModels
import TestSupport

/// Several generations at once on one shared loaded model give exactly the results of the same
/// generations run one after the other.
///
/// The model is the FLUX fixture (Tests/Fixtures/flux, loaded once and shared by every thread); each
/// generation has its own ``CachedTransformer`` (the documented rule: one per generation), its own
/// policy — TeaCache, First-Block Cache, MagCache — and with or without classifier-free guidance (two
/// branches per step). The generations run on their own threads (not the cooperative pool, which on a
/// two-core machine would run them two at a time), released together. Every final latent must equal the
/// sequential run's bit for bit and every trace must encode to the same JSON: the kernels split work by
/// the thread-count setting, never by what else runs, so there is no tolerance. `scripts/sanitize.sh
/// thread` runs this suite under ThreadSanitizer.
@Suite struct ConcurrentGenerationTests {
    /// One generation: a policy, with or without CFG, an input seed.
    struct Job: Sendable, CustomStringConvertible {
        var name: String
        var policy: CachePolicy
        var guidance: Float?
        var seed: UInt64
        var description: String { name }
    }

    /// What a generation produced.
    struct Outcome: Sendable, Equatable {
        var shape: [Int]
        var latent: [Float]
        var trace: Data
        var summary: CacheTrace.Summary
    }

    static let steps = 8

    /// TeaCache with CFG, First-Block Cache without, MagCache with CFG, TeaCache without CFG (another seed).
    /// The first two run in the two-generation test; all four in the four-generation test.
    static func jobs() throws -> [Job] {
        [
            Job(name: "teacache cfg", policy: .teaCache(try .faithful(FluxFamily.defaultPreset, threshold: 0.6)),
                guidance: 3.5, seed: 11),
            Job(name: "first-block", policy: .firstBlock(try FirstBlockCacheConfiguration(threshold: 0.2)),
                guidance: nil, seed: 12),
            Job(name: "magcache cfg", policy: .magCache(try MagCacheConfiguration(magRatios: MagCachePreset.flux.magRatios,
                                                                                    threshold: 0.5)),
                guidance: 2, seed: 13),
            Job(name: "teacache", policy: .teaCache(try .faithful(FluxFamily.defaultPreset, threshold: 0.6)),
                guidance: nil, seed: 14),
        ]
    }

    /// The FLUX fixture model and its configuration.
    static func fixtureModel() throws -> (FluxTransformer, FluxConfiguration) {
        let folder = Fixtures.folder("flux")
        let (className, body) = try ModelConfigFile.read(folder.appendingPathComponent("config.json"))
        let configuration = try FluxConfiguration.parse(body, className: className)
        let model = try FluxFamily.load(configuration, weightsAt: folder.appendingPathComponent("model.safetensors"))
        return (model, configuration)
    }

    /// Runs `job` on `model` through its own ``CachedTransformer``.
    static func generate(_ job: Job, model: FluxTransformer, configuration: FluxConfiguration) throws -> Outcome {
        let sizes = BenchmarkInputs(["batch": 1, "latent_height": 6, "latent_width": 8, "text_tokens": 5])
        let inputs = try FluxFamily.randomInputs(configuration, sizes: sizes, seed: job.seed)
        let sampler = try FlowMatchEulerSampler(steps: steps, timestepConvention: FluxFamily.timestepConvention,
                                                velocity: FluxFamily.velocity(configuration), guidanceScale: job.guidance)
        let cached = CachedTransformer(model: model, policy: job.policy)
        try cached.beginRun(steps: steps)
        let latent = try sampler.sample(from: inputs.latent) { latent, t, branch, _ in
            try cached(inputs.makeInput(latent, t, branch), branch: branch)
        }
        let trace = try #require(cached.endRun())
        return Outcome(shape: latent.shape, latent: latent.scalars, trace: try trace.jsonData(), summary: trace.summary)
    }

    /// Runs `jobs` at once, one thread each, released together; results in job order.
    static func runConcurrently(_ jobs: [Job], model: FluxTransformer,
                                configuration: FluxConfiguration) -> [Result<Outcome, any Error>] {
        let results = Mutex<[Int: Result<Outcome, any Error>]>([:])
        let ready = DispatchGroup(), done = DispatchGroup()
        let go = DispatchSemaphore(value: 0)
        for (i, job) in jobs.enumerated() {
            ready.enter()
            done.enter()
            let thread = Thread {
                ready.leave()
                go.wait()
                let r = Result { try generate(job, model: model, configuration: configuration) }
                results.withLock { $0[i] = r }
                done.leave()
            }
            thread.stackSize = 8 << 20
            thread.start()
        }
        ready.wait()
        for _ in jobs { go.signal() }
        done.wait()
        return results.withLock { r in jobs.indices.map { r[$0]! } }
    }

    @Test(arguments: [2, 4])
    func concurrentGenerationsEqualSequentialOnes(width: Int) throws {
        let (model, configuration) = try Self.fixtureModel()
        let jobs = Array(try Self.jobs().prefix(width))
        let sequential = try jobs.map { try Self.generate($0, model: model, configuration: configuration) }
        // Every job exercises its cache: some calls skip, some compute, and CFG jobs call two branches.
        for (job, outcome) in zip(jobs, sequential) {
            #expect(outcome.summary.skipped > 0 && outcome.summary.computed > 0, "\(job): \(outcome.summary)")
            #expect(outcome.summary.calls == Self.steps * (job.guidance == nil ? 1 : 2), "\(job)")
            #expect(outcome.latent.allSatisfy { $0.isFinite }, "\(job)")
        }
        // Distinct jobs give distinct latents, so an outcome delivered to the wrong job would be caught.
        #expect(Set(sequential.map(\.latent)).count == jobs.count)
        for round in 0..<2 {
            let concurrent = Self.runConcurrently(jobs, model: model, configuration: configuration)
            for (k, (job, result)) in zip(jobs, concurrent).enumerated() {
                let outcome = try result.get()
                #expect(outcome.shape == sequential[k].shape, "\(job), round \(round)")
                #expect(outcome.latent == sequential[k].latent, "\(job), round \(round): latent differs from the sequential run")
                #expect(outcome.trace == sequential[k].trace, "\(job), round \(round): trace differs from the sequential run")
            }
        }
    }

    /// The same job on every thread: all results equal one sequential run (shared weights are only read).
    @Test func identicalGenerationsAtOnceAgree() throws {
        let (model, configuration) = try Self.fixtureModel()
        let job = try Self.jobs()[2]
        let reference = try Self.generate(job, model: model, configuration: configuration)
        let concurrent = Self.runConcurrently(Array(repeating: job, count: 4), model: model, configuration: configuration)
        for result in concurrent { #expect(try result.get() == reference) }
    }
}
