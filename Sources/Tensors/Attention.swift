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

/// One operand of ``attention(query:key:value:width:heads:sequences:mask:scale:precision:)``: the columns
/// `column ..< column + width` of a `[B, S, C]` tensor — for example the key block of a stacked q/k/v
/// projection `[B, S, 3·W]`, read in place instead of split off into a copy.
public struct AttentionOperand: Sendable {
    /// `[B, S, C]`.
    public let tensor: Tensor
    /// The first column of the operand.
    public let column: Int

    /// The operand at `column` of `tensor` (0: the whole width, or the first block).
    public init(_ tensor: Tensor, column: Int = 0) {
        self.tensor = tensor
        self.column = column
    }
}

/// How the `S` rows of attention's operands form sequences.
public enum AttentionSequences: Sendable, Equatable {
    /// One sequence per batch element: rows `0 ..< S` in order.
    case contiguous
    /// `n` sequences per batch element, interleaved: element `e` of sequence `s` is row `e·n + s` — the
    /// temporal attention of a video DiT whose tokens are frame-major (`n` = tokens per frame), without
    /// transposing frames and tokens.
    case interleaved(Int)
}

/// Multi-head attention whose operands are column blocks of token-major tensors
/// (``AttentionOperand``), over sequences laid out as ``AttentionSequences`` — the same kernels and results
/// as ``attention(query:key:value:heads:mask:scale:precision:)``, without copying stacked projections apart
/// or regrouping interleaved sequences.
///
/// - Parameters:
///   - query: `width` columns of `[B, Sq, Cq]`.
///   - key: `width` columns of `[B, Sk, Ck]`.
///   - value: `width` columns of `[B, Sk, Cv]`.
///   - width: H·Dh.
///   - heads: H.
///   - sequences: how rows form sequences; `.interleaved(n)` needs Sq and Sk divisible by n and no mask.
///   - mask: as for ``attention(query:key:value:heads:mask:scale:precision:)``, over the rows as stored
///     (`[B, Sk]` or broadcastable to `[B, H, Sq, Sk]`).
///   - scale: score scale, `1/√Dh` by default.
///   - precision: the precision of the model's weights, as for
///     ``attention(query:key:value:heads:mask:scale:precision:)``.
/// - Returns: `[B, Sq, width]`, each output row where its query row is.
public func attention(
    query: AttentionOperand, key: AttentionOperand, value: AttentionOperand, width: Int, heads: Int,
    sequences: AttentionSequences = .contiguous, mask: AttentionMask? = nil, scale: Float? = nil,
    precision: WeightPrecision = .float32
) throws(TensorError) -> Tensor {
    try PhaseProfiler.measure(.attention) { () throws(TensorError) -> Tensor in
        let (qt, kt, vt) = (query.tensor, key.tensor, value.tensor)
        guard qt.rank == 3, kt.rank == 3, vt.rank == 3, kt.shape[0] == qt.shape[0], vt.shape[0] == qt.shape[0],
              kt.shape[1] == vt.shape[1] else {
            throw .shapeMismatch(operation: "attention", shapes: [qt.shape, kt.shape, vt.shape],
                                 reason: "expected query [B, Sq, Cq], key [B, Sk, Ck] and value [B, Sk, Cv]")
        }
        guard width > 0, heads > 0, width % heads == 0 else {
            throw .invalidArgument(operation: "attention", reason: "width \(width) is not a positive multiple of \(heads) heads")
        }
        for (name, o) in [("query", query), ("key", key), ("value", value)] where o.column < 0 || o.column + width > o.tensor.shape[2] {
            throw .invalidArgument(operation: "attention",
                                   reason: "the \(name) columns \(o.column)..<\(o.column + width) are outside its \(o.tensor.shape[2]) columns")
        }
        let n: Int
        switch sequences {
        case .contiguous: n = 1
        case .interleaved(let count):
            guard count >= 1, qt.shape[1] % count == 0, kt.shape[1] % count == 0 else {
                throw .invalidArgument(operation: "attention",
                                       reason: "\(count) interleaved sequences do not divide \(qt.shape[1]) queries and \(kt.shape[1]) keys")
            }
            guard mask == nil || count == 1 else {
                throw .invalidArgument(operation: "attention", reason: "a mask with interleaved sequences is not supported; regroup the sequences or leave the mask out")
            }
            n = count
        }
        let layout = AttentionLayout(query: query, key: key, value: value, width: width, heads: heads, sequences: n)
        let m = try layout.describe(mask)
        let dh = width / heads
        return fusedAttention(layout, scale: scale ?? 1 / Float(dh).squareRoot(), mask: m.tensor, maskStrides: m.strides,
                              isKeyMask: m.isKeyMask,
                              bfloat16: layout.keysPerSequence > Int(CK_ATTENTION_FEW_KEYS)
                                  && attentionUsesBFloat16(precision: precision, headDim: dh))
    }
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
    guard query.rank == 3, key.rank == 3, value.rank == 3, key.shape == value.shape,
          query.shape[0] == key.shape[0], query.shape[2] == key.shape[2] else {
        throw .shapeMismatch(operation: "attention", shapes: [query.shape, key.shape, value.shape],
                             reason: "expected query [B, Sq, H·Dh] and key/value [B, Sk, H·Dh]")
    }
    guard heads > 0, query.shape[2] % heads == 0 else {
        throw .invalidArgument(operation: "attention", reason: "width \(query.shape[2]) is not divisible by \(heads) heads")
    }
    return try attention(query: AttentionOperand(query), key: AttentionOperand(key), value: AttentionOperand(value),
                         width: query.shape[2], heads: heads, mask: mask, scale: scale, precision: precision)
}

