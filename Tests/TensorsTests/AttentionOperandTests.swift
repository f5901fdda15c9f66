import CKernels
import Testing
@testable import Tensors

/// Attention on operands read in place — column blocks of a stacked projection, sequences interleaved
/// in frame-major rows — gives exactly what splitting the projection and regrouping the rows first gives
/// (the same kernel sees the same values in the same order), for float32 and bf16 operands.
@Suite struct AttentionOperandTests {
    /// `[B, S, 3W]` → its three `[B, S, W]` blocks, copied.
    func split(_ p: Tensor, width w: Int) throws -> [Tensor] { try p.split(sizes: [w, w, w], axis: -1) }

    @Test(arguments: [WeightPrecision.float32, .bfloat16], [(2, 37, 4, 16), (1, 130, 2, 64)])
    func stackedProjectionInPlace(_ precision: WeightPrecision, _ c: (Int, Int, Int, Int)) throws {
        let (b, s, h, dh) = c
        let w = h * dh
        let packed = rand([b, s, 3 * w], seed: 31)
        let parts = try split(packed, width: w)
        let reference = try attention(query: parts[0], key: parts[1], value: parts[2], heads: h, precision: precision)
        let inPlace = try attention(query: AttentionOperand(packed), key: AttentionOperand(packed, column: w),
                                    value: AttentionOperand(packed, column: 2 * w), width: w, heads: h, precision: precision)
        #expect(inPlace.shape == [b, s, w])
        #expect(inPlace.scalars == reference.scalars)
        // A key/value projection of another length (cross-attention), with a key mask.
        let kv = rand([b, 23, 2 * w], seed: 32)
        let kvParts = try kv.split(sizes: [w, w], axis: -1)
        var keep = [Float](repeating: 1, count: b * 23)
        keep[3] = 0; keep[22] = 0
        let mask = AttentionMask.keys(try Tensor(shape: [b, 23], scalars: keep))
        let cross = try attention(query: AttentionOperand(packed), key: AttentionOperand(kv), value: AttentionOperand(kv, column: w),
                                  width: w, heads: h, mask: mask, precision: precision)
        #expect(cross.scalars == (try attention(query: parts[0], key: kvParts[0], value: kvParts[1], heads: h, mask: mask,
                                                 precision: precision)).scalars)
    }

    /// `[B, F·T, W]` frame-major: temporal attention over the F frames of each of the T positions, in
    /// place, against transposing to `[B·T, F, W]` and back. 4 frames take the few-keys path, 40 the tiles
    /// (bf16 operands where the CPU has them; an odd count pads the last value pair).
    @Test(arguments: [WeightPrecision.float32, .bfloat16], [4, 40, 21])
    func interleavedSequencesInPlace(_ precision: WeightPrecision, _ frames: Int) throws {
        let (b, t, h, dh) = (2, 6, 2, 8)
        let w = h * dh
        let packed = rand([b, frames * t, 3 * w], seed: 33)
        func grouped(_ x: Tensor) throws -> Tensor {
            try x.reshaped([b, frames, t, w]).permuted([0, 2, 1, 3]).reshaped([b * t, frames, w])
        }
        let parts = try split(packed, width: w)
        let perPosition = try attention(query: grouped(parts[0]), key: grouped(parts[1]), value: grouped(parts[2]),
                                        heads: h, precision: precision)
        let reference = try perPosition.reshaped([b, t, frames, w]).permuted([0, 2, 1, 3]).reshaped([b, frames * t, w])
        let inPlace = try attention(query: AttentionOperand(packed), key: AttentionOperand(packed, column: w),
                                    value: AttentionOperand(packed, column: 2 * w), width: w, heads: h,
                                    sequences: .interleaved(t), precision: precision)
        #expect(inPlace.scalars == reference.scalars)
    }

    @Test func badOperandsAreTypedErrors() {
        let p = rand([1, 6, 24], seed: 34)
        // Columns past the end, a width that is no multiple of the heads, sequences that do not divide the
        // rows, and a mask with interleaved sequences.
        #expect(throws: TensorError.self) {
            try attention(query: AttentionOperand(p), key: AttentionOperand(p, column: 8), value: AttentionOperand(p, column: 17),
                          width: 8, heads: 2)
        }
        #expect(throws: TensorError.self) {
            try attention(query: AttentionOperand(p), key: AttentionOperand(p), value: AttentionOperand(p), width: 7, heads: 2)
        }
        #expect(throws: TensorError.self) {
            try attention(query: AttentionOperand(p), key: AttentionOperand(p), value: AttentionOperand(p), width: 8, heads: 2,
                          sequences: .interleaved(4))
        }
        #expect(throws: TensorError.self) {
            try attention(query: AttentionOperand(p), key: AttentionOperand(p), value: AttentionOperand(p), width: 8, heads: 2,
                          sequences: .interleaved(3), mask: .keys(try Tensor(zeros: [1, 6])))
        }
        #expect(throws: TensorError.self) {
            try attention(query: AttentionOperand(p, column: -1), key: AttentionOperand(p), value: AttentionOperand(p), width: 8, heads: 2)
        }
    }
}
