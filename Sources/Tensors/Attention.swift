import CKernels

/// A mask for ``attention(query:key:value:heads:mask:scale:precision:)``.
public enum AttentionMask: Sendable {
    /// Per-key boolean mask `[B, Sk]`: nonzero = attend, zero = masked out (the key-padding mask of
    /// text encoders).
    case keys(Tensor)
    /// An additive bias broadcastable to `[B, H, Sq, Sk]` (each of B, H, Sq may be 1), added to the
    /// scaled scores before the softmax (e.g. `-10000` or `-inf` for masked positions).
    case additive(Tensor)
}

/// Query rows per 4 MB of scores in the estimate ``attentionScoreFloats(keys:)-(Int)`` makes (the attention of
/// earlier releases kept such blocks of scores; the fused kernel needs far less).
public let attentionQueryBlock = 128

/// The floats of scores the estimate ``attentionScoreFloats(keys:)-(Int)`` allows at least (4 MB).
let attentionScoreFloatsTarget = 1 << 20

/// An upper bound on the scratch floats one worker of ``attention(query:key:value:heads:mask:scale:precision:)``
/// holds at once for `keys` keys: what a model's activation estimate adds per thread. The fused kernel
/// needs `ck_attention_workspace_floats(headDim)` (≈ 25 k floats for 128-wide heads), always below this.
public func attentionScoreFloats(keys: Int) -> Int {
    max(attentionQueryBlock, attentionScoreFloatsTarget / max(keys, 1)) * keys
}

/// ``attentionScoreFloats(keys:)-(Int)`` in Double, for estimates that must not overflow at any size (an upper
/// bound: `max(attentionQueryBlock · keys, 2²⁰)`).
public func attentionScoreFloats(keys: Double) -> Double {
    max(Double(attentionQueryBlock) * keys, Double(attentionScoreFloatsTarget))
}

/// Whether ``attention(query:key:value:heads:mask:scale:precision:)`` takes bf16 operands: weights of
/// `precision` run bf16 products on this CPU (``WeightProducts/path(for:)``), the CPU has the bf16 attention
/// kernel (AVX512_BF16 with AVX512BW) and the head dimension is even (the kernel reads pairs).
func attentionUsesBFloat16(precision: WeightPrecision, headDim: Int) -> Bool {
    precision != .float32 && WeightProducts.path(for: precision) == .oneDNNBFloat16 && headDim % 2 == 0
        && ck_attention_bf16_available() != 0
}