/// The sizes and strides of one attention call: batch, sequences per batch element (`n`, interleaved),
/// queries and keys per sequence, and where each operand's columns are.
private struct AttentionLayout {
    let query: AttentionOperand, key: AttentionOperand, value: AttentionOperand
    let batch: Int, sequences: Int, width: Int, heads: Int
    /// Rows of the query and key tensors per batch element (all sequences).
    let queryRows: Int, keyRows: Int
    var queriesPerSequence: Int { queryRows / sequences }
    var keysPerSequence: Int { keyRows / sequences }

    init(query: AttentionOperand, key: AttentionOperand, value: AttentionOperand, width: Int, heads: Int, sequences: Int) {
        (self.query, self.key, self.value) = (query, key, value)
        batch = query.tensor.shape[0]
        queryRows = query.tensor.shape[1]
        keyRows = key.tensor.shape[1]
        self.width = width; self.heads = heads; self.sequences = sequences
    }

    /// The mask validated against `[B, H, Sq, Sk]` and described as (tensor, element strides over batch,
    /// head and query, whether it is a key mask).
    func describe(_ mask: AttentionMask?) throws(TensorError) -> (tensor: Tensor?, strides: (b: Int, h: Int, q: Int), isKeyMask: Bool) {
        let (b, sq, sk) = (batch, queryRows, keyRows)
        switch mask {
        case .none: return (nil, (0, 0, 0), false)
        case .keys(let m):
            guard m.shape == [b, sk] else {
                throw .shapeMismatch(operation: "attention", shapes: [query.tensor.shape, key.tensor.shape, m.shape],
                                     reason: "a key mask must be [B, Sk] = [\(b), \(sk)]")
            }
            return (m, (sk, 0, 0), true)
        case .additive(let m):
            var s = m.shape
            while s.count < 4 { s.insert(1, at: 0) }
            guard s.count == 4, s[3] == sk, s[0] == 1 || s[0] == b, s[1] == 1 || s[1] == heads,
                  s[2] == 1 || s[2] == sq else {
                throw .shapeMismatch(operation: "attention", shapes: [query.tensor.shape, key.tensor.shape, m.shape],
                                     reason: "an additive mask must broadcast to [B, H, Sq, Sk] = [\(b), \(heads), \(sq), \(sk)]")
            }
            return (m, (s[0] == 1 ? 0 : s[1] * s[2] * sk, s[1] == 1 ? 0 : s[2] * sk, s[2] == 1 ? 0 : sk), false)
        }
    }
}

/// Query rows of one attention task: one tile of the widest kernel (4 vectors of 16 lanes).
let fusedAttentionRows = 64

