import Foundation

/// A dense, row-major Float32 tensor with value semantics.
///
/// `Tensor` is a value type: copies share storage until one of them is mutated (copy-on-write).
/// Reshaping and slicing along the leading axis are views that share storage and copy nothing.
///
/// ```swift
/// var x = try Tensor(shape: [2, 3], scalars: [1, 2, 3, 4, 5, 6])
/// let row = try x.slice(axis: 0, 1..<2)       // a view, no copy
/// x[0, 0] = 10                                // copies first: `row` is unaffected
/// ```
public struct Tensor: Sendable {
    /// The extent of each axis, outermost first.
    public private(set) var shape: [Int]
    @usableFromInline var storage: TensorStorage
    @usableFromInline var offset: Int
    /// The number of scalars (the product of `shape`; 1 for a rank-0 tensor).
    public let count: Int

    @usableFromInline
    init(storage: TensorStorage, offset: Int, shape: [Int], count: Int) {
        self.storage = storage
        self.offset = offset
        self.shape = shape
        self.count = count
    }

    /// Validates a shape and returns its element count.
    @inlinable
    public static func elementCount(of shape: [Int]) throws(TensorError) -> Int {
        var n = 1
        for d in shape {
            guard d >= 0 else { throw .invalidShape(shape, reason: "dimensions must be non-negative") }
            let (p, o) = n.multipliedReportingOverflow(by: d)
            guard !o else { throw .invalidShape(shape, reason: "element count overflows") }
            n = p
        }
        return n
    }

    /// A tensor of the given shape filled with zeros.
    public init(zeros shape: [Int]) throws(TensorError) {
        let n = try Tensor.elementCount(of: shape)
        self.init(storage: TensorStorage(capacity: n), offset: 0, shape: shape, count: n)
    }

    /// A tensor of the given shape with every element set to `value`.
    public init(shape: [Int], repeating value: Float) throws(TensorError) {
        try self.init(zeros: shape)
        if value != 0 { storage.pointer.update(repeating: value, count: count) }
    }

    /// A tensor with the given shape and row-major scalars.
    /// - Throws: ``TensorError/scalarCountMismatch(shape:expected:got:)`` when the counts differ.
    public init(shape: [Int], scalars: [Float]) throws(TensorError) {
        let n = try Tensor.elementCount(of: shape)
        guard n == scalars.count else {
            throw .scalarCountMismatch(shape: shape, expected: n, got: scalars.count)
        }
        let s = TensorStorage(uninitializedCapacity: n)
        scalars.withUnsafeBufferPointer { src in
            if n > 0 { s.pointer.initialize(from: src.baseAddress!, count: n) }
        }
        self.init(storage: s, offset: 0, shape: shape, count: n)
    }

    /// A rank-0 tensor holding one scalar.
    public init(scalar: Float) {
        let s = TensorStorage(uninitializedCapacity: 1)
        s.pointer.initialize(to: scalar)
        self.init(storage: s, offset: 0, shape: [], count: 1)
    }

    /// A tensor whose contents are written by `body` (which must write every element).
    /// Used by kernels to avoid clearing memory that is about to be overwritten.
    @inlinable
    public init(
        uninitializedShape shape: [Int],
        _ body: (UnsafeMutableBufferPointer<Float>) throws -> Void
    ) rethrows {
        // An overflowing or negative shape gives 0 and traps in the precondition below: callers validate
        // shapes first, so reaching it is a programming error, not bad input.
        let n = (try? Tensor.elementCount(of: shape)) ?? 0
        precondition(n > 0 || shape.contains(0) || shape.isEmpty, "invalid shape \(shape)")
        let s = TensorStorage(uninitializedCapacity: n)
        try body(UnsafeMutableBufferPointer(start: s.pointer, count: n))
        self.init(storage: s, offset: 0, shape: shape, count: n)
    }

    /// The number of axes.
    @inlinable public var rank: Int { shape.count }

