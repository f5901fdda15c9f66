import Foundation
import Testing
import Tensors
@testable import TeaCache

/// DBCache and forecast residuals on the synthetic DiT against plain loops (cache-dit's own recordings are
/// checked in DiTModelsTests/PolicyRecordingTests).
@Suite struct DBCacheTests {
    /// cache-dit's rule spelled out: front blocks, relative change of their residual against the last computed
    /// call's, the middle run or its residual added, back blocks; optionally a linear forecast of the middle
    /// residual (F₁ from step `from` on).
    static func naive(_ model: TinyDiT, _ inputs: [TinyDiT.Input], front: Int, back: Int, threshold: Double, warmup: Int,
                      maxCached: Int?, maxConsecutive: Int?, forecastFrom: Int? = nil) throws -> (outputs: [Tensor], computed: [Bool]) {
        let n = model.blocks.count
        var rPrev: Tensor?, middle: Tensor?, cached = 0, consecutive = 0
        var f0: Tensor?, f1: Tensor?, last = 0
        var outs: [Tensor] = [], computed: [Bool] = []
        for (step, input) in inputs.enumerated() {
            var s = try model.prepare(input)
            let h0 = s.streams[0]
            for i in 0..<front { try model.runBlock(i, &s) }
            let hF = s.streams[0]
            let r = try hF - h0
            var compute = true
            if step >= warmup, maxCached.map({ cached < $0 }) ?? true, maxConsecutive.map({ consecutive < $0 }) ?? true,
               threshold > 0, let p = rPrev {
                let d = Double(Float(try Tensor.meanAbsoluteDifference(r, p)) / Float(p.meanAbsolute()))
                compute = !(d < threshold)
            }
            if compute {
                rPrev = r
                for i in front..<(n - back) { try model.runBlock(i, &s) }
                let m = try s.streams[0] - hF
                middle = m
                if let forecastFrom {
                    if step >= forecastFrom, let old = f0 { f1 = (try m - old) * (1 / Float(step - last)) } else { f1 = nil }
                    f0 = m
                    last = step
                }
                consecutive = 0
            } else {
                var add = middle!
                if forecastFrom != nil, let f1 { add = try f0! + f1 * Float(step - last) }
                s.streams[0] = try hF + add
                cached += 1
                consecutive += 1
            }
            for i in (n - back)..<n { try model.runBlock(i, &s) }
            computed.append(compute)
            outs.append(try model.outputHead(s))
        }
        return (outs, computed)
    }

