import Foundation
import Testing
import TestSupport
@testable import Tensors

/// ``PhaseProfiler``: each instrumented call of the profiling thread counted once in its phase (nested
/// calls not twice), nothing while stopped, and times that cover a known sleep.
@Suite(.serialized) struct PhaseProfilerTests {
    @Test func outermostCallsAreCountedOncePerPhase() throws {
        let x = randomTensor([3, 8], seed: 1), w = randomTensor([5, 8], seed: 2)
        let q = randomTensor([1, 4, 8], seed: 3)
        PhaseProfiler.start()
        _ = try linear(x, weight: w)                                // products
        _ = try linear(x, weight: WeightMatrix(w), bias: nil)       // products (any storage)
        _ = try x.gatheringRows([2, 0])                             // copies
        _ = try attention(query: q, key: q, value: q, heads: 2)     // attention: products inside
        let p = PhaseProfiler.stop()
        #expect(p.calls[.products] == 2)
        #expect(p.calls[.copies] == 1)
        #expect(p.calls[.attention] == 1)
        // Stopped: nothing more is recorded.
        _ = try linear(x, weight: w)
        #expect(PhaseProfiler.stop().calls[.products] == 2)
    }

    @Test func anEnclosingPhaseTakesTheNestedTime() throws {
        PhaseProfiler.start()
        PhaseProfiler.measure(.attention) {
            Thread.sleep(forTimeInterval: 0.02)
            PhaseProfiler.measure(.copies) { Thread.sleep(forTimeInterval: 0.02) }
        }
        let p = PhaseProfiler.stop()
        #expect((p.seconds[.attention] ?? 0) >= 0.04)
        #expect(p.calls[.copies] == 0 && p.seconds[.copies] == 0)
    }

    @Test func otherThreadsAreNotMeasured() throws {
        let x = randomTensor([3, 8], seed: 1), w = randomTensor([5, 8], seed: 2)
        PhaseProfiler.start()
        let t = Thread { _ = try? linear(x, weight: w) }   // result unused: only whether it is counted
        t.start()
        while !t.isFinished { Thread.sleep(forTimeInterval: 0.001) }
        #expect(PhaseProfiler.stop().calls[.products] == 0)
    }
}
