import Testing
import Tensors

// A minimal test so the `TensorsTests` target has sources (SwiftPM rejects an empty target folder).

@Test func elementCountRejectsNegativeAndOverflowingShapes() throws {
    #expect(try Tensor.elementCount(of: [2, 3, 4]) == 24)
    #expect(try Tensor.elementCount(of: []) == 1)
    #expect(throws: TensorError.self) { try Tensor.elementCount(of: [2, -1]) }
    #expect(throws: TensorError.self) { try Tensor.elementCount(of: [Int.max, 2]) }
}
