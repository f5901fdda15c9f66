import CKernels

/// The normalisation of queries or keys before attention (`norm_q`, `norm_k` of a DiT attention).
public struct HeadNormalisation: Sendable {
    /// Which normalisation.
    public enum Kind: Sendable, Equatable {
        /// RMSNorm: `x / √(mean(x²) + eps) · weight`.
        case rms
        /// LayerNorm: `(x − mean) / √(var + eps) · weight + bias` (biased variance).
        case layer
    }

    /// RMSNorm or LayerNorm.
    public var kind: Kind
    /// Scale `[Dh]` (per head) or `[H·Dh]` (across heads), or nil.
    public var weight: Tensor?
    /// LayerNorm bias, shaped like `weight`, or nil.
    public var bias: Tensor?
    /// The variance epsilon.
    public var eps: Float
    /// Whether each head is normalised on its own (`weight` `[Dh]`) rather than the whole row of heads
    /// (`[H·Dh]`, e.g. Wan's and HiDream-I1's `norm_q` over the inner dimension).
    public var perHead: Bool

    /// A normalisation of queries or keys.
    ///
    /// - Parameters:
    ///   - kind: RMSNorm or LayerNorm.
    ///   - weight: scale `[Dh]` (per head) or `[H·Dh]` (across heads), or nil.
    ///   - bias: LayerNorm bias shaped like `weight`, or nil.
    ///   - eps: the variance epsilon.
    ///   - perHead: each head normalised on its own (true) or the whole row of heads.
    public init(_ kind: Kind, weight: Tensor?, bias: Tensor? = nil, eps: Float, perHead: Bool = true) {
        self.kind = kind
        self.weight = weight
        self.bias = bias
        self.eps = eps
        self.perHead = perHead
    }
}

/// Where one part of a joint sequence's queries, keys or values comes from: `width` columns of a
/// token-major tensor (for example the q block of a stacked q/k/v projection), with its own
/// normalisation.
public struct HeadSegment: Sendable {
    /// `[B, S, C]`.
    public var tensor: Tensor
    /// The first of the `width` columns read.
    public var column: Int
    /// The normalisation of this segment's rows, or nil.
    public var norm: HeadNormalisation?

    /// A segment of `tensor` starting at `column`, normalised by `norm` (nil: read as it is).
    ///
    /// - Parameters:
    ///   - tensor: `[B, S, C]`.
    ///   - column: the first column read.
    ///   - norm: the segment's normalisation, or nil.
    public init(_ tensor: Tensor, column: Int = 0, norm: HeadNormalisation? = nil) {
        self.tensor = tensor
        self.column = column
        self.norm = norm
    }
}

extension AttentionOperand {
    /// Values (or keys) for attention from segments: one segment without a normalisation is read in place
    /// (a column block of its tensor, nothing copied); otherwise the segments are normalised and joined
    /// along the sequence (``preparedHeads(_:width:heads:rope:rotatedFrom:)`` without a rotation).
    ///
    /// - Parameters:
    ///   - segments: one or more segments, `[B, Sᵢ, Cᵢ]` with the same B.
    ///   - width: H·Dh, the columns read from every segment.
    ///   - heads: H.
    /// - Throws: ``TensorError`` as ``preparedHeads(_:width:heads:rope:rotatedFrom:)`` does.
    public init(joining segments: [HeadSegment], width: Int, heads: Int) throws(TensorError) {
        if segments.count == 1, let only = segments.first, only.norm == nil {
            self.init(only.tensor, column: only.column)
        } else {
            self.init(try preparedHeads(segments, width: width, heads: heads))
        }
    }
}