    /// All scalars in row-major order (a copy).
    public var scalars: [Float] {
        Array(UnsafeBufferPointer(start: storage.pointer + offset, count: count))
    }

    /// Calls `body` with a read-only view of the scalars.
    @inlinable
    public func withUnsafeBufferPointer<R>(
        _ body: (UnsafeBufferPointer<Float>) throws -> R
    ) rethrows -> R {
        try body(UnsafeBufferPointer(start: storage.pointer + offset, count: count))
    }

    /// Calls `body` with a mutable view of the scalars, copying the storage first if it is shared.
    @inlinable
    public mutating func withUnsafeMutableBufferPointer<R>(
        _ body: (UnsafeMutableBufferPointer<Float>) throws -> R
    ) rethrows -> R {
        makeUnique()
        return try body(UnsafeMutableBufferPointer(start: storage.pointer + offset, count: count))
    }

    /// Ensures this tensor owns its storage exclusively (copy-on-write).
    @inlinable
    mutating func makeUnique() {
        if !isKnownUniquelyReferenced(&storage) || storage.capacity != count {
            let s = TensorStorage(uninitializedCapacity: count)
            if count > 0 { s.pointer.initialize(from: storage.pointer + offset, count: count) }
            storage = s
            offset = 0
        }
    }

    /// Row-major strides, in elements.
    public var strides: [Int] {
        var st = [Int](repeating: 1, count: rank)
        var acc = 1
        for i in stride(from: rank - 1, through: 0, by: -1) {
            st[i] = acc
            acc *= shape[i]
        }
        return st
    }

    /// Normalises a possibly negative axis.
    @inlinable
    public func normalizedAxis(_ axis: Int, operation: String) throws(TensorError) -> Int {
        let a = axis < 0 ? axis + rank : axis
        guard a >= 0 && a < rank else { throw .axisOutOfRange(operation: operation, axis: axis, rank: rank) }
        return a
    }

    /// Element access by multi-index (bounds are checked; intended for tests and small tensors).
    public subscript(_ index: Int...) -> Float {
        get { storage.pointer[offset + flatIndex(index)] }
        set {
            let i = flatIndex(index)
            makeUnique()
            storage.pointer[offset + i] = newValue
        }
    }

    private func flatIndex(_ index: [Int]) -> Int {
        precondition(index.count == rank, "index \(index) has \(index.count) components for rank \(rank)")
        var flat = 0
        for (i, (ix, d)) in zip(index, shape).enumerated() {
            precondition(ix >= 0 && ix < d, "index \(index) out of bounds for shape \(shape) at axis \(i)")
            flat = flat * d + ix
        }
        return flat
    }

    /// True when every scalar is finite (no NaN or infinity).
    public var isFinite: Bool {
        withUnsafeBufferPointer { buf in
            var ok = true
            for v in buf where !v.isFinite { ok = false; break }
            return ok
        }
    }
}

extension Tensor: Equatable {
    /// Exact equality of shape and every scalar.
    public static func == (lhs: Tensor, rhs: Tensor) -> Bool {
        lhs.shape == rhs.shape && lhs.withUnsafeBufferPointer { a in
            rhs.withUnsafeBufferPointer { b in a.elementsEqual(b) }
        }
    }
}

extension Tensor: CustomStringConvertible {
    /// A readable summary: the shape, and the scalars (elided in the middle for large tensors).
    public var description: String {
        let n = count
        let shown: [Float] = withUnsafeBufferPointer { buf in
            n <= 12 ? Array(buf) : Array(buf[0..<6]) + Array(buf[(n - 6)..<n])
        }
        let fmt = shown.map { v -> String in
            let s = "\(v)"
            return s.count > 10 ? String(format: "%.5g", Double(v)) : s
        }
        let body = n <= 12 ? fmt.joined(separator: ", ")
            : fmt[0..<6].joined(separator: ", ") + ", …, " + fmt[6...].joined(separator: ", ")
        return "Tensor(shape: \(shape), [\(body)])"
    }
}
