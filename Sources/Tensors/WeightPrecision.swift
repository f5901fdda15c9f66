/// How the weights of a model's matrix products are stored.
///
/// Every weight that feeds a matrix product (a ``WeightMatrix``) is kept in this precision; small
/// parameters (norm scales, biases, embedding tables) stay float32. Activations are float32 between
/// products whatever the storage.
///
/// | precision | bytes per weight | products |
/// |---|---|---|
/// | ``float32`` | 4 | float32 (sgemm) |
/// | ``bfloat16`` | 2 | bf16 × bf16 → float32 through oneDNN where the CPU has AVX512_BF16, else float32 on converted panels |
/// | ``float16`` | 2 | float32 on converted panels |
/// | ``int8`` | 1 + 4 / group (scales) | as bfloat16 (panels converted to bf16), else float32 on converted panels |
public enum WeightPrecision: String, Sendable, CaseIterable, Codable, CustomStringConvertible {
    /// IEEE single precision (the default; the fixtures' 1e-4 parity holds in it).
    case float32
    /// bfloat16: float32's range with an 8-bit significand, as published checkpoints store.
    case bfloat16
    /// IEEE half precision.
    case float16
    /// Symmetric weight-only int8, with one float32 scale per output row and group of
    /// ``WeightMatrix/defaultGroupSize`` input columns.
    case int8

    /// The name used on the command line and in files (`float32`, `bfloat16`, `float16`, `int8`).
    public var description: String { rawValue }

    /// Accepts the names above and the short forms `f32`, `fp32`, `bf16`, `f16`, `fp16`, `half`, `i8`.
    public init?(name: String) {
        switch name.lowercased() {
        case "float32", "f32", "fp32": self = .float32
        case "bfloat16", "bf16": self = .bfloat16
        case "float16", "f16", "fp16", "half": self = .float16
        case "int8", "i8": self = .int8
        default: return nil
        }
    }

    /// The precisions in which `parameters` weights plus `otherBytes` (activations, say) fit `budget`,
    /// narrowest storage last, for refusals that name what would fit.
    public static func fitting(parameters: Int, otherBytes: Double = 0, budget: MemoryBudget) -> [WeightPrecision] {
        allCases.filter { Double(parameters) * $0.bytesPerWeight + otherBytes <= budget.bytes }
    }

    /// Bytes per stored weight, scales of the default group size included.
    public var bytesPerWeight: Double {
        switch self {
        case .float32: return 4
        case .bfloat16, .float16: return 2
        case .int8: return 1 + 4 / Double(WeightMatrix.defaultGroupSize)
        }
    }
}

/// Raw bytes of a weight matrix: owned (allocated, 64-byte aligned) or borrowed from a memory-mapped
/// file that this object keeps open.
///
/// Never mutated after initialisation, which is what makes sharing it across threads sound.
public final class WeightBuffer: @unchecked Sendable {
    /// The first byte.
    public let baseAddress: UnsafeRawPointer
    /// The number of bytes.
    public let byteCount: Int
    private let allocation: UnsafeMutableRawPointer?
    private let owner: AnyObject?

    /// Allocates `byteCount` bytes and lets `initialize` write all of them.
    public init(allocating byteCount: Int, _ initialize: (UnsafeMutableRawPointer) throws -> Void) rethrows {
        let p = UnsafeMutableRawPointer.allocate(byteCount: max(byteCount, 1), alignment: 64)
        do { try initialize(p) } catch { p.deallocate(); throw error }
        allocation = p
        baseAddress = UnsafeRawPointer(p)
        self.byteCount = byteCount
        owner = nil
    }

    /// Borrows `byteCount` bytes at `pointer`, which stay valid as long as `owner` lives (for example the
    /// `Data` of a memory-mapped safetensors file, boxed).
    public init(borrowing pointer: UnsafeRawPointer, byteCount: Int, owner: AnyObject) {
        baseAddress = pointer
        self.byteCount = byteCount
        allocation = nil
        self.owner = owner
    }

    /// Whether the bytes are borrowed from a mapped file rather than allocated.
    public var isBorrowed: Bool { allocation == nil }

    deinit { allocation?.deallocate() }
}
