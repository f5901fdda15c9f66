import CKernels
import COpenBLAS
import Dispatch

/// Thread settings shared by the BLAS calls and the element-wise loops.
///
/// By default both use every core. Set ``threadCount`` to limit them (for example to 1 in tests
/// that run in parallel, or to compare against a single-threaded reference).
public enum Parallelism {
    nonisolated(unsafe) private static var _threads: Int = {
        _ = blasConfigured
        return max(1, ProcessInfoCores.count)
    }()

    /// Whether idle OpenBLAS workers were told to sleep at once instead of spinning (see
    /// `ck_openblas_short_spin`); evaluated once, before the first BLAS call made by this module.
    /// Spinning workers compete with the element-wise loops for the cores; measured on a DiT forward
    /// this made per-call times vary by ±15% and cost about 15% on average.
    public static let blasConfigured: Bool = ck_openblas_short_spin() != 0

    /// The largest accepted ``threadCount``; larger values are clamped to it.
    public static let maximumThreadCount = 1024

    /// The number of threads used by kernels. Setting it also sets OpenBLAS's thread count.
    /// Values are clamped to `1 ... maximumThreadCount`.
    public static var threadCount: Int {
        get { _threads }
        set {
            let n = min(max(1, newValue), maximumThreadCount)
            _threads = n
            openblas_set_num_threads(Int32(n))
        }
    }

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

    /// Runs `body(i)` for `i` in `0..<iterations` on Dispatch's worker threads and waits for all.
    ///
    /// The kernels only ever hand disjoint output ranges to `body`, which is why the non-Sendable
    /// closure may be shared across threads here.
    @inlinable
    public static func concurrentPerform(_ iterations: Int, _ body: (Int) -> Void) {
        withoutActuallyEscaping(body) { body in
            let box = UncheckedSendableBox(body)
            DispatchQueue.concurrentPerform(iterations: iterations) { i in box.value(i) }
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