    @Test(arguments: [(1, 0, 0.3, 2, nil as Int?, nil as Int?), (2, 1, 0.5, 1, nil, 2), (1, 1, 10, 0, 4, nil), (1, 2, 0.0, 1, nil, nil)])
    func dbCacheMatchesTheNaiveLoop(_ setting: (Int, Int, Double, Int, Int?, Int?)) throws {
        let (front, back, threshold, warmup, maxCached, maxConsecutive) = setting
        let model = try TinyDiT(seed: 71, depth: 4)
        let inputs = try CachePolicyTests.inputs(steps: 10)
        let c = try DBCacheConfiguration(frontBlocks: front, backBlocks: back, threshold: threshold, warmupSteps: warmup,
                                         maxCachedSteps: maxCached, maxConsecutiveCachedSteps: maxConsecutive)
        let cached = CachedTransformer(model: model, policy: .dbCache(c))
        try cached.beginRun(steps: inputs.count)
        let outs = try inputs.map { try cached($0) }
        let trace = try #require(cached.endRun())
        let expected = try Self.naive(model, inputs, front: front, back: back, threshold: threshold, warmup: warmup,
                                      maxCached: maxCached, maxConsecutive: maxConsecutive)
        #expect(trace.entries.map { $0.decision == .compute } == expected.computed, "\(setting)")
        for (k, (a, b)) in zip(outs, expected.outputs).enumerated() {
            #expect(try Tensor.relativeL2(a, b) <= 1e-6, "\(setting) step \(k)")
        }
        if threshold == 10 { #expect(expected.computed.filter { !$0 }.count == 4, "maxCachedSteps caps the skips") }
        if threshold == 0.5 { #expect(expected.computed.contains(false)) }
    }

    /// With CFG each branch keeps its own front residual, middle residual and counters (cache-dit's separate
    /// CFG slots): interleaved cond/uncond calls give each branch exactly its own single-branch naive run.
    @Test func branchesKeepSeparateSlots() throws {
        let model = try TinyDiT(seed: 75, depth: 3)
        let cond = try CachedTransformerTests.inputs(seed: 76, batch: 1, tokens: 6, steps: 10, rates: [0.05])
        let uncond = try CachedTransformerTests.inputs(seed: 77, batch: 1, tokens: 6, steps: 10, rates: [0.2])
        let c = try DBCacheConfiguration(frontBlocks: 1, backBlocks: 1, threshold: 0.4, warmupSteps: 1, maxConsecutiveCachedSteps: 2)
        let cached = CachedTransformer(model: model, policy: .forecasting(.dbCache(c), try .cacheDitTaylorSeer()))
        try cached.beginRun(steps: 10)
        var outs: [BranchKey: [Tensor]] = [:]
        for k in 0..<10 {
            outs[.cond, default: []].append(try cached(cond[k], branch: .cond))
            outs[.uncond, default: []].append(try cached(uncond[k], branch: .uncond))
        }
        let trace = try #require(cached.endRun())
        var patterns: [[Bool]] = []
        for (branch, inputs) in [(BranchKey.cond, cond), (.uncond, uncond)] {
            let expected = try Self.naive(model, inputs, front: 1, back: 1, threshold: 0.4, warmup: 1, maxCached: nil,
                                          maxConsecutive: 2, forecastFrom: 3)
            #expect(trace.entries(for: branch).map { $0.decision == .compute } == expected.computed, "\(branch)")
            for (a, b) in zip(outs[branch] ?? [], expected.outputs) { #expect(try Tensor.relativeL2(a, b) <= 1e-6, "\(branch)") }
            patterns.append(expected.computed)
        }
        #expect(patterns[0] != patterns[1], "the branches move differently, so a shared state would show")
    }

    /// A linear residual forecast on DBCache (cache-dit's calibrator: differences from step 3) and on MagCache
    /// (from the second computed call): the naive forecasts, the same decisions as without it.
    @Test func forecastResidualsMatchTheNaiveForecast() throws {
        let model = try TinyDiT(seed: 72, depth: 3)
        let inputs = try CachePolicyTests.inputs(steps: 10)
        let db = try DBCacheConfiguration(frontBlocks: 1, backBlocks: 0, threshold: 0.6, warmupSteps: 1)
        let cached = CachedTransformer(model: model, policy: .forecasting(.dbCache(db), try .cacheDitTaylorSeer(order: 1)))
        try cached.beginRun(steps: inputs.count)
        let outs = try inputs.map { try cached($0) }
        let trace = try #require(cached.endRun())
        let expected = try Self.naive(model, inputs, front: 1, back: 0, threshold: 0.6, warmup: 1, maxCached: nil,
                                      maxConsecutive: nil, forecastFrom: 3)
        #expect(trace.entries.map { $0.decision == .compute } == expected.computed)
        #expect(expected.computed.contains(false))
        for (a, b) in zip(outs, expected.outputs) { #expect(try Tensor.relativeL2(a, b) <= 1e-6) }

        // MagCache + forecast: decisions unchanged; a skip adds F0 + F1·Δ of stream 0's stack residual.
        let mag = try MagCacheConfiguration(magRatios: [1, 1.3, 1.01, 1.01, 1.0, 0.99, 1.01, 1.0, 1.0, 1.0], threshold: 0.05,
                                            maxSkipSteps: 2, retentionRatio: 0.2)
        let plain = CachedTransformer(model: model, policy: .magCache(mag))
        try plain.beginRun(steps: inputs.count)
        for input in inputs { _ = try plain(input) }
        let plainTrace = try #require(plain.endRun())
        let forecasting = CachedTransformer(model: model, policy: .forecasting(.magCache(mag), try ResidualForecast(order: 1)))
        try forecasting.beginRun(steps: inputs.count)
        let fouts = try inputs.map { try forecasting($0) }
        let ftrace = try #require(forecasting.endRun())
        #expect(ftrace.entries.map(\.decision) == plainTrace.entries.map(\.decision))
        #expect(ftrace.summary.skipped > 0)
        var f0: Tensor?, f1: Tensor?, last = 0
        for (k, input) in inputs.enumerated() {
            var s = try model.prepare(input)
            if ftrace.entries[k].decision == .skip {
                var r = f0!
                if let f1 { r = try r + f1 * Float(k - last) }
                s.streams[0] = try s.streams[0] + r
            } else {
                let h = s.streams[0]
                try model.runBlocks(&s)
                let r = try s.streams[0] - h
                if let old = f0 { f1 = (try r - old) * (1 / Float(k - last)) }
                f0 = r
                last = k
            }
            #expect(try Tensor.relativeL2(fouts[k], try model.outputHead(s)) <= 1e-6, "step \(k)")
        }
        #expect(CachePolicy.forecasting(.magCache(mag), try ResidualForecast(order: 2)).name == "magcache+forecast2")
    }

    @Test func invalidSettingsAreTyped() throws {
        #expect(throws: CacheError.self) { try DBCacheConfiguration(frontBlocks: 0) }
        #expect(throws: CacheError.self) { try DBCacheConfiguration(backBlocks: -1) }
        #expect(throws: CacheError.self) { try DBCacheConfiguration(maxCachedSteps: -2) }
        #expect(throws: CacheError.self) { try ResidualForecast(order: 0) }
        let taylor = CachePolicy.forecasting(.taylorSeer(.diffusersDefault), try ResidualForecast())
        #expect(throws: CacheError.self) { try taylor.validate() }
        // More front and back blocks than the model has: a typed error at the first call.
        let cached = CachedTransformer(model: try TinyDiT(seed: 73, depth: 2), policy: .dbCache(try DBCacheConfiguration(frontBlocks: 2, backBlocks: 1)))
        try cached.beginRun(steps: 3)
        #expect(throws: CacheError.self) { try cached(try CachePolicyTests.inputs(steps: 1)[0]) }
        let coarse = CachedTransformer(model: CoarseTinyDiT(inner: try TinyDiT(seed: 74)), policy: .dbCache(try DBCacheConfiguration(frontBlocks: 1)))
        #expect(throws: CacheError.self) { try coarse.beginRun(steps: 3) }
        let policy = CachePolicy.forecasting(.dbCache(try DBCacheConfiguration(frontBlocks: 1, maxCachedSteps: 3)), try .cacheDitTaylorSeer())
        #expect(try JSONDecoder().decode(CachePolicy.self, from: JSONEncoder().encode(policy)) == policy)
    }
}
