import Foundation
import Testing
import TeaCache
import Tensors
@testable import DiTModels
import TestSupport

/// The wan21 sampling fixture (FORMAT.md §2, §4): CFG 5 with cond then uncond calls, two TeaCache records.
@Suite("Wan TeaCache")
struct WanTeaCacheTests {
    struct Sampling: Decodable {
        struct Call: Decodable {
            var call: Int
            var step: Int
            var cfg_branch: String
            var forced: Bool
            var rel_l1: Double?
            var rescaled: Double?
            var accumulated: Double?
            var decision: String
        }
        struct Record: Decodable {
            var name: String
            var use_ret_steps: Bool
            var coefficients: [Double]
            var threshold: Double
            var final_cached_tensor: String
            var calls: [Call]
        }
        struct CFG: Decodable { var guidance_scale: Float }
        var num_steps: Int
        var cfg: CFG
        var records: [Record]
    }

    static func fixture() throws -> (Sampling, [String: Tensor], WanTransformer, Float) {
        let url = Fixtures.folder("wan21").appendingPathComponent("sampling.json")
        let s = try JSONDecoder().decode(Sampling.self, from: Data(contentsOf: url))
        let config = try WanConfiguration.load(Fixtures.folder("wan21").appendingPathComponent("config.json"))
        let model = try WanFamily.load(config, tensors: Fixtures.tensors("wan21", "model.safetensors"))
        return (s, try Fixtures.tensors("wan21", "sampling.safetensors"), model, s.cfg.guidance_scale)
    }

    /// Runs the shared Euler/CFG sampler with `call` as the model.
    static func sample(
        _ t: [String: Tensor], steps: Int, guidance: Float,
        _ call: (WanInput, BranchKey) throws -> Tensor
    ) throws -> Tensor {
        let sampler = try FlowMatchEulerSampler(steps: steps, timestepConvention: .sigmaTimes1000, guidanceScale: guidance)
        let cond = try #require(t["cond.encoder_hidden_states"]), uncond = try #require(t["uncond.encoder_hidden_states"])
        return try sampler.sample(from: try #require(t["latent.initial"])) { latent, timestep, branch, _ in
            let input = WanInput(hiddenStates: latent, timestep: try Tensor(shape: [latent.shape[0]], repeating: timestep),
                                 encoderHiddenStates: branch == .uncond ? uncond : cond)
            return try call(input, branch)
        }
    }

