import CKernels
import Foundation

/// A limit on the memory one operation may plan to use, so that an input too large for the machine is
/// refused with a typed error that names the size instead of being attempted (and killed by the system).
///
/// Models estimate the activations of a forward from the input shapes before computing anything, and
/// loaders the size of what they are about to allocate; both compare with a budget the caller may raise.
public struct MemoryBudget: Sendable, Equatable, CustomStringConvertible {
    /// The limit in bytes.
    public var bytes: Double

    /// A budget of `bytes`.
    public init(bytes: Double) { self.bytes = bytes }

    /// A budget of `gigabytes` × 10⁹ bytes.
    public init(gigabytes: Double) { self.bytes = gigabytes * 1e9 }

    /// Half of this machine's physical memory (the rest is left to the weights, the caller's tensors and
    /// other processes).
    public static let machineDefault = MemoryBudget(bytes: Double(ProcessInfo.processInfo.physicalMemory) / 2)

    /// Three quarters of this machine's physical memory: the default for a whole model (its weights and a
    /// forward's activations together, as `teacache bench forward` plans them), leaving a quarter to the
    /// system and other processes. 18 GB on a 24 GB machine: FLUX.1-dev (11.9 B parameters) fits in int8.
    public static let wholeModelDefault = MemoryBudget(bytes: Double(ProcessInfo.processInfo.physicalMemory) * 0.75)

    /// No limit.
    public static let unlimited = MemoryBudget(bytes: .infinity)

    /// Throws ``TensorError/memoryBudgetExceeded(operation:bytes:budget:)`` when `bytes` (which may be
    /// non-finite, for an estimate that overflowed) exceeds the budget.
    public func check(_ operation: String, bytes needed: Double) throws(TensorError) {
        guard needed.isFinite, needed <= bytes else {
            throw .memoryBudgetExceeded(operation: operation, bytes: needed, budget: bytes)
        }
    }

    public var description: String { String(format: "%.3g GB", bytes / 1e9) }
}

extension MemoryBudget {
    /// Gives freed memory back to the system: the large buffers kept for reuse by later forwards, and the
    /// C library's free heap where it can (glibc's `malloc_trim`). Call it e.g. after building a model
    /// whose float32 draws were converted and freed, or when a long-lived process is done generating, so
    /// RSS measured later is the model's and not leftovers.
    public static func releaseFreedMemory() {
        BufferPool.drain()
        _ = ck_release_free_memory()
    }
}
