/// What the header says about one tensor: its name, element type, shape and where its bytes are.
public struct SafetensorsTensorInfo: Sendable, Hashable {
    /// The tensor's name (the header key).
    public let name: String
    /// The element type.
    public let dtype: SafetensorsDType
    /// The extent of each axis, outermost first (`[]` is a scalar).
    public let shape: [Int]
    /// The byte range inside the data buffer, exactly as the header's `data_offsets` (end exclusive).
    /// The data buffer starts at file offset ``SafetensorsFile/dataStart``.
    public let dataOffsets: Range<Int>

    /// The number of elements (the product of ``shape``; 1 for a scalar).
    public let elementCount: Int

    /// Creates an info record for a shape whose element count is already known not to overflow.
    init(name: String, dtype: SafetensorsDType, shape: [Int], dataOffsets: Range<Int>, elementCount: Int) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.dataOffsets = dataOffsets
        self.elementCount = elementCount
    }

    /// The number of bytes the tensor occupies.
    public var byteCount: Int { dataOffsets.count }
}