    /// Without TeaCache the loop reproduces `latent.final_uncached` (rel L2 ≤ 1e-4, FORMAT.md §7).
    @Test func uncachedLoopMatches() throws {
        let (s, t, model, g) = try Self.fixture()
        let final = try Self.sample(t, steps: s.num_steps, guidance: g) { input, _ in try model(input) }
        let e = try Tensor.relativeL2(final, #require(t["latent.final_uncached"]))
        #expect(e <= 1e-4, "uncached final latent rel L2 \(e)")
    }

    /// Both records: every per-call decision identical, distances within 1e-5 absolute and accumulators
    /// within 1e-3 relative (FORMAT.md §7), and the cached final latent within rel L2 1e-4.
    @Test(arguments: WanTeaCacheMode.allCases)
    func cachedLoopMatchesTheRecord(mode: WanTeaCacheMode) throws {
        let (s, t, model, g) = try Self.fixture()
        let record = try #require(s.records.first { $0.use_ret_steps == (mode == .retention) })
        let config = try TeaCacheConfiguration.faithful(coefficients: record.coefficients, threshold: record.threshold,
                                                        schedule: mode.schedule)
        let cached = CachedTransformer(model: model.withTeaCacheMode(mode), configuration: config)
        try cached.beginRun(steps: s.num_steps)
        let final = try Self.sample(t, steps: s.num_steps, guidance: g) { input, branch in try cached(input, branch: branch) }
        let trace = try #require(cached.endRun())
        #expect(trace.entries.count == record.calls.count)
        for (entry, call) in zip(trace.entries, record.calls) {
            let label = "\(record.name) call \(call.call)"
            #expect(entry.call == call.call && entry.step == call.step && entry.branch.name == call.cfg_branch, "\(label)")
            #expect(entry.decision.rawValue == call.decision, "\(label): decision")
            #expect(entry.forced == call.forced, "\(label): forced")
            if let d = call.rel_l1 {
                let got = try #require(entry.distance, "\(label): no distance")
                #expect(abs(got - d) <= 1e-5, "\(label): rel_l1 \(got) vs \(d)")
            }
            if let r = call.rescaled {
                let got = try #require(entry.rescaled, "\(label): no rescaled value")
                #expect(abs(got - r) <= 1e-3 * abs(r), "\(label): rescaled \(got) vs \(r)")
            }
            if let a = call.accumulated {
                let got = try #require(entry.accumulated, "\(label): no accumulator")
                // 1e-3 relative to the larger of the sum and its newest term: where a negative term cancels
                // the sum (ret-mode polynomial, e.g. −0.26 + 0.25) the sum's relative error is amplified,
                // while each term stays within 1e-3 (checked above).
                let scale = max(abs(a), abs(call.rescaled ?? 0))
                #expect(abs(got - a) <= 1e-3 * scale, "\(label): accumulated \(got) vs \(a)")
            }
        }
        let e = try Tensor.relativeL2(final, #require(t[record.final_cached_tensor]))
        #expect(e <= 1e-4, "\(record.name) cached final latent rel L2 \(e)")
        // Skips really happened and changed the result (FORMAT.md §7: cached vs uncached differ).
        #expect(trace.entries.contains { $0.decision == .skip })
        let uncached = try #require(t["latent.final_uncached"])
        #expect(try Tensor.relativeL2(final, uncached) > 1e-3)
    }

    /// The two branches keep separate state: uncond calls are compared with the previous uncond call
    /// (never with the cond call of the same step, which would give distance 0), and a shared state
    /// would give a different final latent.
    @Test func branchesKeepTheirOwnState() throws {
        let (s, t, model, g) = try Self.fixture()
        let record = try #require(s.records.first { !$0.use_ret_steps })
        let config = try TeaCacheConfiguration.faithful(coefficients: record.coefficients, threshold: record.threshold,
                                                        schedule: WanTeaCacheMode.standard.schedule)
        let cached = CachedTransformer(model: model.withTeaCacheMode(.standard), configuration: config)
        try cached.beginRun(steps: s.num_steps)
        _ = try Self.sample(t, steps: s.num_steps, guidance: g) { input, branch in try cached(input, branch: branch) }
        let trace = try #require(cached.endRun())
        let uncondDistances = trace.entries.filter { $0.branch == .uncond }.compactMap(\.distance)
        #expect(uncondDistances.count == s.num_steps - 1)
        #expect(uncondDistances.allSatisfy { $0 > 0.01 })

        // One shared branch key for both calls (a wrong port) gives different results.
        let shared = CachedTransformer(model: model.withTeaCacheMode(.standard), configuration: config)
        try shared.beginRun(steps: 2 * s.num_steps)
        let wrong = try Self.sample(t, steps: s.num_steps, guidance: g) { input, _ in try shared(input, branch: .cond) }
        #expect(try Tensor.relativeL2(wrong, #require(t[record.final_cached_tensor])) > 1e-3)
    }

    @Test func modulatedInputsAndPresets() throws {
        let (_, _, model, _) = try Self.fixture()
        let f = try Fixtures.tensors("wan21", "forward.safetensors")
        let x = WanInput(hiddenStates: try #require(f["input.hidden_states"]), timestep: try #require(f["input.timestep"]),
                         encoderHiddenStates: try #require(f["input.encoder_hidden_states"]))
        let standard = model.withTeaCacheMode(.standard)
        let retention = model.withTeaCacheMode(.retention)
        let state = try standard.prepare(x)
        // rel L2 ≤ 1e-4 as for the forward (FORMAT.md §7).
        #expect(try Tensor.relativeL2(standard.modulatedInput(state), #require(f["teacache.modulated_input_temb"])) <= 1e-4)
        #expect(try Tensor.relativeL2(retention.modulatedInput(state), #require(f["teacache.modulated_input"])) <= 1e-4)
        #expect(state.streams.map(\.shape) == [[1, 32, 32]])

        // Coefficients per variant and mode come from the TeaCache module's presets (spec §2.2).
        #expect(WanTransformer.preset(.t2v1_3B, .retention).coefficients
                == [-5.21862437e+04, 9.23041404e+03, -5.28275948e+02, 1.36987616e+01, -4.99875664e-02])
        #expect(WanTransformer.preset(.i2v720P, .standard).coefficients
                == [-114.36346466, 65.26524496, -18.82220707, 4.91518089, -0.23412683])
        for v in WanVariant.allCases {
            #expect(WanTransformer.preset(v, .standard).schedule == WanTeaCacheMode.standard.schedule)
            #expect(WanTransformer.preset(v, .retention).schedule == WanTeaCacheMode.retention.schedule)
        }
        let c = try retention.teaCacheConfiguration(variant: .t2v14B, threshold: 0.3)
        #expect(c.threshold == 0.3 && c.schedule.retainFirstSteps == 5 && !c.schedule.forceLastStep)
        // The retention presets' speedups are the README's use_ret_steps table (baseline / latency),
        // rounded to 2 decimals.
        for v in WanVariant.allCases {
            let table = try #require(WanPublishedLatency.all.first { $0.variant == v && $0.mode == .retention && $0.table.hasPrefix("use_ret") })
            let preset = WanTransformer.preset(v, .retention)
            #expect(preset.speedups.map(\.threshold) == table.speedups.map(\.threshold), "\(v)")
            for (p, t) in zip(preset.speedups, table.speedups) { #expect(abs(p.speedup - t.speedup) <= 0.005, "\(v) at \(p.threshold)") }
        }
    }

    /// Forced steps per branch with N = 50 (spec §6 item 7, expressed per branch): standard → steps 0 and
    /// 49; retention → steps 0…4, last not forced.
    @Test func forcedStepsOfBothModes() {
        let standard = WanTeaCacheMode.standard.schedule, retention = WanTeaCacheMode.retention.schedule
        #expect((0..<50).filter { standard.forcedReason(step: $0, steps: 50) != nil } == [0, 49])
        #expect((0..<50).filter { retention.forcedReason(step: $0, steps: 50) != nil } == [0, 1, 2, 3, 4])
    }

    @Test func stateSelectionGathersBatchElements() throws {
        let model = try WanFamily.random(tinyI2VConfiguration(), seed: 1, steps: 50)
        let x = WanImageToVideoTests.input(batch: 3)
        let full = try model.prepare(x)
        let sub = try full.selecting(batch: [2, 0])
        #expect(sub.batchSize == 2)
        #expect(try sub.tokens.slice(axis: 0, 0..<1) == full.tokens.slice(axis: 0, 2..<3))
        #expect(try sub.blocks.image!.slice(axis: 0, 1..<2) == full.blocks.image!.slice(axis: 0, 0..<1))
        var a = sub
        try model.runBlocks(&a)
        var b = full
        try model.runBlocks(&b)
        // Blocks act per sample: the gathered run equals the matching rows of the full run (same kernels,
        // different batch partitioning; 1e-6 relative covers reordered float sums).
        #expect(relL2(try a.tokens.slice(axis: 0, 0..<1), try b.tokens.slice(axis: 0, 2..<3)) < 1e-6)
        #expect(throws: (any Error).self) { try full.selecting(batch: [3]) }
    }
}
