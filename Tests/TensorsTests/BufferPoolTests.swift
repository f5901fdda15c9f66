import Testing
@testable import Tensors

/// ``BufferPool``: large freed buffers come back for the next allocation of the same size, zeroed when
/// the tensor asks for zeros, bounded, and emptied by `MemoryBudget.releaseFreedMemory()`.
@Suite(.serialized) struct BufferPoolTests {
    /// 2 MB of floats: above the pool's 1 MB floor.
    static let count = 1 << 19

    @Test func aFreedLargeBufferIsReusedForTheSameSize() throws {
        MemoryBudget.releaseFreedMemory()
        var address: UnsafeMutableRawPointer?
        do {
            let t = try Tensor(shape: [Self.count], repeating: 7)
            address = t.withUnsafeBufferPointer { UnsafeMutableRawPointer(mutating: $0.baseAddress!) }
        }
        #expect(BufferPool.cachedBytes >= Self.count * 4)
        let zeros = try Tensor(zeros: [Self.count])
        let again = zeros.withUnsafeBufferPointer { UnsafeMutableRawPointer(mutating: $0.baseAddress!) }
        // Other tests run concurrently and may take that buffer first; when they did not, it is ours.
        if again == address {
            #expect(zeros.scalars.allSatisfy { $0 == 0 }, "a reused buffer must be cleared for zeros")
        }
        #expect(zeros.scalars.allSatisfy { $0 == 0 })
    }

    @Test func smallBuffersAreNotKept() {
        MemoryBudget.releaseFreedMemory()
        let p = BufferPool.allocate(Float.self, count: 1000)
        BufferPool.release(p, count: 1000)
        #expect(BufferPool.cachedBytes < BufferPool.minimumBytes)
    }

    @Test func thePoolStaysUnderItsLimitAndDrains() {
        MemoryBudget.releaseFreedMemory()
        let bytes = BufferPool.limitBytes / 3 + 1
        let buffers = (0..<4).map { _ in BufferPool.allocate(byteCount: bytes) }
        for b in buffers { BufferPool.release(b, byteCount: bytes) }
        // Three fit under the limit only if 3·bytes ≤ limit, which 3·(limit/3 + 1) is not: two are kept.
        #expect(BufferPool.cachedBytes <= BufferPool.limitBytes)
        #expect(BufferPool.cachedBytes >= 2 * bytes)
        MemoryBudget.releaseFreedMemory()
        #expect(BufferPool.cachedBytes == 0)
    }
}