/// Multi-head scaled-dot-product attention on token-major tensors.
///
/// Works directly on the `[B, S, H·Dh]` layout that linear projections produce: each head's columns are
/// addressed with a row stride, so no transposes are made. Each (batch, head, 64-query tile) runs the
/// fused CKernels kernel: scores, an online softmax and the probability-weighted sum of values, 128 keys at a
/// time, in a per-worker workspace of a few tens of kilobytes — the `Sq × Sk` scores never exist. AVX-512,
/// AVX2+FMA or portable code is chosen at run time from the CPU's features.
///
/// - Parameters:
///   - query: `[B, Sq, H·Dh]`.
///   - key: `[B, Sk, H·Dh]`.
///   - value: `[B, Sk, H·Dh]`.
///   - heads: H.
///   - mask: optional key mask or additive bias.
///   - scale: score scale, `1/√Dh` by default.
///   - precision: the precision of the model's weights. For bfloat16 and int8 weights on a CPU with
///     bf16 products (``WeightProducts/path(for:)`` is `oneDNNBFloat16`, and the CPU has AVX512BW) and an
///     even head dimension, the two products take bf16 operands — queries, keys, values and the softmax
///     numerators rounded to bf16, accumulated in float32 (AVX512_BF16 dot products) — as the weight
///     products of such a model do; the softmax stays float32. Otherwise (the default, float32) every
///     product is float32.
/// - Returns: `[B, Sq, H·Dh]`, heads concatenated in the last axis.
public func attention(
    query: Tensor, key: Tensor, value: Tensor, heads: Int, mask: AttentionMask? = nil, scale: Float? = nil,
    precision: WeightPrecision = .float32
) throws(TensorError) -> Tensor {
    try PhaseProfiler.measure(.attention) { () throws(TensorError) -> Tensor in
        guard query.rank == 3, key.rank == 3, value.rank == 3, key.shape == value.shape,
              query.shape[0] == key.shape[0], query.shape[2] == key.shape[2] else {
            throw .shapeMismatch(operation: "attention", shapes: [query.shape, key.shape, value.shape],
                                 reason: "expected query [B, Sq, H·Dh] and key/value [B, Sk, H·Dh]")
        }
        let (b, sq, width) = (query.shape[0], query.shape[1], query.shape[2])
        let sk = key.shape[1]
        guard heads > 0, width % heads == 0 else {
            throw .invalidArgument(operation: "attention", reason: "width \(width) is not divisible by \(heads) heads")
        }
        let dh = width / heads
        let alpha = scale ?? 1 / Float(dh).squareRoot()

        // Validate and describe the mask as (pointer strides) over b, h, q.
        var maskTensor: Tensor? = nil
        var isKeyMask = false
        var ms = (b: 0, h: 0, q: 0)
        switch mask {
        case .none: break
        case .keys(let m):
            guard m.shape == [b, sk] else {
                throw .shapeMismatch(operation: "attention", shapes: [query.shape, key.shape, m.shape],
                                     reason: "a key mask must be [B, Sk] = [\(b), \(sk)]")
            }
            maskTensor = m; isKeyMask = true; ms = (sk, 0, 0)
        case .additive(let m):
            var s = m.shape
            while s.count < 4 { s.insert(1, at: 0) }
            guard s.count == 4, s[3] == sk, s[0] == 1 || s[0] == b, s[1] == 1 || s[1] == heads,
                  s[2] == 1 || s[2] == sq else {
                throw .shapeMismatch(operation: "attention", shapes: [query.shape, key.shape, m.shape],
                                     reason: "an additive mask must broadcast to [B, H, Sq, Sk] = [\(b), \(heads), \(sq), \(sk)]")
            }
            maskTensor = m
            ms = (s[0] == 1 ? 0 : s[1] * s[2] * sk, s[1] == 1 ? 0 : s[2] * sk, s[2] == 1 ? 0 : sk)
        }
        return fusedAttention(query: query, key: key, value: value, heads: heads, scale: alpha,
                              mask: maskTensor, maskStrides: ms, isKeyMask: isKeyMask,
                              bfloat16: sk > CK_ATTENTION_FEW_KEYS && attentionUsesBFloat16(precision: precision, headDim: dh))
    }
}

/// Query rows of one attention task: one tile of the widest kernel (4 vectors of 16 lanes).
let fusedAttentionRows = 64

