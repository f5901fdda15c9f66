import Dispatch
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// Where one forward's time goes, by kind of work: matrix products (every `linear`/`matmul`, including
/// the activation conversions of 16- and 8-bit routes), attention (scores, softmax, weighted sum), and
/// copies that only move data (concatenations, splits, permutations, row gathers). The rest of a forward
/// — norms, modulation, rotary embeddings, activations, gating, residual adds — is its wall time minus
/// these.
public struct PhaseProfile: Sendable, Equatable {
    /// A kind of work.
    public enum Phase: Int, CaseIterable, Sendable, CustomStringConvertible {
        /// Matrix products against weights or between activations.
        case products
        /// Scaled dot-product attention.
        case attention
        /// Pure data movement: concatenate, split, permute, gather.
        case copies

        public var description: String {
            switch self {
            case .products: return "products"
            case .attention: return "attention"
            case .copies: return "copies"
            }
        }
    }

    /// Seconds spent in each phase (outermost calls only: a product inside attention counts as attention).
    public var seconds: [Phase: Double]
    /// Calls of each phase.
    public var calls: [Phase: Int]
}

/// Measures ``PhaseProfile`` phases of the work started on one thread (`teacache bench forward`).
///
/// Disabled (the default) it costs one relaxed atomic load per instrumented call. Enabled, it times the
/// instrumented calls made on the thread that called ``start()`` — a forward issues its operations from
/// one thread, and their parallel parts run inside them — and only the outermost of nested calls, so
/// nothing is counted twice. Work on other threads (another generation, other tests) is not measured.
public enum PhaseProfiler {
    private static let enabled = Atomic<Bool>(false)
    private static let owner = Atomic<UInt>(0)
    private static let depth = Atomic<Int>(0)
    private struct Totals: Sendable {
        var nanoseconds = [Int](repeating: 0, count: PhaseProfile.Phase.allCases.count)
        var calls = [Int](repeating: 0, count: PhaseProfile.Phase.allCases.count)
    }
    private static let totals = Mutex(Totals())

    /// Clears the totals and starts measuring.
    public static func start() {
        totals.withLock { $0 = Totals() }
        depth.store(0, ordering: .relaxed)
        owner.store(currentThread, ordering: .relaxed)
        enabled.store(true, ordering: .releasing)
    }

    /// Stops measuring and returns the totals since ``start()``.
    @discardableResult
    public static func stop() -> PhaseProfile {
        enabled.store(false, ordering: .releasing)
        let t = totals.withLock { $0 }
        var seconds: [PhaseProfile.Phase: Double] = [:], calls: [PhaseProfile.Phase: Int] = [:]
        for p in PhaseProfile.Phase.allCases {
            seconds[p] = Double(t.nanoseconds[p.rawValue]) / 1e9
            calls[p] = t.calls[p.rawValue]
        }
        return PhaseProfile(seconds: seconds, calls: calls)
    }

    /// Runs `body`, adding its wall time to `phase` when profiling and no instrumented call encloses it.
    @inline(__always)
    static func measure<R, E: Error>(_ phase: PhaseProfile.Phase, _ body: () throws(E) -> R) throws(E) -> R {
        guard enabled.load(ordering: .relaxed), owner.load(ordering: .relaxed) == currentThread else { return try body() }
        let outermost = depth.wrappingAdd(1, ordering: .relaxed).newValue == 1
        let start = outermost ? DispatchTime.now().uptimeNanoseconds : 0
        defer {
            if outermost {
                let elapsed = Int(DispatchTime.now().uptimeNanoseconds - start)
                totals.withLock { t in
                    t.nanoseconds[phase.rawValue] += elapsed
                    t.calls[phase.rawValue] += 1
                }
            }
            depth.wrappingSubtract(1, ordering: .relaxed)
        }
        return try body()
    }

    /// An identifier of the calling thread.
    private static var currentThread: UInt { UInt(pthread_self()) }
}
