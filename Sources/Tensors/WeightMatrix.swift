import CKernels

/// The `[out, in]` weight of a matrix product (PyTorch's `nn.Linear` layout), stored in its own
/// precision (``WeightPrecision``).
///
/// Products read it through ``linear(_:weight:bias:)-(Tensor,WeightMatrix,Tensor?)`` and its siblings, which hide the storage:
/// float32 goes to sgemm directly; 16- and 8-bit storages are either multiplied by oneDNN in bf16
/// (where the CPU has it) or converted one panel of rows at a time into a float32 scratch for sgemm,
/// so a model's code is the same in every precision and the weights are never widened as a whole.
public struct WeightMatrix: Sendable {
    /// How the values are held.
    public enum Storage: Sendable {
        /// A `[rows, columns]` float32 tensor.
        case float32(Tensor)
        /// `rows × columns` bfloat16 values, row-major.
        case bfloat16(WeightBuffer)
        /// `rows × columns` IEEE half values, row-major.
        case float16(WeightBuffer)
        /// `rows × columns` int8 values, row-major, and one float32 scale per row and group of
        /// `groupSize` columns (`[rows, ⌈columns / groupSize⌉]`): value = q · scale.
        case int8(values: WeightBuffer, scales: Tensor, groupSize: Int)
    }

    /// Output features (rows).
    public let rows: Int
    /// Input features (columns).
    public let columns: Int
    /// The values.
    public let storage: Storage

    /// The int8 group size used when none is given: 64 columns share a scale (1.0625 bytes a weight,
    /// scales included). Measured on N(0, 1/in) and heavy-tailed weights, groups of 64 halve the
    /// product error of per-row scales and are within 10% of groups of 32.
    public static let defaultGroupSize = 64

    /// A float32 matrix. - Throws: when `tensor` is not 2-D.
    public init(_ tensor: Tensor) throws(TensorError) {
        guard tensor.rank == 2 else {
            throw .invalidArgument(operation: "weight matrix", reason: "needs a 2-D [out, in] tensor, got shape \(tensor.shape)")
        }
        rows = tensor.shape[0]
        columns = tensor.shape[1]
        storage = .float32(tensor)
    }

    /// A matrix over stored 16-bit values (`precision` `.bfloat16` or `.float16`).
    /// - Throws: when the buffer does not hold `rows × columns` values or the precision is not 16-bit.
    public init(halfWords buffer: WeightBuffer, precision: WeightPrecision, rows: Int, columns: Int) throws(TensorError) {
        let n = try Tensor.elementCount(of: [rows, columns])
        guard buffer.byteCount == 2 * n else {
            throw .invalidArgument(operation: "weight matrix", reason: "\(buffer.byteCount) bytes for \(rows) × \(columns) 16-bit values (need \(2 * n))")
        }
        switch precision {
        case .bfloat16: storage = .bfloat16(buffer)
        case .float16: storage = .float16(buffer)
        default: throw .invalidArgument(operation: "weight matrix", reason: "\(precision) is not a 16-bit storage")
        }
        self.rows = rows
        self.columns = columns
    }

    /// A matrix over stored int8 values and their scales.
    /// - Throws: when the sizes disagree (`values` must hold `rows × columns` bytes and `scales` be
    ///   `[rows, ⌈columns / groupSize⌉]` with finite entries) or `groupSize < 1`.
    public init(int8 values: WeightBuffer, scales: Tensor, groupSize: Int, rows: Int, columns: Int) throws(TensorError) {
        let n = try Tensor.elementCount(of: [rows, columns])
        guard groupSize >= 1 else {
            throw .invalidArgument(operation: "weight matrix", reason: "int8 group size must be at least 1, got \(groupSize)")
        }
        let groups = Self.groupCount(columns: columns, groupSize: groupSize)
        guard values.byteCount == n, scales.shape == [rows, groups] else {
            throw .invalidArgument(operation: "weight matrix",
                                   reason: "int8 \(rows) × \(columns) in groups of \(groupSize) needs \(n) value bytes and scales [\(rows), \(groups)]; got \(values.byteCount) bytes and scales \(scales.shape)")
        }
        guard scales.isFinite else {
            throw .invalidArgument(operation: "weight matrix", reason: "int8 scales must be finite")
        }
        storage = .int8(values: values, scales: scales, groupSize: groupSize)
        self.rows = rows
        self.columns = columns
    }

    /// ⌈columns / groupSize⌉ for `columns ≥ 0`, `groupSize ≥ 1`, without overflow for any group size (a
    /// group size read from a file can be as large as `Int.max`; found by `scripts/fuzz.sh`).
    static func groupCount(columns: Int, groupSize: Int) -> Int {
        columns == 0 ? 0 : (columns - 1) / groupSize + 1
    }

