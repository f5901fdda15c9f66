import Foundation
import Testing
@testable import Tensors

/// Results with 1, 2 and 3 threads, against what ``Parallelism/threadCount`` documents.
///
/// The setting is process-wide and Swift Testing runs other suites concurrently, so changing it here
/// would change the work split of unrelated tests mid-run. The comparison therefore runs in an exit test:
/// a child process of its own where nothing else runs (the setting is restored there anyway).
///
/// - Element-wise and row kernels, attention (each task's products are serial whatever the worker
///   count) and RoPE must be bit-identical.
/// - sgemm-based kernels (linear, matmul) must agree to float rounding, 1e-5 of the largest magnitude
///   (as in `ParallelGEMMTests`), not bit for bit: a product split into blocks calls OpenBLAS once per
///   block, and OpenBLAS picks other kernels for small or narrow blocks (here: the 1-column tail of a
///   129-column product split over 2 workers), which round differently.
@Suite struct ThreadCountTests {
    @Test func kernelsAgreeWithOneTwoAndThreeThreads() async throws {
        await #expect(processExitsWith: .success) {
            ThreadCountTests.compareAcrossThreadCounts()
        }
    }

    /// Every kernel here is large enough to be split: above `Parallelism.serialThreshold` work, and the
    /// sgemm cases above `parallelGEMMThreshold` flops (split along N, along M, and with a narrow tail).
    static func runKernels() throws -> (exact: [(String, Tensor)], gemm: [(String, Tensor)]) {
        let rows = rand([3, 173, 129], seed: 1)                     // 519 rows of 129 (odd)
        let w129 = rand([129], seed: 2), b129 = rand([129], seed: 3)
        let big = rand([40_003], seed: 4)                            // 40 blocks of 1024 + a tail
        let x = rand([3, 101, 203], seed: 5)
        let wN = rand([333, 203], seed: 6), bN = rand([333], seed: 7)   // 303×333×203: split along N
        let xM = rand([517, 64], seed: 8), wM = rand([130, 64], seed: 9) // 517×130×64: split along M
        let q = rand([2, 131, 48], seed: 10), k = rand([2, 77, 48], seed: 11), v = rand([2, 77, 48], seed: 12)
        var ids: [Float] = []
        for t in 0..<131 { ids += [Float(t / 30), Float((t / 6) % 5), Float(t % 6)] }
        let (rc, rs) = try RotaryEmbedding.tables(positions: Tensor(shape: [131, 3], scalars: ids),
                                                  axesDims: [4, 6, 6], theta: 10000)
        let exact: [(String, Tensor)] = [
            ("layerNorm", try layerNorm(rows, weight: w129, bias: b129, eps: 1e-6)),
            ("rmsNorm", try rmsNorm(rows, weight: w129, eps: 1e-6)),
            ("softmax", try softmax(rows * 7)),
            ("gelu", gelu(big, approximation: .tanh)),
            ("silu", silu(big)),
            ("swiglu", try swiglu(rows.slice(axis: 2, 0..<128))),
            ("attention", try attention(query: q, key: k, value: v, heads: 3)),
            ("rope", try RotaryEmbedding.apply(q, cos: rc, sin: rs, heads: 3)),
        ]
        let gemm: [(String, Tensor)] = [
            ("linear along N", try linear(x, weight: wN, bias: bN)),
            ("linear along M", try linear(xM, weight: wM)),
            // 101×129×203 per batch: 129 columns = 2 panels + 1 column, a 1-column block with 2 workers.
            ("batched matmul, narrow tail", try matmul(x, rand([3, 203, 129], seed: 13))),
        ]
        return (exact, gemm)
    }

    /// How many chunks ``Parallelism/forEachChunk(_:costPerItem:_:)`` makes for plenty of work.
    static func chunkCount() -> Int {
        let lock = NSLock()
        var n = 0
        Parallelism.forEachChunk(1000, costPerItem: 1000) { _ in lock.lock(); n += 1; lock.unlock() }
        return n
    }

    /// Runs in the exit test's child process: issues are reported to the parent, and any hard failure
    /// also exits non-zero.
    static func compareAcrossThreadCounts() {
        let saved = Parallelism.threadCount
        defer { Parallelism.threadCount = saved }
        var runs: [Int: (exact: [(String, Tensor)], gemm: [(String, Tensor)])] = [:]
        var failed = false
        for threads in [1, 2, 3] {
            Parallelism.threadCount = threads
            #expect(Parallelism.threadCount == threads)
            let chunks = chunkCount()
            if chunks != threads { Issue.record("\(threads) threads split the work into \(chunks) chunks"); failed = true }
            do { runs[threads] = try runKernels() } catch { Issue.record(error); exit(EXIT_FAILURE) }
        }
        let serial = runs[1]!
        for threads in [2, 3] {
            let run = runs[threads]!
            for ((name, a), (_, b)) in zip(serial.exact, run.exact) where a != b {
                let worst = zip(a.scalars, b.scalars).map { abs($0 - $1) }.max() ?? 0
                Issue.record("\(name): 1 vs \(threads) threads differ (max |Δ| \(worst))")
                failed = true
            }
            for ((name, a), (_, b)) in zip(serial.gemm, run.gemm) where a != b {
                let scale = a.scalars.map { abs($0) }.max() ?? 1
                let worst = zip(a.scalars, b.scalars).map { abs($0 - $1) }.max() ?? 0
                if worst > 1e-5 * scale {
                    Issue.record("\(name): 1 vs \(threads) threads differ by \(worst) (scale \(scale))")
                    failed = true
                }
            }
        }
        if failed { exit(EXIT_FAILURE) }
    }
}