/// Attention through the fused CKernels kernels (`ck_attention_bf16` with `bfloat16` where it runs, else
/// `ck_attention_f32`: scores, online softmax and P·V block by block in a per-worker workspace), parallel
/// over (batch, head, 64-query tile). Shapes and the mask were validated by the caller; `maskStrides` are
/// the mask's element strides over batch, head and query.
private func fusedAttention(
    query: Tensor, key: Tensor, value: Tensor, heads: Int, scale: Float, mask: Tensor?,
    maskStrides ms: (b: Int, h: Int, q: Int), isKeyMask: Bool, bfloat16: Bool
) -> Tensor {
    let (b, sq, width) = (query.shape[0], query.shape[1], query.shape[2])
    let sk = key.shape[1], dh = width / heads
    // bf16 operands: queries and keys rounded to bf16 rows, values as bf16 pairs of consecutive keys.
    let q16 = bfloat16 ? BFloat16Operand(query) : nil, k16 = bfloat16 ? BFloat16Operand(key) : nil
    let v16 = bfloat16 ? BFloat16PairOperand(value) : nil
    let pairRows = (sk + 1) / 2
    let tilesPerHead = (sq + fusedAttentionRows - 1) / fusedAttentionRows
    let tasks = b * heads * tilesPerHead
    let flops = 4 * Double(b) * Double(sq) * Double(sk) * Double(width)
    let workers = flops < Double(Parallelism.serialThreshold) * 8 ? 1 : max(1, min(Parallelism.threadCount, tasks))
    let workFloats = ck_attention_workspace_floats(dh)
    return query.withUnsafeBufferPointer { pq in
        key.withUnsafeBufferPointer { pk in
            value.withUnsafeBufferPointer { pv in
                withOptionalPointer(mask) { pm in
                    Tensor(uninitializedShape: [b, sq, width]) { po in
                        guard sq > 0, width > 0 else { return }
                        if sk == 0 { po.update(repeating: 0); return }
                        let run = { (taskRange: Range<Int>) in
                            let work = BufferPool.allocate(Float.self, count: workFloats)
                            defer { BufferPool.release(work, count: workFloats) }
                            for t in taskRange {
                                let tile = t % tilesPerHead
                                let h = (t / tilesPerHead) % heads
                                let bi = t / (tilesPerHead * heads)
                                let q0 = tile * fusedAttentionRows
                                let rows = min(fusedAttentionRows, sq - q0)
                                let qOffset = (bi * sq + q0) * width + h * dh, kvOffset = bi * sk * width + h * dh
                                var bias: UnsafePointer<Float>? = nil, keyMask: UnsafePointer<Float>? = nil
                                var biasStride = 0
                                if let pm {
                                    if isKeyMask {
                                        keyMask = pm + bi * ms.b
                                    } else {
                                        bias = pm + bi * ms.b + h * ms.h + q0 * ms.q
                                        biasStride = ms.q
                                    }
                                }
                                if let q16, let k16, let v16,
                                   ck_attention_bf16(q16.values + qOffset, Int64(width), k16.values + kvOffset, Int64(width),
                                                     v16.values + bi * pairRows * width + h * dh, Int64(width),
                                                     po.baseAddress! + qOffset, Int64(width), rows, sk, dh, scale,
                                                     bias, Int64(biasStride), keyMask, work) != 0 {
                                    continue
                                }
                                ck_attention_f32(pq.baseAddress! + qOffset, Int64(width), pk.baseAddress! + kvOffset, Int64(width),
                                                 pv.baseAddress! + kvOffset, Int64(width), po.baseAddress! + qOffset, Int64(width),
                                                 rows, sk, dh, scale, bias, Int64(biasStride), keyMask, work)
                            }
                        }
                        if workers == 1 {
                            run(0..<tasks)
                        } else {
                            let per = (tasks + workers - 1) / workers
                            Parallelism.concurrentPerform(workers) { w in
                                let lo = w * per, hi = min(tasks, lo + per)
                                if lo < hi { run(lo..<hi) }
                            }
                        }
                    }
                }
            }
        }
    }
}

import Dispatch

/// A tensor's values rounded to bf16 into a contiguous buffer (from ``BufferPool``, given back when the
/// operand is released), converted in parallel: the operands of attention's bf16 products.
private final class BFloat16Operand: @unchecked Sendable {
    let values: UnsafeMutablePointer<UInt16>
    let count: Int

    init(_ t: Tensor) {
        count = t.count
        values = BufferPool.allocate(UInt16.self, count: count)
        let width = t.shape.last ?? 1, rows = count / max(width, 1)
        let out = values
        t.withUnsafeBufferPointer { p in
            guard let base = p.baseAddress, count > 0 else { return }
            Parallelism.forEachChunk(rows, costPerItem: width) { range in
                for r in range { ck_f32_to_bf16(base + r * width, out + r * width, width) }
            }
        }
    }

    deinit { BufferPool.release(values, count: count) }
}

/// A `[B, S, W]` tensor's rows as bf16 pairs of consecutive rows (`ck_bf16_pairs`): pair row `t` of batch
/// element `b` holds rows `2t` and `2t + 1` (the second zeros when S is odd), `[B, ⌈S/2⌉, W]` 32-bit
/// values from ``BufferPool``: the values of attention's bf16 kernel.
private final class BFloat16PairOperand: @unchecked Sendable {
    let values: UnsafeMutablePointer<UInt32>
    let count: Int

    init(_ t: Tensor) {
        let (b, s, width) = (t.shape[0], t.shape[1], t.shape[2])
        let pairs = (s + 1) / 2
        count = b * pairs * width
        values = BufferPool.allocate(UInt32.self, count: count)
        let out = values
        t.withUnsafeBufferPointer { p in
            guard let base = p.baseAddress, count > 0 else { return }
            Parallelism.forEachChunk(b * pairs, costPerItem: 2 * width) { range in
                for r in range {
                    let (bi, pr) = (r / pairs, r % pairs)
                    let first = base + (bi * s + 2 * pr) * width
                    ck_bf16_pairs(first, 2 * pr + 1 < s ? first + width : nil, out + r * width, width)
                }
            }
        }
    }

    deinit { BufferPool.release(values, count: count) }
}