    /// The storage precision.
    public var precision: WeightPrecision {
        switch storage {
        case .float32: return .float32
        case .bfloat16: return .bfloat16
        case .float16: return .float16
        case .int8: return .int8
        }
    }

    /// `[rows, columns]`.
    public var shape: [Int] { [rows, columns] }

    /// Bytes held (int8: values and scales).
    public var byteCount: Int {
        switch storage {
        case .float32(let t): return 4 * t.count
        case .bfloat16(let b), .float16(let b): return b.byteCount
        case .int8(let v, let s, _): return v.byteCount + 4 * s.count
        }
    }

    /// The matrix in `precision`: float32 values rounded to nearest even for 16 bits, quantised for int8
    /// (symmetric, per row and group of `groupSize` columns). Returns `self` when already stored so.
    /// - Throws: for int8 when a weight is not finite (a scale would be NaN or infinite).
    public func converted(to precision: WeightPrecision, groupSize: Int = defaultGroupSize) throws(TensorError) -> WeightMatrix {
        if precision == self.precision {
            if case .int8(_, _, let g) = storage, g != groupSize { } else { return self }
        }
        let source: Tensor
        if case .float32(let t) = storage { source = t } else { source = float32Tensor() }
        return try Self.make(source, precision: precision, groupSize: groupSize)
    }

    /// `tensor` (`[rows, columns]`, float32) stored in `precision`.
    /// - Throws: when `tensor` is not 2-D, or (int8) holds a non-finite value.
    public static func make(_ tensor: Tensor, precision: WeightPrecision,
                            groupSize: Int = defaultGroupSize) throws(TensorError) -> WeightMatrix {
        let f = try WeightMatrix(tensor)
        let rows = f.rows, columns = f.columns, n = rows * columns
        switch precision {
        case .float32:
            return f
        case .bfloat16, .float16:
            let buffer = tensor.withUnsafeBufferPointer { src in
                WeightBuffer(allocating: 2 * n) { raw in
                    let dst = raw.bindMemory(to: UInt16.self, capacity: max(n, 1))
                    Parallelism.forEachChunk(rows, costPerItem: columns) { r in
                        let off = r.lowerBound * columns, len = r.count * columns
                        if precision == .bfloat16 { ck_f32_to_bf16(src.baseAddress! + off, dst + off, len) }
                        else { ck_f32_to_f16(src.baseAddress! + off, dst + off, len) }
                    }
                }
            }
            return try WeightMatrix(halfWords: buffer, precision: precision, rows: rows, columns: columns)
        case .int8:
            guard groupSize >= 1 else {
                throw .invalidArgument(operation: "int8 quantisation", reason: "group size must be at least 1, got \(groupSize)")
            }
            guard tensor.isFinite else {
                throw .invalidArgument(operation: "int8 quantisation", reason: "the weights hold NaN or infinity")
            }
            let groups = Self.groupCount(columns: columns, groupSize: groupSize)
            var scales = try Tensor(zeros: [rows, groups])
            let values = tensor.withUnsafeBufferPointer { src in
                scales.withUnsafeMutableBufferPointer { sc in
                    WeightBuffer(allocating: n) { raw in
                        let q = raw.bindMemory(to: Int8.self, capacity: max(n, 1))
                        Parallelism.forEachChunk(rows, costPerItem: 4 * columns) { r in
                            for row in r {
                                ck_quantize_row_i8(src.baseAddress! + row * columns, columns, groupSize,
                                                   q + row * columns, sc.baseAddress! + row * groups)
                            }
                        }
                    }
                }
            }
            return try WeightMatrix(int8: values, scales: scales, groupSize: groupSize, rows: rows, columns: columns)
        }
    }

    /// The values as a float32 `[rows, columns]` tensor (a copy for 16- and 8-bit storage: tests and
    /// reference paths only; products never widen the whole matrix).
    public func float32Tensor() -> Tensor {
        if case .float32(let t) = storage { return t }
        return Tensor(uninitializedShape: [rows, columns]) { dst in
            guard rows * columns > 0 else { return }
            Parallelism.forEachChunk(rows, costPerItem: columns) { r in
                convertRows(r, columns: 0..<columns, into: dst.baseAddress! + r.lowerBound * columns)
            }
        }
    }

