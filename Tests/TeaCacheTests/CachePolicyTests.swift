import Foundation
import Testing
import Tensors
@testable import TeaCache

/// First-Block Cache and MagCache on the synthetic DiT, against independent re-derivations of diffusers
/// 0.42.1's hooks written as plain loops here (the diffusers recordings are checked in DiTModelsTests).
@Suite struct CachePolicyTests {
    static func inputs(steps: Int, seed: UInt64 = 40) throws -> [TinyDiT.Input] {
        try CachedTransformerTests.inputs(seed: seed, batch: 1, tokens: 6, steps: steps, rates: [0.05])
    }

    /// diffusers' FBC, spelled out: block 0 always; compare its residual with the last computed call's.
    static func naiveFirstBlock(_ model: TinyDiT, _ inputs: [TinyDiT.Input], threshold: Double) throws -> (outputs: [Tensor], computed: [Bool]) {
        var headResidual: Tensor?, tail: Tensor?
        var outs: [Tensor] = [], computed: [Bool] = []
        for input in inputs {
            var s = try model.prepare(input)
            let h0 = s.streams[0]
            try model.runBlock(0, &s)
            let r = try s.streams[0] - h0
            var compute = true
            if let p = headResidual {
                let num = Float(try Tensor.meanAbsoluteDifference(r, p)), den = Float(p.meanAbsolute())
                compute = Double(num / den) > threshold
            }
            if compute {
                let head = s.streams[0]
                for i in 1..<model.blocks.count { try model.runBlock(i, &s) }
                tail = try s.streams[0] - head
                headResidual = r
            } else {
                s.streams[0] = try s.streams[0] + tail!
            }
            computed.append(compute)
            outs.append(try model.outputHead(s))
        }
        return (outs, computed)
    }

    @Test func firstBlockCacheMatchesTheNaiveLoop() throws {
        let model = try TinyDiT(seed: 41, depth: 3)
        let inputs = try Self.inputs(steps: 10)
        // A threshold between the smallest and largest block-0 changes, so both decisions occur.
        var lo = Double.infinity, hi = 0.0, prev: Tensor?
        for input in inputs {
            var s = try model.prepare(input)
            let h0 = s.streams[0]
            try model.runBlock(0, &s)
            let r = try s.streams[0] - h0
            if let p = prev { let d = try RelativeL1.distance(r, previous: p); lo = min(lo, d); hi = max(hi, d) }
            prev = r
        }
        for threshold in [0, lo * 1.5, (lo + hi) / 2, hi * 2, 1e9] {
            let expected = try Self.naiveFirstBlock(model, inputs, threshold: threshold)
            let cached = CachedTransformer(model: model, policy: .firstBlock(try FirstBlockCacheConfiguration(threshold: threshold)))
            try cached.beginRun(steps: inputs.count)
            let outs = try inputs.map { try cached($0) }
            let trace = try #require(cached.endRun())
            #expect(trace.entries.map { $0.decision == .compute } == expected.computed, "threshold \(threshold)")
            for (a, b) in zip(outs, expected.outputs) { #expect(try Tensor.relativeL2(a, b) <= 1e-6) }
        }
        // A huge threshold skips everything after the first call; 0 nothing. (Distances are measured against
        // the last *computed* call, so they grow while skipping and `hi`, a consecutive-call maximum, is
        // not enough.)
        let all = try Self.naiveFirstBlock(model, inputs, threshold: 1e9).computed
        #expect(all == [true] + Array(repeating: false, count: inputs.count - 1))
        #expect(!(try Self.naiveFirstBlock(model, inputs, threshold: 0).computed.contains(false)))
    }

    @Test func firstBlockCacheNeedsABlockwiseModel() throws {
        let coarse = CoarseTinyDiT(inner: try TinyDiT(seed: 42))
        let cached = CachedTransformer(model: coarse, policy: .firstBlock(try FirstBlockCacheConfiguration()))
        #expect { try cached.beginRun(steps: 4) } throws: { e in
            guard case CacheError.policyUnsupported? = e as? CacheError else { return false }
            return true
        }
        #expect(throws: CacheError.runNotStarted) { try cached(try Self.inputs(steps: 1)[0]) }
        #expect(throws: CacheError.self) { try FirstBlockCacheConfiguration(threshold: -1) }
        #expect(throws: CacheError.self) { try FirstBlockCacheConfiguration(threshold: .nan) }
    }

    /// diffusers' `nearest_interp`, by hand: 28 ratios onto 12 steps take index round(i·27/11) (halves
    /// to even); onto 1 step the last one; the same length is unchanged.
    @Test func magRatiosInterpolateToTheRunsStepCount() throws {
        let ratios = (0..<28).map { 1 + Double($0) / 100 }
        let c = try MagCacheConfiguration(magRatios: ratios)
        let twelve = c.ratios(forSteps: 12)
        let indices = (0..<12).map { i in Int((Double(i) * 27 / 11).rounded(.toNearestOrEven)) }
        #expect(twelve == indices.map { Float(ratios[$0]) })
        #expect(c.ratios(forSteps: 1) == [Float(ratios[27])])
        #expect(c.ratios(forSteps: 28) == ratios.map(Float.init))
        #expect(c.retentionSteps(forSteps: 28) == 6 && c.retentionSteps(forSteps: 12) == 2)
    }

