import CKernels
import Dispatch
import Foundation
import Testing
@testable import Tensors

/// The worker pool behind ``Parallelism/concurrentPerform(_:_:)`` (`ck_pool_run`): every item runs exactly
/// once and its writes are visible when the call returns, for any thread count; a loop started while the
/// pool is held is declined (and `concurrentPerform` then still runs it, on Dispatch).
///
/// Other suites run concurrently and use the pool too, so a direct `ck_pool_run` may be declined because
/// another test holds it: ``runOnPool(_:threads:_:)`` retries until the pool takes the loop.
@Suite struct WorkerPoolTests {
    /// Per item: how many times it ran, and a value only that item writes.
    final class Record: @unchecked Sendable {
        let runs: UnsafeMutableBufferPointer<Int32>
        let values: UnsafeMutableBufferPointer<Int>
        init(_ n: Int) {
            runs = .allocate(capacity: n); runs.initialize(repeating: 0)
            values = .allocate(capacity: n); values.initialize(repeating: -1)
        }
        deinit { runs.deallocate(); values.deallocate() }
        func item(_ i: Int) {
            runs[i] += 1
            values[i] = i &* 2_654_435_761 % 1_000_003
        }
        /// Items that did not run exactly once, or wrote something else than their own value.
        var wrong: [Int] {
            (0..<runs.count).filter { runs[$0] != 1 || values[$0] != $0 &* 2_654_435_761 % 1_000_003 }
        }
    }

    /// Runs `body` for `0..<n` through `ck_pool_run` with `threads`, retrying while another test holds
    /// the pool; returns whether the pool ever took it.
    static func runOnPool(_ n: Int, threads: Int, _ body: (Int) -> Void) -> Bool {
        withoutActuallyEscaping(body) { body in
            var task = body
            return withUnsafeMutablePointer(to: &task) { p in
                for _ in 0..<200_000 {
                    let ran = ck_pool_run(n, threads, { context, i in
                        context!.assumingMemoryBound(to: ((Int) -> Void).self).pointee(Int(i))
                    }, p)
                    if ran == 1 { return true }
                    sched_yield()
                }
                return false
            }
        }
    }

    @Test(arguments: [1, 2, 3, 9])
    func everyItemRunsOnceForAnyThreadCount(threads: Int) {
        for n in [1, 2, 3, 17, 64, 1001] {
            let record = Record(n)
            #expect(Self.runOnPool(n, threads: threads) { record.item($0) }, "the pool never took the loop")
            #expect(record.wrong.isEmpty, "n \(n), \(threads) threads: items \(record.wrong.prefix(8))")
        }
    }

    @Test func aLoopUsesAtMostItsThreadCount() {
        // After a loop with 9 threads has started 8 workers, a 2-thread loop may still use only 2 threads.
        #expect(Self.runOnPool(64, threads: 9) { _ in })
        let threads = UnsafeMutableBufferPointer<pthread_t>.allocate(capacity: 64)
        defer { threads.deallocate() }
        #expect(Self.runOnPool(64, threads: 2) { i in
            threads[i] = pthread_self()
            usleep(300)   // gives the core away, so any worker allowed in gets to claim items
        })
        var distinct: [pthread_t] = []
        for t in threads where !distinct.contains(where: { pthread_equal($0, t) != 0 }) { distinct.append(t) }
        #expect(distinct.count <= 2, "a 2-thread loop ran on \(distinct.count) threads")
    }

    @Test func forEachBlockCoversEveryElementOnceInWholeBlocks() {
        for (count, block) in [(1, 1024), (1023, 1024), (1025, 1024), (50_000, 1024), (100, 7), (0, 16)] {
            let record = Record(max(count, 1))
            let starts = UnsafeMutableBufferPointer<Bool>.allocate(capacity: count + 1)
            defer { starts.deallocate() }
            starts.initialize(repeating: false)
            Parallelism.forEachBlock(count, block: block, costPerElement: 64) { range in
                starts[range.lowerBound] = true
                for i in range { record.item(i) }
            }
            #expect(Array(record.wrong.prefix(while: { $0 < count })).isEmpty, "count \(count) block \(block)")
            #expect((0..<count).allSatisfy { !starts[$0] || $0 % block == 0 }, "a range started inside a block")
        }
    }

    @Test func thousandsOfShortLoopsInARow() {
        // Loops that follow each other closely meet spinning workers: none may be lost or run twice.
        let record = Record(4 * 5000)
        for loop in 0..<5000 {
            #expect(Self.runOnPool(4, threads: 3) { record.item(loop * 4 + $0) })
        }
        #expect(record.wrong.isEmpty, "items \(record.wrong.prefix(8))")
    }

    @Test func emptyLoopRunsNothing() {
        var called = false
        #expect(Self.runOnPool(0, threads: 2) { _ in called = true })
        #expect(!called)
    }

    @Test func nestedLoopIsDeclinedWhileThePoolIsHeld() {
        let inner = UnsafeMutableBufferPointer<Int32>.allocate(capacity: 4)
        defer { inner.deallocate() }
        inner.initialize(repeating: -1)
        let inside = UncheckedSendableBox(inner)
        #expect(Self.runOnPool(4, threads: 2) { i in
            var task: (Int) -> Void = { _ in }
            inside.value[i] = withUnsafeMutablePointer(to: &task) { p in
                ck_pool_run(3, 2, { _, _ in }, p)
            }
        })
        #expect(Array(inner) == [0, 0, 0, 0], "the pool took a loop started inside its own loop")
    }

    @Test func concurrentPerformRunsNestedAndConcurrentLoops() {
        // Nested: the inner loops find the pool held and run on Dispatch.
        let nested = Record(16 * 33)
        Parallelism.concurrentPerform(16) { outer in
            Parallelism.concurrentPerform(33) { inner in nested.item(outer * 33 + inner) }
        }
        #expect(nested.wrong.isEmpty, "nested: items \(nested.wrong.prefix(8))")
        // From several threads at once: one holds the pool, the others run on Dispatch.
        let concurrent = Record(8 * 257)
        let box = UncheckedSendableBox(concurrent)
        DispatchQueue.concurrentPerform(iterations: 8) { caller in
            Parallelism.concurrentPerform(257) { i in box.value.item(caller * 257 + i) }
        }
        #expect(concurrent.wrong.isEmpty, "concurrent: items \(concurrent.wrong.prefix(8))")
    }
}
