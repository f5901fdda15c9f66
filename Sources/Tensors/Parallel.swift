import CKernels
import COpenBLAS
import Dispatch

/// Thread settings shared by the matrix products and the element-wise loops.
///
/// By default every core is used. Set ``threadCount`` to limit it (for example to compare against a
/// single-threaded run). All parallel work runs on this module's own workers: OpenBLAS itself is kept
/// single-threaded and large products are split into 64-aligned blocks here, so no global BLAS state
/// changes while kernels run. Element-wise, norm, softmax, RoPE and attention results are bit-identical
/// for every thread count; split matrix products agree to float32 rounding (see ``sgemm(transposeA:transposeB:m:n:k:alpha:a:lda:b:ldb:beta:c:ldc:)``).
public enum Parallelism {
    nonisolated(unsafe) private static var _threads: Int = {
        _ = blasConfigured
        return max(1, ProcessInfoCores.count)
    }()

    /// One-time BLAS set-up, evaluated before the first BLAS call made by this module: OpenBLAS runs
    /// single-threaded and this module parallelises the products itself (see ``sgemm(transposeA:transposeB:m:n:k:alpha:a:lda:b:ldb:beta:c:ldc:)``).
    /// OpenBLAS's own workers spin-wait for a long time after each call; left running they competed
    /// with the element-wise loops for the cores (a DiT forward was ~15% slower and varied by ±15%).
    public static let blasConfigured: Bool = {
        openblas_set_num_threads(1)
        return true
    }()

    /// The largest accepted ``threadCount``; larger values are clamped to it.
    public static let maximumThreadCount = 1024

    /// The number of threads used by kernels, clamped to `1 ... maximumThreadCount`.
    ///
    /// A process-wide setting: change it at start-up, not while other threads run kernels (it changes
    /// the work split, and the last bits of split matrix products).
    public static var threadCount: Int {
        get { _threads }
        set { _threads = clampedThreadCount(newValue) }
    }

    /// `n` clamped to `1 ... maximumThreadCount`.
    public static func clampedThreadCount(_ n: Int) -> Int { min(max(1, n), maximumThreadCount) }

    /// Work below this many scalar operations runs on the calling thread.
    @usableFromInline static let serialThreshold = 1 << 15

    /// Runs `body(range)` over `0..<count` split into contiguous chunks, in parallel when the
    /// total work (`count * costPerItem`) is large enough to pay for the dispatch.
    @inlinable
    public static func forEachChunk(
        _ count: Int, costPerItem: Int = 1, _ body: (Range<Int>) -> Void
    ) {
        guard count > 0 else { return }
        let threads = threadCount
        if threads <= 1 || count * max(costPerItem, 1) < serialThreshold || count == 1 {
            body(0..<count)
            return
        }
        let chunks = min(threads, count)
        let per = (count + chunks - 1) / chunks
        concurrentPerform(chunks) { c in
            let lo = c * per
            let hi = min(count, lo + per)
            if lo < hi { body(lo..<hi) }
        }
    }

    /// Runs `body(range)` over the elements `0..<count` of a flat buffer in parallel, split at multiples of
    /// `block` elements (chunks of whole blocks, the last one shorter): the loop of element-wise passes.
    @inlinable
    public static func forEachBlock(
        _ count: Int, block: Int = 1024, costPerElement: Int = 1, _ body: (Range<Int>) -> Void
    ) {
        guard count > 0, block > 0 else { return }
        forEachChunk((count + block - 1) / block, costPerItem: block * max(costPerElement, 1)) { blocks in
            body((blocks.lowerBound * block)..<min(count, blocks.upperBound * block))
        }
    }

    /// Runs `body(i)` for `i` in `0..<iterations` on the calling thread and up to ``threadCount`` − 1
    /// pool workers, and waits for all.
    ///
    /// The pool (`ck_pool_run`) keeps its workers spinning briefly between loops, so the hundreds of
    /// short loops of a forward start without waking a sleeping thread each time. A loop started while
    /// the pool is busy (nested in another loop, or from another thread) runs on Dispatch's workers.
    /// The kernels only ever hand disjoint output ranges to `body`, which is why the non-Sendable
    /// closure may be shared across threads here.
    @inlinable
    public static func concurrentPerform(_ iterations: Int, _ body: (Int) -> Void) {
        guard iterations > 0 else { return }
        if iterations == 1 { body(0); return }
        withoutActuallyEscaping(body) { body in
            var task = body
            let ran = withUnsafeMutablePointer(to: &task) { p in
                ck_pool_run(iterations, threadCount, { context, i in
                    context!.assumingMemoryBound(to: ((Int) -> Void).self).pointee(Int(i))
                }, p)
            }
            if ran == 0 {
                let box = UncheckedSendableBox(body)
                DispatchQueue.concurrentPerform(iterations: iterations) { i in box.value(i) }
            }
        }
    }
}

/// Wraps a value that is shared across threads under an invariant the compiler cannot see.
@usableFromInline
struct UncheckedSendableBox<T>: @unchecked Sendable {
    @usableFromInline let value: T
    @usableFromInline init(_ value: T) { self.value = value }
}

/// The number of online cores (without Foundation's ProcessInfo, to keep this file light).
enum ProcessInfoCores {
    static var count: Int {
        #if canImport(Glibc)
        return Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        #else
        return 2
        #endif
    }
}

#if canImport(Glibc)
import Glibc
#endif