/// Attention through the fused CKernels kernels (`ck_attention_bf16` with `bfloat16` where it runs, else
/// `ck_attention_f32`: scores, online softmax and P·V block by block in a per-worker workspace), parallel
/// over (batch, sequence, head, 64-query tile). Shapes and the mask were validated by the caller;
/// `maskStrides` are the mask's element strides over batch, head and query (masks only with one sequence
/// per batch element).
private func fusedAttention(
    _ l: AttentionLayout, scale: Float, mask: Tensor?, maskStrides ms: (b: Int, h: Int, q: Int), isKeyMask: Bool,
    bfloat16: Bool
) -> Tensor {
    let (b, n, width, heads) = (l.batch, l.sequences, l.width, l.heads)
    let (sq, sk) = (l.queriesPerSequence, l.keysPerSequence)
    let dh = width / heads
    let (cq, ck, cv) = (l.query.tensor.shape[2], l.key.tensor.shape[2], l.value.tensor.shape[2])
    // bf16 operands: the query and key tensors rounded to bf16 rows (one conversion when both are the same
    // tensor, as for a stacked projection), the values as bf16 pairs of consecutive keys of a sequence.
    let q16 = bfloat16 ? BFloat16Operand(l.query.tensor) : nil
    let sameTensor = l.query.tensor.withUnsafeBufferPointer { q in l.key.tensor.withUnsafeBufferPointer { $0.baseAddress == q.baseAddress } }
    let k16 = bfloat16 ? (sameTensor ? q16 : BFloat16Operand(l.key.tensor)) : nil
    let v16 = bfloat16 ? BFloat16PairOperand(l.value, width: width, sequences: n) : nil
    let pairRows = (sk + 1) / 2
    let tilesPerHead = (sq + fusedAttentionRows - 1) / fusedAttentionRows
    let tasks = b * n * heads * tilesPerHead
    let flops = 4 * Double(b * n) * Double(sq) * Double(sk) * Double(width)
    let workers = flops < Double(Parallelism.serialThreshold) * 8 ? 1 : max(1, min(Parallelism.threadCount, tasks))
    let workFloats = ck_attention_workspace_floats(dh)
    return l.query.tensor.withUnsafeBufferPointer { pq in
        l.key.tensor.withUnsafeBufferPointer { pk in
            l.value.tensor.withUnsafeBufferPointer { pv in
                withOptionalPointer(mask) { pm in
                    Tensor(uninitializedShape: [b, l.queryRows, width]) { po in
                        guard sq > 0, width > 0 else { return }
                        if sk == 0 { po.update(repeating: 0); return }
                        let run = { (taskRange: Range<Int>) in
                            let work = BufferPool.allocate(Float.self, count: workFloats)
                            defer { BufferPool.release(work, count: workFloats) }
                            for t in taskRange {
                                let tile = t % tilesPerHead
                                let h = (t / tilesPerHead) % heads
                                let seq = (t / (tilesPerHead * heads)) % n
                                let bi = t / (tilesPerHead * heads * n)
                                let q0 = tile * fusedAttentionRows
                                let rows = min(fusedAttentionRows, sq - q0)
                                // Element e of sequence `seq` is row e·n + seq of its batch element.
                                let qRow = bi * l.queryRows + q0 * n + seq, kRow = bi * l.keyRows + seq
                                let qOffset = qRow * cq + l.query.column + h * dh
                                let kOffset = kRow * ck + l.key.column + h * dh
                                let vOffset = kRow * cv + l.value.column + h * dh
                                let oOffset = qRow * width + h * dh
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
                                   ck_attention_bf16(q16.values + qOffset, Int64(n * cq), k16.values + kOffset, Int64(n * ck),
                                                     v16.values + ((bi * n + seq) * pairRows) * width + h * dh, Int64(width),
                                                     po.baseAddress! + oOffset, Int64(n * width), rows, sk, dh, scale,
                                                     bias, Int64(biasStride), keyMask, work) != 0 {
                                    continue
                                }
                                ck_attention_f32(pq.baseAddress! + qOffset, Int64(n * cq), pk.baseAddress! + kOffset, Int64(n * ck),
                                                 pv.baseAddress! + vOffset, Int64(n * cv), po.baseAddress! + oOffset, Int64(n * width),
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

/// The values of attention's bf16 kernel: `width` columns (from `column`) of a `[B, S, C]` tensor as bf16
/// pairs of consecutive keys of each sequence (`ck_bf16_pairs`; the second zeros for an odd count):
/// `[B, n, ⌈S/(2n)⌉, width]` 32-bit values from ``BufferPool``, for `n` interleaved sequences (1: contiguous).
private final class BFloat16PairOperand: @unchecked Sendable {
    let values: UnsafeMutablePointer<UInt32>
    let count: Int

    init(_ operand: AttentionOperand, width: Int, sequences n: Int) {
        let t = operand.tensor
        let (b, s, c) = (t.shape[0], t.shape[1], t.shape[2])
        let perSequence = s / n, pairs = (perSequence + 1) / 2
        count = b * n * pairs * width
        values = BufferPool.allocate(UInt32.self, count: count)
        let out = values, column = operand.column
        t.withUnsafeBufferPointer { p in
            guard let base = p.baseAddress, count > 0 else { return }
            Parallelism.forEachChunk(b * n * pairs, costPerItem: 2 * width) { range in
                for r in range {
                    let (sequence, pr) = (r / pairs, r % pairs)
                    let (bi, seq) = (sequence / n, sequence % n)
                    // Keys 2·pr and 2·pr + 1 of the sequence: rows (2·pr)·n + seq and one n further.
                    let first = base + (bi * s + 2 * pr * n + seq) * c + column
                    ck_bf16_pairs(first, 2 * pr + 1 < perSequence ? first + n * c : nil, out + r * width, width)
                }
            }
        }
    }

    deinit { BufferPool.release(values, count: count) }
}