    /// The MagCache rule spelled out in Float32, against the policy.
    @Test func magCacheDecisionsMatchTheNaiveRule() throws {
        let ratios: [Double] = [1, 1.2, 1.05, 1.01, 0.99, 1.0, 1.02, 0.97, 0.95, 0.9]
        for (threshold, maxSkip, retention) in [(0.06, 3, 0.2), (0.2, 1, 0.0), (1.0, 10, 0.5), (0.0, 3, 0.2)] {
            let c = try MagCacheConfiguration(magRatios: ratios, threshold: threshold, maxSkipSteps: maxSkip, retentionRatio: retention)
            var policy = try MagCachePolicy(configuration: c, steps: ratios.count)
            var ratio: Float = 1, err: Float = 0, acc = 0, hasResidual = false
            for step in 0..<ratios.count {
                var skip = false
                if step >= Int(retention * Double(ratios.count) + 0.5) {
                    ratio *= Float(ratios[step]); acc += 1; err += abs(1 - ratio)
                    if hasResidual && err <= Float(threshold) && acc <= maxSkip { skip = true } else { ratio = 1; err = 0; acc = 0 }
                }
                let d = try policy.decide(step: step, branch: .cond, hasResidual: hasResidual)
                #expect(d.skips == skip, "δ=\(threshold) K=\(maxSkip) r=\(retention) step \(step)")
                if !skip { hasResidual = true }
            }
        }
        #expect(throws: CacheError.self) { try MagCacheConfiguration(magRatios: []) }
        #expect(throws: CacheError.self) { try MagCacheConfiguration(magRatios: [1, .nan]) }
        #expect(throws: CacheError.self) { try MagCacheConfiguration(magRatios: [1], retentionRatio: 2) }
        #expect(throws: CacheError.self) { try MagCacheConfiguration(magRatios: [1], maxSkipSteps: -1) }
    }

    /// A MagCache skip adds the cached stack residual to the block input: the output equals a naive loop.
    @Test func magCacheSkipsReuseTheStackResidual() throws {
        let model = try TinyDiT(seed: 43)
        let inputs = try Self.inputs(steps: 8)
        let c = try MagCacheConfiguration(magRatios: [1, 1.3, 1.01, 1.01, 1.0, 0.99, 1.01, 1.0], threshold: 0.05,
                                          maxSkipSteps: 2, retentionRatio: 0.25)
        let cached = CachedTransformer(model: model, policy: .magCache(c))
        try cached.beginRun(steps: inputs.count)
        let outs = try inputs.map { try cached($0) }
        let trace = try #require(cached.endRun())
        #expect(trace.summary.skipped > 0 && trace.summary.computed > 2)
        var residual: Tensor?
        for (k, input) in inputs.enumerated() {
            var s = try model.prepare(input)
            if trace.entries[k].decision == .skip {
                s.streams[0] = try s.streams[0] + residual!
            } else {
                let h = s.streams[0]
                try model.runBlocks(&s)
                residual = try s.streams[0] - h
            }
            #expect(try Tensor.relativeL2(outs[k], model.outputHead(s)) <= 1e-6)
        }
    }

    /// Ratios recorded from an uncached run, by hand: mean over tokens of ‖r_t‖ / (‖r'_t‖ + 1e-8).
    @Test func magRatioRecorderMatchesTheDefinition() throws {
        let model = try TinyDiT(seed: 44)
        let inputs = try Self.inputs(steps: 5)
        let cached = CachedTransformer(model: model, policy: .teaCache(try .faithful(coefficients: [0, 0, 0, 1, 0], threshold: 0)))
        cached.magRatioRecorder = MagRatioRecorder()
        try cached.beginRun(steps: inputs.count)
        for input in inputs { _ = try cached(input) }
        let (ratios, spread) = try #require(cached.magRatioRecorder).ratios()
        var expected = [1.0], prev: [Double]?
        for input in inputs {
            var s = try model.prepare(input)
            let h = s.streams[0]
            try model.runBlocks(&s)
            let r = try s.streams[0] - h
            let d = r.shape.last!, v = r.scalars.map(Double.init)
            let norms = stride(from: 0, to: v.count, by: d).map { i in v[i..<(i + d)].map { $0 * $0 }.reduce(0, +).squareRoot() }
            if let p = prev { expected.append(zip(norms, p).map { $0 / ($1 + 1e-8) }.reduce(0, +) / Double(norms.count)) }
            prev = norms
        }
        #expect(ratios.count == inputs.count && spread == 0)
        for (a, b) in zip(ratios, expected) { #expect(abs(a - b) <= 1e-5 * b) }
        let preset = MagCachePreset(name: "tiny", magRatios: ratios, provenance: "test", maxStandardDeviation: spread)
        #expect(try MagCachePreset(jsonData: preset.jsonData()) == preset)
        #expect(throws: CacheError.self) { try MagCachePreset(jsonData: Data(#"{"name":"x","magRatios":[],"provenance":""}"#.utf8)) }
    }
}