/// Queries, keys or values ready for attention, made in one pass over every row: the `width` columns of
/// each segment (``HeadSegment``) normalised as it says, joined along the sequence (in every batch row the
/// first segment's tokens first, as `Tensor.concatenate(_:axis: 1)` would), then rotary-embedded.
///
/// The results are bit-identical to slicing the columns apart, applying ``rmsNorm(_:weight:eps:)`` or
/// ``layerNorm(_:weight:bias:eps:)`` (per head or on the whole row), concatenating the segments and applying
/// ``RotaryEmbedding/apply(_:cos:sin:heads:layout:)`` — without the four intermediate tensors: each row is
/// normalised and rotated while it is in the cache.
///
/// - Parameters:
///   - segments: one or more segments with equal batch sizes.
///   - width: H·Dh, the columns read from every segment.
///   - heads: H (Dh = width / H; even when `rope` is given).
///   - rope: rotary tables `[ΣS − rotatedFrom, Dh]` and their pair layout, or nil.
///   - rotatedFrom: the first row of the joined sequence that is rotated (by table row `t − rotatedFrom`);
///     the rows before it (e.g. CogVideoX's text tokens) are not.
/// - Returns: `[B, ΣS, width]`.
/// - Throws: ``TensorError`` when there is no segment, `width` is not a multiple of `heads`, a segment is
///   not rank 3, its columns exceed it, batch sizes differ, a normalisation's parameters are not `[Dh]`
///   (per head) or `[width]`, `rotatedFrom` is outside `0...ΣS`, or the tables are not
///   `[ΣS − rotatedFrom, Dh]` with Dh even.
public func preparedHeads(
    _ segments: [HeadSegment], width: Int, heads: Int,
    rope: (cos: Tensor, sin: Tensor, layout: RotaryEmbedding.Layout)? = nil, rotatedFrom: Int = 0
) throws(TensorError) -> Tensor {
    let op = "preparedHeads"
    guard let first = segments.first else { throw .invalidArgument(operation: op, reason: "needs at least one segment") }
    guard heads > 0, width >= 0, width % heads == 0 else {
        throw .invalidArgument(operation: op, reason: "width \(width) must be a multiple of heads \(heads) > 0")
    }
    let dh = width / heads
    let batch = first.tensor.rank == 3 ? first.tensor.shape[0] : -1
    var offsets: [Int] = []
    var total = 0
    for s in segments {
        let t = s.tensor
        guard t.rank == 3, t.shape[0] == batch else {
            throw .shapeMismatch(operation: op, shapes: segments.map(\.tensor.shape),
                                 reason: "segments must be [B, S, C] with the same B")
        }
        guard s.column >= 0, s.column + width <= t.shape[2] else {
            throw .invalidArgument(operation: op, reason: "columns \(s.column)..<\(s.column + width) exceed the \(t.shape[2]) of \(t.shape)")
        }
        if let n = s.norm {
            let expected = n.perHead ? [dh] : [width]
            for p in [n.weight, n.bias].compactMap({ $0 }) where p.shape != expected {
                throw .shapeMismatch(operation: op, shapes: [t.shape, p.shape],
                                     reason: "normalisation parameters must be \(expected) (\(n.perHead ? "per head" : "across heads"))")
            }
        }
        offsets.append(total)
        total += t.shape[1]
    }
    guard (0...total).contains(rotatedFrom) else {
        throw .invalidArgument(operation: op, reason: "rotatedFrom \(rotatedFrom) is outside 0...\(total)")
    }
    if let rope {
        let rotated = total - rotatedFrom
        guard rope.cos.shape == [rotated, dh], rope.sin.shape == [rotated, dh], dh % 2 == 0 else {
            throw .shapeMismatch(operation: op, shapes: [rope.cos.shape, rope.sin.shape],
                                 reason: "rotary tables must be [ΣS − rotatedFrom, Dh] = [\(rotated), \(dh)] with Dh even")
        }
    }
    let split: Int32 = rope?.layout == .splitHalves ? 1 : 0
    // Every operand as a raw pointer for the row loop (no reference counting per row: with two workers
    // the shared counts of the segment tensors bounced between cores).
    var operands: [Tensor] = []
    func slot(_ t: Tensor?) -> Int {
        guard let t else { return -1 }
        operands.append(t)
        return operands.count - 1
    }
    let plans = segments.enumerated().map { i, s in
        RowPlan(source: slot(s.tensor), rows: s.tensor.shape[1], stride: s.tensor.shape[2], column: s.column,
                offset: offsets[i], mode: s.norm.map { $0.kind == .rms ? CK_NORM_RMS : CK_NORM_LAYER },
                eps: s.norm?.eps ?? 0, perHead: s.norm?.perHead ?? true, weight: slot(s.norm?.weight),
                bias: slot(s.norm?.bias))
    }
    let (cosSlot, sinSlot) = (slot(rope?.cos), slot(rope?.sin))
    return withBaseAddresses(operands) { base in
        Tensor(uninitializedShape: [batch, total, width]) { out in
            guard width > 0 else { return }
            Parallelism.forEachChunk(batch * total, costPerItem: 6 * width) { rows in
                for r in rows {
                    let (b, t) = (r / total, r % total)
                    var i = plans.count - 1
                    while plans[i].offset > t { i -= 1 }
                    let plan = plans[i]
                    let dst = out.baseAddress! + r * width
                    let src = base[plan.source]! + (b * plan.rows + t - plan.offset) * plan.stride + plan.column
                    if let mode = plan.mode {
                        let (w, bias) = (plan.weight < 0 ? nil : base[plan.weight], plan.bias < 0 ? nil : base[plan.bias])
                        if plan.perHead {
                            ck_norm_rows(src, Int64(dh), dst, Int64(dh), heads, dh, mode, plan.eps, w, bias, nil, nil)
                        } else {
                            ck_norm_rows(src, Int64(width), dst, Int64(width), 1, width, mode, plan.eps, w, bias, nil, nil)
                        }
                    } else {
                        dst.update(from: src, count: width)
                    }
                    if cosSlot >= 0, t >= rotatedFrom {
                        let row = (t - rotatedFrom) * dh
                        ck_rope_row(dst, dst, heads, dh, base[cosSlot]! + row, base[sinSlot]! + row, split)
                    }
                }
            }
        }
    }
}

/// What the row loop of ``preparedHeads(_:width:heads:rope:rotatedFrom:)`` needs of one segment: indices into the
/// operand pointers (−1: none) and plain sizes.
private struct RowPlan {
    var source: Int, rows: Int, stride: Int, column: Int, offset: Int
    var mode: Int32?, eps: Float, perHead: Bool, weight: Int, bias: Int
}

/// `body` with the base address of every tensor (nil for an empty one), all valid for the call.
private func withBaseAddresses<R>(_ tensors: [Tensor], _ body: ([UnsafePointer<Float>?]) -> R) -> R {
    func nest(_ i: Int, _ acc: [UnsafePointer<Float>?]) -> R {
        if i == tensors.count { return body(acc) }
        return tensors[i].withUnsafeBufferPointer { nest(i + 1, acc + [$0.baseAddress]) }
    }
    return nest(0, [])
}