    /// Writes rows `rowRange`, columns `columnRange` as float32, row-major with `columnRange.count`
    /// values a row, to `destination`.
    @inlinable
    public func convertRows(_ rowRange: Range<Int>, columns columnRange: Range<Int>, into destination: UnsafeMutablePointer<Float>) {
        let width = columnRange.count
        guard width > 0 else { return }
        switch storage {
        case .float32(let t):
            t.withUnsafeBufferPointer { src in
                for (i, r) in rowRange.enumerated() {
                    (destination + i * width).update(from: src.baseAddress! + r * columns + columnRange.lowerBound, count: width)
                }
            }
        case .bfloat16(let b):
            let src = b.baseAddress.assumingMemoryBound(to: UInt16.self)
            for (i, r) in rowRange.enumerated() {
                ck_bf16_to_f32(src + r * columns + columnRange.lowerBound, destination + i * width, width)
            }
        case .float16(let b):
            let src = b.baseAddress.assumingMemoryBound(to: UInt16.self)
            for (i, r) in rowRange.enumerated() {
                ck_f16_to_f32(src + r * columns + columnRange.lowerBound, destination + i * width, width)
            }
        case .int8(let v, let scales, let g):
            let q = v.baseAddress.assumingMemoryBound(to: Int8.self)
            let groups = scales.shape[1]
            scales.withUnsafeBufferPointer { sc in
                for (i, r) in rowRange.enumerated() {
                    Self.dequantize(q + r * columns, sc.baseAddress! + r * groups, groupSize: g,
                                    columns: columnRange, into: destination + i * width)
                }
            }
        }
    }

    /// One int8 row's `columns` (which may start inside a group) as float32.
    @usableFromInline
    static func dequantize(_ row: UnsafePointer<Int8>, _ scales: UnsafePointer<Float>, groupSize g: Int,
                           columns: Range<Int>, into out: UnsafeMutablePointer<Float>) {
        var j = columns.lowerBound
        while j < columns.upperBound {
            let group = j / g
            let end = min(columns.upperBound, (group + 1) * g)
            // A piece inside one group: its own "group" of the piece's length with that scale.
            ck_i8_to_f32(row + j, scales + group, end - j, out + (j - columns.lowerBound), end - j)
            j = end
        }
    }

    /// The rows of several matrices with the same column count and precision stacked into one
    /// (`[Σ rowsᵢ, columns]`), as fused projections (q, k, v) use them. int8 parts must share a group size.
    /// - Throws: when `parts` is empty or the parts disagree in columns, precision or group size.
    public static func concatenatingRows(_ parts: [WeightMatrix]) throws(TensorError) -> WeightMatrix {
        guard let first = parts.first else {
            throw .invalidArgument(operation: "weight concatenation", reason: "needs at least one matrix")
        }
        guard parts.allSatisfy({ $0.columns == first.columns && $0.precision == first.precision }) else {
            throw .invalidArgument(operation: "weight concatenation",
                                   reason: "parts differ in input width or precision: \(parts.map { "\($0.precision) \($0.shape)" })")
        }
        if parts.count == 1 { return first }
        let rows = parts.reduce(0) { $0 + $1.rows }, columns = first.columns
        switch first.storage {
        case .float32:
            var tensors: [Tensor] = []
            for p in parts { if case .float32(let t) = p.storage { tensors.append(t) } }
            return try WeightMatrix(Tensor.concatenate(tensors, axis: 0))
        case .bfloat16, .float16:
            let buffer = WeightBuffer(allocating: 2 * rows * columns) { raw in
                var offset = 0
                for p in parts {
                    if case .bfloat16(let b) = p.storage { (raw + offset).copyMemory(from: b.baseAddress, byteCount: b.byteCount); offset += b.byteCount }
                    if case .float16(let b) = p.storage { (raw + offset).copyMemory(from: b.baseAddress, byteCount: b.byteCount); offset += b.byteCount }
                }
            }
            return try WeightMatrix(halfWords: buffer, precision: first.precision, rows: rows, columns: columns)
        case .int8(_, _, let g):
            var scaleParts: [Tensor] = []
            var valueParts: [WeightBuffer] = []
            for p in parts {
                guard case .int8(let v, let s, let pg) = p.storage, pg == g else {
                    throw .invalidArgument(operation: "weight concatenation", reason: "int8 parts must share a group size")
                }
                valueParts.append(v)
                scaleParts.append(s)
            }
            let values = WeightBuffer(allocating: rows * columns) { raw in
                var offset = 0
                for v in valueParts { (raw + offset).copyMemory(from: v.baseAddress, byteCount: v.byteCount); offset += v.byteCount }
            }
            return try WeightMatrix(int8: values, scales: Tensor.concatenate(scaleParts, axis: 0), groupSize: g,
                                    rows: rows, columns: columns)
        }
    }
}
