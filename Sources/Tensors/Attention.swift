import CKernels
import COpenBLAS

/// A mask for ``attention(query:key:value:heads:mask:scale:precision:)``.
public enum AttentionMask: Sendable {
    /// Per-key boolean mask `[B, Sk]`: nonzero = attend, zero = masked out (the key-padding mask of
    /// text encoders).
    case keys(Tensor)
    /// An additive bias broadcastable to `[B, H, Sq, Sk]` (each of B, H, Sq may be 1), added to the
    /// scaled scores before the softmax (e.g. `-10000` or `-inf` for masked positions).
    case additive(Tensor)
}

/// The fewest query rows ``attention(query:key:value:heads:mask:scale:precision:)`` puts in one block (fewer only
/// when the sequence is shorter).
public let attentionQueryBlock = 128

/// Scores of one query block are kept under this many floats (4 MB) when the block has more than
/// ``attentionQueryBlock`` rows: larger blocks make fewer, larger products (each has a set-up cost).
let attentionScoreFloatsTarget = 1 << 20

/// The query rows of one block of ``attention(query:key:value:heads:mask:scale:precision:)`` for `sq` queries and
/// `sk` keys: at least ``attentionQueryBlock``, up to `2²⁰ / sk`, the blocks of a head made equal.
func attentionQueryRows(queries sq: Int, keys sk: Int) -> Int {
    let most = max(attentionQueryBlock, attentionScoreFloatsTarget / max(sk, 1))
    let blocks = (max(sq, 1) + most - 1) / most
    return (max(sq, 1) + blocks - 1) / blocks
}

/// The most score floats one worker of ``attention(query:key:value:heads:mask:scale:precision:)`` holds at once for
/// `keys` keys (any number of queries): what a model's activation estimate adds per thread.
public func attentionScoreFloats(keys: Int) -> Int {
    max(attentionQueryBlock, attentionScoreFloatsTarget / max(keys, 1)) * keys
}

/// ``attentionScoreFloats(keys:)-(Int)`` in Double, for estimates that must not overflow at any size (an upper
/// bound: `max(attentionQueryBlock · keys, 2²⁰)`).
public func attentionScoreFloats(keys: Double) -> Double {
    max(Double(attentionQueryBlock) * keys, Double(attentionScoreFloatsTarget))
}

/// Whether ``attention(query:key:value:heads:mask:scale:precision:)`` takes bf16 products: weights of
/// `precision` run bf16 products on this CPU (``WeightProducts/path(for:)``), and one block's score
/// product (`2 · rows · keys · headDim` flops) is at least oneDNN's minimum (below it the float32
/// products run on single-threaded OpenBLAS, like small products elsewhere).
func attentionUsesBFloat16(precision: WeightPrecision, queryRows: Int, keys: Int, headDim: Int) -> Bool {
    precision != .float32 && WeightProducts.path(for: precision) == .oneDNNBFloat16
        && 2 * Double(queryRows) * Double(keys) * Double(headDim) >= oneDNNMinimumFlops
}

