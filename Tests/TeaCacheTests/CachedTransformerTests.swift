import Foundation
import Testing
import Tensors
@testable import TeaCache

/// The wrapper on a synthetic adaLN DiT: skipping really skips, threshold 0 is exact, runs are isolated,
/// per-sample mode equals single runs, replays reproduce.
@Suite struct CachedTransformerTests {
    static let identity: [Double] = [0, 0, 0, 1, 0]   // P(d) = d

    /// Inputs of a short "sampling" sequence: a latent drifting slowly and timesteps advancing by `rate`.
    static func inputs(seed: UInt64, batch: Int, tokens: Int, steps: Int, rates: [Float]) throws -> [TinyDiT.Input] {
        var rng = SeededGenerator(seed: seed)
        var latent = try rng.tensor([batch, tokens, 4])
        var out: [TinyDiT.Input] = []
        for k in 0..<steps {
            out.append(TinyDiT.Input(latent: latent, timesteps: rates.map { Float(k) * $0 }))
            latent = try latent + (try rng.tensor([batch, tokens, 4], scale: 0.02))
        }
        return out
    }

    /// A threshold that makes roughly every other eligible call skip for P(d) = d.
    static func halfSkipThreshold(_ model: TinyDiT, _ inputs: [TinyDiT.Input]) throws -> Double {
        var recorder = CalibrationRecorder()
        for input in inputs {
            let s = try model.prepare(input)
            try recorder.record(modulatedInput: try model.modulatedInput(s), output: try model.forward(input))
        }
        let d = recorder.samples.map(\.inputDistance).sorted()
        return 1.5 * d[d.count / 2]
    }

    static func run(_ cached: CachedTransformer<TinyDiT>, _ inputs: [TinyDiT.Input], branch: BranchKey = .cond) throws -> [Tensor] {
        try cached.beginRun(steps: inputs.count)
        return try inputs.map { try cached($0, branch: branch) }
    }

