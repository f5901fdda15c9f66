import Foundation

/// Errors raised by tensor construction, shape manipulation and kernels.
///
/// Every case carries enough context to say what to fix: the operation that failed and the
/// shapes or values involved.
public enum TensorError: Error, Equatable, Sendable, CustomStringConvertible {
    /// A shape had a negative dimension, or its element count overflowed `Int`.
    case invalidShape([Int], reason: String)
    /// The number of scalars supplied does not match the product of the shape.
    case scalarCountMismatch(shape: [Int], expected: Int, got: Int)
    /// The shapes of operands are incompatible for an operation.
    case shapeMismatch(operation: String, shapes: [[Int]], reason: String)
    /// An axis argument is outside `-rank ..< rank`.
    case axisOutOfRange(operation: String, axis: Int, rank: Int)
    /// An argument other than a shape is invalid (a range, a head count, a split size...).
    case invalidArgument(operation: String, reason: String)
    /// The operation would need `bytes` bytes of memory, more than the ``MemoryBudget`` of `budget` bytes
    /// in force (raise the budget, or use smaller inputs).
    case memoryBudgetExceeded(operation: String, bytes: Double, budget: Double)

    public var description: String {
        switch self {
        case let .invalidShape(shape, reason):
            return "invalid shape \(shape): \(reason)"
        case let .scalarCountMismatch(shape, expected, got):
            return "shape \(shape) needs \(expected) scalars, got \(got)"
        case let .shapeMismatch(operation, shapes, reason):
            return "\(operation): incompatible shapes \(shapes.map { "\($0)" }.joined(separator: ", ")): \(reason)"
        case let .axisOutOfRange(operation, axis, rank):
            return "\(operation): axis \(axis) is out of range for a tensor of rank \(rank)"
        case let .invalidArgument(operation, reason):
            return "\(operation): \(reason)"
        case let .memoryBudgetExceeded(operation, bytes, budget):
            let need = bytes.isFinite ? String(format: "%.3g GB", bytes / 1e9) : "more than can be counted"
            return "\(operation) would need \(need) of memory, over the budget of "
                + String(format: "%.3g GB", budget / 1e9) + "; use smaller inputs or raise the memory budget"
        }
    }
}