/// Multi-head scaled-dot-product attention on token-major tensors.
///
/// Works directly on the `[B, S, H·Dh]` layout that linear projections produce: each head's columns are
/// addressed with a row stride, so no transposes are made. Queries are processed in blocks of at least
/// ``attentionQueryBlock`` rows (more while the block's scores stay under 4 MB), so the extra memory is
/// ``attentionScoreFloats(keys:)-(Int)`` per worker rather than `O(Sq × Sk)`.
///
/// - Parameters:
///   - query: `[B, Sq, H·Dh]`.
///   - key: `[B, Sk, H·Dh]`.
///   - value: `[B, Sk, H·Dh]`.
///   - heads: H.
///   - mask: optional key mask or additive bias.
///   - scale: score scale, `1/√Dh` by default.
///   - precision: the precision of the model's weights. For bfloat16 and int8 weights on a CPU with
///     bf16 products (``WeightProducts/path(for:)`` is `oneDNNBFloat16`), the two products take bf16
///     operands — queries, keys, values and the softmax numerators rounded to bf16, accumulated in float32
///     — as the weight products of such a model do; the softmax stays float32. Otherwise (the default,
///     float32), and when one block's products are too small for oneDNN's set-up to pay (a few keys, as in
///     temporal attention over frames), every product is float32.
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
        _ = try blasInt(sk, "attention"); _ = try blasInt(width, "attention")

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
        let blockRows = attentionQueryRows(queries: sq, keys: sk)
        let blocksPerHead = (sq + blockRows - 1) / blockRows
        let tasks = b * heads * blocksPerHead
        let workers = max(1, min(Parallelism.threadCount, tasks))
        let emptyMask = maskTensor == nil ? try Tensor(zeros: [1]) : nil
        let mt = maskTensor ?? emptyMask!
        let hasMask = maskTensor != nil
        // bf16 operands, converted once for the whole call (nil: float32 products). Only for products
        // large enough for oneDNN (its per-call set-up dwarfs a tiny product: a temporal attention over
        // a few frames ran 2× slower in bf16 than in float32); smaller ones stay float32 like sgemmSerial's.
        let usesBFloat16 = attentionUsesBFloat16(precision: precision, queryRows: blockRows, keys: sk, headDim: dh)
        if !usesBFloat16 {
            return fusedAttention(query: query, key: key, value: value, heads: heads, scale: alpha, mask: mt,
                                  maskStrides: hasMask ? ms : nil, isKeyMask: isKeyMask)
        }
        let bf16 = usesBFloat16
            ? (q: BFloat16Operand(query), k: BFloat16Operand(key), v: BFloat16Operand(value)) : nil

        return query.withUnsafeBufferPointer { pq in
            key.withUnsafeBufferPointer { pk in
                value.withUnsafeBufferPointer { pv in
                    mt.withUnsafeBufferPointer { pm in
                        Tensor(uninitializedShape: [b, sq, width]) { po in
                            guard sq > 0, width > 0 else { return }
                            if sk == 0 { po.update(repeating: 0); return }
                            let run = { (taskRange: Range<Int>) in
                                let scores = BufferPool.allocate(Float.self, count: blockRows * sk)
                                let inverseSums = UnsafeMutablePointer<Float>.allocate(capacity: blockRows)
                                let p16 = bf16 == nil ? nil : BufferPool.allocate(UInt16.self, count: blockRows * sk)
                                defer {
                                    BufferPool.release(scores, count: blockRows * sk); inverseSums.deallocate()
                                    if let p16 { BufferPool.release(p16, count: blockRows * sk) }
                                }
                                if bf16 != nil { ck_dnnl_set_threads(1) }
                                for t in taskRange {
                                    let blk = t % blocksPerHead
                                    let h = (t / blocksPerHead) % heads
                                    let bi = t / (blocksPerHead * heads)
                                    let q0 = blk * blockRows
                                    let rows = min(blockRows, sq - q0)
                                    let qp = pq.baseAddress! + (bi * sq + q0) * width + h * dh
                                    let kp = pk.baseAddress! + bi * sk * width + h * dh
                                    let vp = pv.baseAddress! + bi * sk * width + h * dh
                                    let o16 = (bi * sq + q0) * width + h * dh, kv16 = bi * sk * width + h * dh
                                    // A product oneDNN refuses falls back to float32 (the operands are still here).
                                    if !(bf16.map { ck_dnnl_gemm(Int32(CK_DNNL_BF16), 0, 1, Int64(rows), Int64(sk), Int64(dh), alpha,
                                                                 $0.q.values + o16, Int64(width), $0.k.values + kv16, Int64(width),
                                                                 0, scores, Int64(sk)) == Int32(CK_DNNL_OK) } ?? false) {
                                        sgemmSerial(transposeA: false, transposeB: true, m: rows, n: sk, k: dh, alpha: alpha,
                                                    a: qp, lda: width, b: kp, ldb: width, beta: 0, c: scores, ldc: sk)
                                    }
                                    for r in 0..<rows {
                                        let row = scores + r * sk
                                        if hasMask {
                                            if isKeyMask {
                                                let mrow = pm.baseAddress! + bi * ms.b
                                                for j in 0..<sk where mrow[j] == 0 { row[j] = -.infinity }
                                            } else {
                                                let mrow = pm.baseAddress! + bi * ms.b + h * ms.h + (q0 + r) * ms.q
                                                for j in 0..<sk { row[j] += mrow[j] }
                                            }
                                        }
                                        // exp(s − max) only: the 1/Σ is applied to the Dh-wide rows of P·V
                                        // below instead of the Sk-wide rows of P (a fully masked row gives 0).
                                        inverseSums[r] = softmaxExpRowInPlace(row, sk)
                                        // The bf16 numerators, while the row is still in L1.
                                        if let p16 { ck_f32_to_bf16(row, p16 + r * sk, sk) }
                                    }
                                    let out = po.baseAddress! + (bi * sq + q0) * width + h * dh
                                    var done = false
                                    if let bf16, let p16 {
                                        done = ck_dnnl_gemm(Int32(CK_DNNL_BF16), 0, 0, Int64(rows), Int64(dh), Int64(sk), 1,
                                                            p16, Int64(sk), bf16.v.values + kv16, Int64(width),
                                                            0, out, Int64(width)) == Int32(CK_DNNL_OK)
                                    }
                                    if !done {
                                        sgemmSerial(transposeA: false, transposeB: false, m: rows, n: dh, k: sk, alpha: 1,
                                                    a: scores, lda: sk, b: vp, ldb: width, beta: 0, c: out, ldc: width)
                                    }
                                    for r in 0..<rows {
                                        let c = inverseSums[r], o = out + r * width
                                        for j in 0..<dh { o[j] *= c }
                                    }
                                }
                            }
                            if workers == 1 {
                                run(0..<tasks)
                            } else {
                                // Parallel over (batch, head, query block); each task's products are serial.
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
}

/// Query rows of one task of ``fusedAttention(query:key:value:heads:scale:mask:maskStrides:isKeyMask:)``: a tile
/// of the widest kernel (4 vectors of 16 lanes).
let fusedAttentionRows = 64

/// Float32 attention through the fused CKernels kernel (`ck_attention_f32`: scores, online softmax and
/// P·V block by block in a per-worker workspace), parallel over (batch, head, 64-query tile). Shapes and
/// the mask were validated by the caller; `maskStrides` (over batch, head, query) is nil without a mask.
private func fusedAttention(
    query: Tensor, key: Tensor, value: Tensor, heads: Int, scale: Float, mask: Tensor,
    maskStrides ms: (b: Int, h: Int, q: Int)?, isKeyMask: Bool
) -> Tensor {
    let (b, sq, width) = (query.shape[0], query.shape[1], query.shape[2])
    let sk = key.shape[1], dh = width / heads
    let tilesPerHead = (sq + fusedAttentionRows - 1) / fusedAttentionRows
    let tasks = b * heads * tilesPerHead
    let flops = 4 * Double(b) * Double(sq) * Double(sk) * Double(width)
    let workers = flops < Double(Parallelism.serialThreshold) * 8 ? 1 : max(1, min(Parallelism.threadCount, tasks))
    let workFloats = ck_attention_workspace_floats(dh)
    return query.withUnsafeBufferPointer { pq in
        key.withUnsafeBufferPointer { pk in
            value.withUnsafeBufferPointer { pv in
                mask.withUnsafeBufferPointer { pm in
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
                                if let ms {
                                    if isKeyMask {
                                        keyMask = UnsafePointer(pm.baseAddress! + bi * ms.b)
                                    } else {
                                        bias = UnsafePointer(pm.baseAddress! + bi * ms.b + h * ms.h + q0 * ms.q)
                                        biasStride = ms.q
                                    }
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
