import Foundation
import Tensors

/// The head layout of a Lumina attention layer: `heads` query heads of `headDim` channels sharing
/// `kvHeads` key/value heads (grouped-query attention; `heads` is a multiple of `kvHeads`).
struct LuminaHeads: Sendable, Equatable {
    /// Query heads.
    public let heads: Int
    /// Key/value heads.
    public let kvHeads: Int
    /// Channels per head (`hidden_size / num_attention_heads`, floored, as diffusers' `dim_head`).
    public let headDim: Int

    /// A layout.
    public init(heads: Int, kvHeads: Int, headDim: Int) {
        self.heads = heads
        self.kvHeads = kvHeads
        self.headDim = headDim
    }

    /// Query width `heads · headDim` (the width of `to_q` and the input of `to_out`).
    public var queryWidth: Int { heads * headDim }
    /// Key/value width `kvHeads · headDim`.
    public var kvWidth: Int { kvHeads * headDim }
    /// Query heads per key/value head.
    public var groupSize: Int { heads / kvHeads }
}

/// Scaled-dot-product attention with grouped key/value heads, as diffusers' Lumina processors run it:
/// key/value head `j` serves query heads `j·g ..< (j+1)·g` (`g = heads / kvHeads`; diffusers repeats
/// each key/value head `g` times in place).
///
/// - Parameters:
///   - q: `[B, Sq, heads·Dh]`; `k`, `v`: `[B, Sk, kvHeads·Dh]`.
///   - keyMask: `[B, Sk]` (nonzero = attend), or nil.
///   - scale: the softmax scale (`1/√Dh` when nil).
func luminaAttention(
    q: Tensor, k: Tensor, v: Tensor, layout: LuminaHeads, keyMask: Tensor?, scale: Float?
) throws(TensorError) -> Tensor {
    let g = layout.groupSize
    let key = g == 1 ? k : try repeatingHeads(k, groups: layout.kvHeads, times: g)
    let value = g == 1 ? v : try repeatingHeads(v, groups: layout.kvHeads, times: g)
    return try attention(query: q, key: key, value: value, heads: layout.heads,
                         mask: keyMask.map { .keys($0) }, scale: scale)
}

/// `[B, S, n·Dh]` → `[B, S, n·times·Dh]`, each head's `Dh` channels repeated `times` times in place
/// (torch's `x.unsqueeze(3).repeat(1, 1, 1, times, 1).flatten(2, 3)` on `[B, S, n, Dh]`).
func repeatingHeads(_ x: Tensor, groups n: Int, times: Int) throws(TensorError) -> Tensor {
    guard x.rank == 3, n > 0, times > 0, x.shape[2] % n == 0 else {
        throw .shapeMismatch(operation: "repeat key/value heads", shapes: [x.shape],
                             reason: "expected [B, S, \(n)·head_dim]")
    }
    let rows = x.shape[0] * x.shape[1], width = x.shape[2], dh = width / n
    let outWidth = width * times
    return x.withUnsafeBufferPointer { src in
        Tensor(uninitializedShape: [x.shape[0], x.shape[1], outWidth]) { dst in
            Parallelism.forEachChunk(rows, costPerItem: outWidth) { range in
                for r in range {
                    let s = src.baseAddress! + r * width, o = dst.baseAddress! + r * outWidth
                    for h in 0..<n {
                        for t in 0..<times {
                            (o + (h * times + t) * dh).update(from: s + h * dh, count: dh)
                        }
                    }
                }
            }
        }
    }
}

/// The proportional-attention softmax scale of diffusers' Lumina processors:
/// `√(log_base(S)) · 1/√Dh` (computed in Double, as Python does), or `1/√Dh` without a base.
///
/// - Throws: `invalidArgument` when `log_base(S)` is negative or undefined (base ≤ 1 with S > 1), where
///   diffusers raises a Python math error.
func proportionalAttentionScale(
    sequenceLength s: Int, baseSequenceLength base: Double?, headDim: Int
) throws(TensorError) -> Float {
    let attnScale = 1 / Double(headDim).squareRoot()
    guard let base else { return Float(attnScale) }
    let ratio = Foundation.log(Double(s)) / Foundation.log(base)
    guard base > 0, base != 1, ratio.isFinite, ratio >= 0 else {
        throw .invalidArgument(operation: "Lumina proportional attention",
                               reason: "base_sequence_length \(base) gives log_base(\(s)) = \(ratio); use a base > 1")
    }
    return Float(ratio.squareRoot() * attnScale)
}