    @Test func thresholdZeroEqualsUncachedExactly() throws {
        let model = try TinyDiT(seed: 1)
        let inputs = try Self.inputs(seed: 2, batch: 1, tokens: 6, steps: 6, rates: [0.05])
        // A polynomial that is negative everywhere: threshold 0 must still never skip.
        let cached = CachedTransformer(model: model, configuration: try .faithful(coefficients: [0, 0, 0, 0, -1], threshold: 0))
        let outs = try Self.run(cached, inputs)
        for (input, out) in zip(inputs, outs) { #expect(out == (try model.forward(input))) }
        #expect(cached.trace?.summary.skipped == 0)
        #expect(model.counter.blockStackRuns == 2 * inputs.count)   // forward + cached, every call
    }

    @Test func skippedCallsSkipTheBlockStackAndReuseTheResidual() throws {
        let model = try TinyDiT(seed: 3)
        let inputs = try Self.inputs(seed: 4, batch: 1, tokens: 6, steps: 10, rates: [0.05])
        let threshold = try Self.halfSkipThreshold(model, inputs)
        let cached = CachedTransformer(model: model, configuration: try .faithful(coefficients: Self.identity, threshold: threshold))
        let before = model.counter.blockStackRuns
        let outs = try Self.run(cached, inputs)
        let trace = try #require(cached.trace)
        let summary = trace.summary
        #expect(summary.skipped > 0 && summary.computed > 2, "threshold \(threshold) should skip some calls")
        #expect(model.counter.blockStackRuns - before == summary.computed)
        #expect(cached.blockStackRuns == summary.computed)
        #expect(trace.entries.first?.forced == true && trace.entries.last?.forced == true)

        // Independent naive reference following the same decisions.
        var residual: Tensor?
        for (k, input) in inputs.enumerated() {
            var state = try model.prepare(input)
            if trace.entries[k].decision == .compute {
                let h0 = state.streams[0]
                try model.runBlocks(&state)
                residual = try state.streams[0] - h0
            } else {
                state.streams[0] = try state.streams[0] + (try #require(residual))
            }
            #expect(outs[k] == (try model.outputHead(state)), "call \(k)")
            if trace.entries[k].decision == .skip {
                #expect(outs[k] != (try model.forward(input)), "a skipped call should differ from the exact forward")
            }
        }
    }

    @Test func hugeThresholdComputesOnlyForcedSteps() throws {
        let model = try TinyDiT(seed: 5)
        let inputs = try Self.inputs(seed: 6, batch: 1, tokens: 4, steps: 8, rates: [0.05])
        let standard = CachedTransformer(model: model, configuration: try .faithful(coefficients: Self.identity, threshold: 1e9))
        _ = try Self.run(standard, inputs)
        #expect(standard.trace?.entries.filter { $0.decision == .compute }.map(\.step) == [0, 7])

        let ret = CachedTransformer(model: model, configuration: try .faithful(
            coefficients: Self.identity, threshold: 1e9, schedule: TeaCacheSchedule(retainFirstSteps: 5, forceLastStep: false)))
        try ret.beginRun(steps: inputs.count)
        for input in inputs {
            _ = try ret(input, branch: .cond)
            _ = try ret(input, branch: .uncond)
        }
        for branch in [BranchKey.cond, .uncond] {
            let computed = ret.trace?.entries(for: branch).filter { $0.decision == .compute }.map(\.step)
            #expect(computed == [0, 1, 2, 3, 4], "\(branch): retention steps only, last step not forced")
        }
    }

    @Test func lifecycleErrorsAreTyped() throws {
        let model = try TinyDiT(seed: 7)
        let inputs = try Self.inputs(seed: 8, batch: 1, tokens: 4, steps: 3, rates: [0.05])
        let cached = CachedTransformer(model: model, configuration: try .faithful(coefficients: Self.identity, threshold: 0.1))
        #expect(throws: CacheError.runNotStarted) { try cached(inputs[0]) }
        #expect(throws: CacheError.invalidStepCount(0)) { try cached.beginRun(steps: 0) }
        _ = try Self.run(cached, inputs)
        #expect(throws: CacheError.stepOutOfRange(branch: .cond, step: 3, steps: 3)) { try cached(inputs[0]) }
        // Another branch still has its own steps left.
        _ = try cached(inputs[0], branch: .uncond)
        #expect(cached.nextStep(for: .uncond) == 1)
    }

    @Test func invalidThresholdsAreTyped() {
        #expect(throws: CacheError.invalidThreshold(-0.1)) { try TeaCacheConfiguration.faithful(coefficients: Self.identity, threshold: -0.1) }
        #expect(throws: CacheError.self) { try TeaCacheConfiguration.faithful(coefficients: Self.identity, threshold: .nan) }
        #expect(throws: CacheError.self) { try TeaCacheConfiguration.faithful(coefficients: Self.identity, threshold: .infinity) }
        #expect(throws: CacheError.self) { try TeaCacheConfiguration.faithful(coefficients: [1, 2], threshold: 0.1) }
        #expect(throws: CacheError.self) {
            try TeaCacheConfiguration.faithful(coefficients: Self.identity, threshold: 0.1,
                                               schedule: TeaCacheSchedule(startFraction: 0.8, endFraction: 0.2))
        }
        // Decoding validates too.
        let bad = Data(#"{"coefficients":[0,0,0,1,0],"threshold":-1}"#.utf8)
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(TeaCacheConfiguration.self, from: bad) }
    }

    @Test func backToBackRunsBehaveLikeFreshWrappers() throws {
        let model = try TinyDiT(seed: 9)
        let a = try Self.inputs(seed: 10, batch: 1, tokens: 6, steps: 7, rates: [0.05])
        let b = try Self.inputs(seed: 11, batch: 2, tokens: 3, steps: 5, rates: [0.04, 0.04])
        let config = try TeaCacheConfiguration.faithful(coefficients: Self.identity, threshold: try Self.halfSkipThreshold(model, a))
        let shared = CachedTransformer(model: model, configuration: config)
        let sharedA = try Self.run(shared, a), traceA = shared.trace
        let sharedB = try Self.run(shared, b), traceB = shared.trace
        let freshA = CachedTransformer(model: model, configuration: config)
        let freshB = CachedTransformer(model: model, configuration: config)
        #expect(sharedA == (try Self.run(freshA, a)))
        #expect(traceA == freshA.trace)
        #expect(sharedB == (try Self.run(freshB, b)))
        #expect(traceB == freshB.trace)
        #expect(traceA?.summary.skipped ?? 0 > 0)
    }

    @Test func shapeChangeWithinARunResetsTheBranch() throws {
        let model = try TinyDiT(seed: 12)
        let a = try Self.inputs(seed: 13, batch: 1, tokens: 6, steps: 4, rates: [0.01])
        let b = try Self.inputs(seed: 14, batch: 1, tokens: 5, steps: 4, rates: [0.01])
        let cached = CachedTransformer(model: model, configuration: try .faithful(coefficients: Self.identity, threshold: 1e9))
        try cached.beginRun(steps: 4)
        _ = try cached(a[0]); _ = try cached(a[1])
        let out = try cached(b[2])   // new token count: must compute, not add a stale residual
        #expect(out == (try model.forward(b[2])))
        #expect(cached.trace?.entries.last?.reason == .noPreviousInput)
    }

    @Test func perSampleBatchEqualsSingleRuns() throws {
        let model = try TinyDiT(seed: 15)
        let steps = 10, rates: [Float] = [0.03, 0.09]
        let batch = try Self.inputs(seed: 16, batch: 2, tokens: 5, steps: steps, rates: rates)
        var singles: [[TinyDiT.Input]] = [[], []]
        for b in 0..<2 {
            for input in batch {
                singles[b].append(TinyDiT.Input(latent: try input.latent.slice(axis: 0, b..<(b + 1)), timesteps: [input.timesteps[b]]))
            }
        }
        let threshold = try Self.halfSkipThreshold(model, singles[0])
        let config = try TeaCacheConfiguration.faithful(coefficients: Self.identity, threshold: threshold).withPerSample(true)

        let batched = CachedTransformer(model: model, configuration: config)
        let rowsBefore = model.counter.rowsThroughBlocks
        let outs = try Self.run(batched, batch)
        let trace = try #require(batched.trace)
        // Only the computing samples go through the blocks (gather, compute, scatter).
        let computingRows = trace.entries.filter { $0.decision == .compute }.count
        #expect(model.counter.rowsThroughBlocks - rowsBefore == computingRows)
        #expect(computingRows < 2 * steps)
        var sawMixed = false
        for call in 0..<steps {
            let e = trace.entries.filter { $0.call == call }
            if Set(e.map(\.decision)).count == 2 { sawMixed = true }
        }
        #expect(sawMixed, "the test should exercise a partially computed batch")

        for b in 0..<2 {
            let single = CachedTransformer(model: model, configuration: config)
            let singleOuts = try Self.run(single, singles[b])
            let mine = trace.entries.filter { $0.sample == b }
            let theirs = try #require(single.trace).entries
            #expect(mine.map(\.decision) == theirs.map(\.decision), "sample \(b) decisions")
            #expect(mine.map(\.distance) == theirs.map(\.distance), "sample \(b) distances")
            for k in 0..<steps {
                let row = try outs[k].slice(axis: 0, b..<(b + 1))
                // Rows of a batched sgemm may round differently from a batch of one; 1e-6 relative L2
                // is ~10 float32 ulps of accumulated noise over the tiny stack.
                #expect(try Tensor.relativeL2(row, singleOuts[k]) <= 1e-6, "sample \(b) call \(k)")
            }
        }
    }

    @Test func perSampleNeedsASelectableState() throws {
        struct Plain: TransformerState { var streams: [Tensor] }
        struct Identity: DiffusionTransformer {
            func prepare(_ input: Tensor) throws -> Plain { Plain(streams: [input]) }
            func modulatedInput(_ state: Plain) throws -> Tensor { state.streams[0] }
            func runBlocks(_ state: inout Plain) throws {}
            func outputHead(_ state: Plain) throws -> Tensor { state.streams[0] }
        }
        let config = try TeaCacheConfiguration.faithful(coefficients: Self.identity, threshold: 0.1).withPerSample(true)
        let cached = CachedTransformer(model: Identity(), configuration: config)
        try cached.beginRun(steps: 2)
        #expect(throws: CacheError.self) { try cached(try Tensor(zeros: [1, 2])) }
    }

    @Test func replayReproducesATrace() throws {
        let model = try TinyDiT(seed: 17)
        let inputs = try Self.inputs(seed: 18, batch: 1, tokens: 6, steps: 9, rates: [0.05])
        let config = try TeaCacheConfiguration.faithful(coefficients: Self.identity, threshold: try Self.halfSkipThreshold(model, inputs))
        let original = CachedTransformer(model: model, configuration: config)
        let outs = try Self.run(original, inputs)
        let trace = try #require(original.trace)
        #expect(trace.summary.skipped > 0)

        // Through JSON, as an exported schedule would travel.
        let schedule = try TeaCacheReplaySchedule(trace: try CacheTrace(jsonData: try trace.jsonData()))
        let replay = CachedTransformer(model: model, configuration: try .replaying(schedule, basedOn: config))
        let replayed = try Self.run(replay, inputs)
        #expect(replayed == outs)
        let again = try #require(replay.trace)
        #expect(again.entries.map(\.decision) == trace.entries.map(\.decision))
        #expect(again.entries.map(\.forced) == trace.entries.map(\.forced))
        #expect(again.entries.map(\.accumulated) == trace.entries.map(\.accumulated))
        #expect(again.entries.allSatisfy { $0.reason == .replayed })

        #expect(throws: CacheError.self) { try replay.beginRun(steps: 5) }          // wrong step count
        #expect(throws: CacheError.runNotStarted) { try replay(inputs[0]) }        // a failed start ends the run
        try replay.beginRun(steps: inputs.count)
        #expect(throws: CacheError.self) { try replay(inputs[0], branch: .uncond) }  // branch not in schedule

        // The schedule overrides the adaptive rule: replayed onto a configuration whose threshold would
        // compute every call (0) or skip every eligible call (1e9), the recorded decisions still hold.
        for threshold in [0.0, 1e9] {
            let other = try TeaCacheConfiguration.faithful(coefficients: Self.identity, threshold: threshold)
            let forced = CachedTransformer(model: model, configuration: try .replaying(schedule, basedOn: other))
            #expect(try Self.run(forced, inputs) == outs, "threshold \(threshold)")
            #expect(forced.trace?.entries.map(\.decision) == trace.entries.map(\.decision))
        }
    }

    /// Lumina2-style keys: one branch per sequence length, named by the integer itself. Interleaved
    /// calls of two lengths behave exactly like two separate runs.
    @Test func integerKeyedBranchesKeepSeparateState() throws {
        let model = try TinyDiT(seed: 21)
        let short = try Self.inputs(seed: 22, batch: 1, tokens: 4, steps: 6, rates: [0.05])
        let long = try Self.inputs(seed: 23, batch: 1, tokens: 7, steps: 6, rates: [0.05])
        let config = try TeaCacheConfiguration.faithful(coefficients: Self.identity, threshold: try Self.halfSkipThreshold(model, short))
        #expect(BranchKey(4) == BranchKey("4") && BranchKey(4) != BranchKey(7))
        let shared = CachedTransformer(model: model, configuration: config)
        try shared.beginRun(steps: 6)
        var outs: [Int: [Tensor]] = [4: [], 7: []]
        for k in 0..<6 {
            outs[4]!.append(try shared(short[k], branch: BranchKey(4)))
            outs[7]!.append(try shared(long[k], branch: BranchKey(7)))
        }
        for (tokens, inputs) in [(4, short), (7, long)] {
            let alone = CachedTransformer(model: model, configuration: config)
            #expect(outs[tokens]! == (try Self.run(alone, inputs)), "\(tokens) tokens")
            #expect(shared.trace?.entries(for: BranchKey(tokens)).map(\.decision) == alone.trace?.entries.map(\.decision))
        }
        #expect(shared.trace?.summary.skipped ?? 0 > 0)
    }

    @Test func aFailedBeginRunLeavesNoActiveRun() throws {
        let model = try TinyDiT(seed: 19)
        let inputs = try Self.inputs(seed: 20, batch: 1, tokens: 4, steps: 3, rates: [0.05])
        let cached = CachedTransformer(model: model, configuration: try .faithful(coefficients: Self.identity, threshold: 0.1))
        _ = try Self.run(cached, Array(inputs.prefix(2)))
        #expect(throws: CacheError.invalidStepCount(-1)) { try cached.beginRun(steps: -1) }
        #expect(cached.trace == nil)
        #expect(throws: CacheError.runNotStarted) { try cached(inputs[2]) }
    }
}
