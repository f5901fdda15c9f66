import Foundation
import Synchronization

/// Keeps large freed buffers (activations, scratch panels) for the next allocation of the same size.
///
/// A forward allocates the same sizes layer after layer and step after step. Buffers of a megabyte or
/// more come from the system as fresh pages (glibc maps them), so without reuse every one of them costs a
/// page fault and a page clear per 4 KB on first touch — about 7% of a full-size bf16 forward here.
/// Reusing a freed buffer of exactly the same size avoids both.
///
/// The pool holds at most ``limitBytes`` (a sixteenth of physical memory, at most 4 GB) and only buffers
/// of at least ``minimumBytes``; `MemoryBudget.releaseFreedMemory()` empties it. Safe from any thread.
enum BufferPool {
    /// Buffers smaller than this are left to malloc (they come from its arenas without page faults).
    static let minimumBytes = 1 << 20
    /// The most the pool keeps.
    static let limitBytes = min(Int(ProcessInfo.processInfo.physicalMemory / 16), 4 << 30)
    /// Every buffer is 64-byte aligned (AVX-512 rows).
    static let alignment = 64

    /// A cached buffer: owned by the pool alone until handed out to exactly one owner, so moving it
    /// between threads is safe.
    private struct Buffer: @unchecked Sendable { let pointer: UnsafeMutableRawPointer }

    private struct Cache: Sendable {
        var free: [Int: [Buffer]] = [:]
        var bytes = 0
    }

    private static let cache = Mutex(Cache())

    /// `byteCount` bytes, 64-byte aligned, uninitialised: a cached buffer of that size when one is free.
    static func allocate(byteCount: Int) -> UnsafeMutableRawPointer {
        let n = max(byteCount, 1)
        if n >= minimumBytes {
            let reused = cache.withLock { c -> Buffer? in
                guard let b = c.free[n]?.popLast() else { return nil }
                c.bytes -= n
                return b
            }
            if let reused { return reused.pointer }
        }
        return UnsafeMutableRawPointer.allocate(byteCount: n, alignment: alignment)
    }

    /// Gives back a buffer from ``allocate(byteCount:)`` of the same `byteCount`.
    static func release(_ pointer: UnsafeMutableRawPointer, byteCount: Int) {
        let n = max(byteCount, 1)
        if n >= minimumBytes {
            let buffer = Buffer(pointer: pointer)
            let kept = cache.withLock { c -> Bool in
                guard c.bytes + n <= limitBytes else { return false }
                c.free[n, default: []].append(buffer)
                c.bytes += n
                return true
            }
            if kept { return }
        }
        pointer.deallocate()
    }

    /// `count` uninitialised values of `T` (a trivial type) from ``allocate(byteCount:)``.
    static func allocate<T: BitwiseCopyable>(_: T.Type, count: Int) -> UnsafeMutablePointer<T> {
        allocate(byteCount: count * MemoryLayout<T>.stride).bindMemory(to: T.self, capacity: max(count, 1))
    }

    /// Gives back a buffer from ``allocate(_:count:)`` with the same `count`.
    static func release<T: BitwiseCopyable>(_ pointer: UnsafeMutablePointer<T>, count: Int) {
        release(UnsafeMutableRawPointer(pointer), byteCount: count * MemoryLayout<T>.stride)
    }

    /// Frees every cached buffer.
    static func drain() {
        let all = cache.withLock { c -> [Buffer] in
            defer { c = Cache() }
            return c.free.values.flatMap { $0 }
        }
        for b in all { b.pointer.deallocate() }
    }

    /// The bytes cached now (for tests).
    static var cachedBytes: Int { cache.withLock { $0.bytes } }
}
