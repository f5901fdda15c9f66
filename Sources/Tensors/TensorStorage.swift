/// Reference-counted, 64-byte aligned Float32 buffer shared by tensors and their views (large ones
/// recycled through ``BufferPool``).
///
/// `Tensor` wraps it with copy-on-write semantics; the storage itself is never mutated while
/// shared, which is what makes the `@unchecked Sendable` conformance sound.
@usableFromInline
final class TensorStorage: @unchecked Sendable {
    @usableFromInline let pointer: UnsafeMutablePointer<Float>
    @usableFromInline let capacity: Int

    /// Allocates uninitialised-but-zeroed storage for `capacity` scalars.
    @usableFromInline
    init(capacity: Int) {
        self.capacity = capacity
        let raw = BufferPool.allocate(byteCount: max(capacity, 1) * MemoryLayout<Float>.stride)
        pointer = raw.bindMemory(to: Float.self, capacity: max(capacity, 1))
        pointer.initialize(repeating: 0, count: max(capacity, 1))
    }

    /// Allocates storage for `capacity` scalars without clearing it; the caller must write every element.
    @usableFromInline
    init(uninitializedCapacity capacity: Int) {
        self.capacity = capacity
        let raw = BufferPool.allocate(byteCount: max(capacity, 1) * MemoryLayout<Float>.stride)
        pointer = raw.bindMemory(to: Float.self, capacity: max(capacity, 1))
    }

    deinit {
        BufferPool.release(UnsafeMutableRawPointer(pointer), byteCount: max(capacity, 1) * MemoryLayout<Float>.stride)
    }
}
