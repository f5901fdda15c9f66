/// Shape manipulation: reshape (a view), permute, slice, concatenate, split and chunk.
extension Tensor {
    /// Returns a view with a new shape and the same scalars. One dimension may be `-1`, inferred.
    public func reshaped(_ newShape: [Int]) throws(TensorError) -> Tensor {
        var shape = newShape
        let inferred = shape.indices.filter { shape[$0] == -1 }
        guard inferred.count <= 1 else {
            throw .invalidArgument(operation: "reshape", reason: "at most one dimension may be -1, got \(newShape)")
        }
        if let i = inferred.first {
            var known = shape
            known[i] = 1
            let rest = try Tensor.elementCount(of: known)
            guard rest > 0, count % rest == 0 else {
                throw .shapeMismatch(operation: "reshape", shapes: [self.shape, newShape],
                                     reason: "\(count) scalars cannot be split that way")
            }
            shape[i] = count / rest
        }
        let n = try Tensor.elementCount(of: shape)
        guard n == count else {
            throw .shapeMismatch(operation: "reshape", shapes: [self.shape, newShape],
                                 reason: "element counts differ (\(count) vs \(n))")
        }
        return Tensor(storage: storage, offset: offset, shape: shape, count: n)
    }

    /// Returns a copy with the axes reordered: result axis `i` is source axis `axes[i]`.
    public func permuted(_ axes: [Int]) throws(TensorError) -> Tensor {
        try PhaseProfiler.measure(.copies) { () throws(TensorError) -> Tensor in
            guard axes.count == rank, Set(axes) == Set(0..<rank) else {
                throw .invalidArgument(operation: "permute", reason: "\(axes) is not a permutation of 0..<\(rank)")
            }
            if axes == Array(0..<rank) { return self }
            let srcStrides = strides
            let outShape = axes.map { shape[$0] }
            let permStrides = axes.map { srcStrides[$0] }
            let r = rank
            let inner = outShape[r - 1]
            let innerStride = permStrides[r - 1]
            let outer = count / max(inner, 1)
            return withUnsafeBufferPointer { src in
                Tensor(uninitializedShape: outShape) { dst in
                    guard inner > 0 else { return }
                    Parallelism.forEachChunk(outer, costPerItem: inner) { rows in
                        var idx = [Int](repeating: 0, count: max(r - 1, 0))
                        // Decompose the first row index.
                        var rem = rows.lowerBound
                        for a in stride(from: r - 2, through: 0, by: -1) {
                            idx[a] = rem % outShape[a]
                            rem /= outShape[a]
                        }
                        for row in rows {
                            var base = 0
                            for a in 0..<(r - 1) { base += idx[a] * permStrides[a] }
                            let d = dst.baseAddress! + row * inner
                            let s = src.baseAddress! + base
                            if innerStride == 1 {
                                d.update(from: s, count: inner)
                            } else {
                                for j in 0..<inner { d[j] = s[j * innerStride] }
                            }
                            var a = r - 2
                            while a >= 0 {
                                idx[a] += 1
                                if idx[a] < outShape[a] { break }
                                idx[a] = 0
                                a -= 1
                            }
                        }
                    }
                }
            }
        }
    }

    /// Swaps two axes (a copy unless they are equal).
    public func transposed(_ a: Int, _ b: Int) throws(TensorError) -> Tensor {
        let a = try normalizedAxis(a, operation: "transpose")
        let b = try normalizedAxis(b, operation: "transpose")
        var axes = Array(0..<rank)
        axes.swapAt(a, b)
        return try permuted(axes)
    }

    /// The elements `range` along `axis`. Along the leading axis (or when all outer extents are 1)
    /// this is a view sharing storage; otherwise a copy.
    public func slice(axis: Int, _ range: Range<Int>) throws(TensorError) -> Tensor {
        let ax = try normalizedAxis(axis, operation: "slice")
        guard range.lowerBound >= 0, range.upperBound <= shape[ax] else {
            throw .invalidArgument(operation: "slice",
                                   reason: "range \(range) is outside 0..<\(shape[ax]) on axis \(ax) of shape \(shape)")
        }
        var outShape = shape
        outShape[ax] = range.count
        let inner = shape[(ax + 1)...].reduce(1, *)
        let outer = shape[..<ax].reduce(1, *)
        if outer == 1 {
            return Tensor(storage: storage, offset: offset + range.lowerBound * inner,
                          shape: outShape, count: range.count * inner)
        }
        let srcRow = shape[ax] * inner
        let dstRow = range.count * inner
        return withUnsafeBufferPointer { src in
            Tensor(uninitializedShape: outShape) { dst in
                guard dstRow > 0 else { return }
                Parallelism.forEachChunk(outer, costPerItem: dstRow) { rows in
                    for o in rows {
                        (dst.baseAddress! + o * dstRow).update(
                            from: src.baseAddress! + o * srcRow + range.lowerBound * inner, count: dstRow)
                    }
                }
            }
        }
    }

    /// Joins tensors along `axis`; all other extents must agree.
    public static func concatenate(_ tensors: [Tensor], axis: Int) throws(TensorError) -> Tensor {
        try PhaseProfiler.measure(.copies) { () throws(TensorError) -> Tensor in
            guard let first = tensors.first else {
                throw .invalidArgument(operation: "concatenate", reason: "needs at least one tensor")
            }
            let ax = try first.normalizedAxis(axis, operation: "concatenate")
            for t in tensors {
                guard t.rank == first.rank,
                      zip(t.shape, first.shape).enumerated().allSatisfy({ $0.offset == ax || $0.element.0 == $0.element.1 })
                else {
                    throw .shapeMismatch(operation: "concatenate", shapes: tensors.map(\.shape),
                                         reason: "all extents except axis \(ax) must agree")
                }
            }
            var outShape = first.shape
            outShape[ax] = tensors.reduce(0) { $0 + $1.shape[ax] }
            let inner = first.shape[(ax + 1)...].reduce(1, *)
            let outer = first.shape[..<ax].reduce(1, *)
            let dstRow = outShape[ax] * inner
            return Tensor(uninitializedShape: outShape) { dst in
                var col = 0
                for t in tensors {
                    let w = t.shape[ax] * inner
                    t.withUnsafeBufferPointer { src in
                        guard w > 0 else { return }
                        let c = col
                        Parallelism.forEachChunk(outer, costPerItem: w) { rows in
                            for o in rows {
                                (dst.baseAddress! + o * dstRow + c).update(from: src.baseAddress! + o * w, count: w)
                            }
                        }
                    }
                    col += w
                }
            }
        }
    }

    /// The rows `indices` of axis 0, in that order (a batch selection; indices may repeat).
    /// - Throws: ``TensorError/invalidArgument(operation:reason:)`` for an empty selection, a rank-0
    ///   tensor, or an index outside `0 ..< shape[0]`.
    public func gatheringRows(_ indices: [Int]) throws(TensorError) -> Tensor {
        try PhaseProfiler.measure(.copies) { () throws(TensorError) -> Tensor in
            let extent = rank >= 1 ? shape[0] : 0
            guard rank >= 1, !indices.isEmpty else {
                throw .invalidArgument(operation: "row gather", reason: "needs a non-empty selection of a tensor of rank ≥ 1 (shape \(shape))")
            }
            if let bad = indices.first(where: { !(0..<extent).contains($0) }) {
                throw .invalidArgument(operation: "row gather", reason: "index \(bad) is outside 0..<\(extent) (shape \(shape))")
            }
            var outShape = shape
            outShape[0] = indices.count
            let rowSize = count / extent
            return withUnsafeBufferPointer { src in
                Tensor(uninitializedShape: outShape) { dst in
                    guard rowSize > 0 else { return }
                    indices.withUnsafeBufferPointer { picked in
                        Parallelism.forEachChunk(picked.count, costPerItem: rowSize) { part in
                            for j in part {
                                (dst.baseAddress! + j * rowSize).update(from: src.baseAddress! + picked[j] * rowSize, count: rowSize)
                            }
                        }
                    }
                }
            }
        }
    }

    /// Splits along `axis` into pieces of the given sizes (which must add up to the extent).
    public func split(sizes: [Int], axis: Int) throws(TensorError) -> [Tensor] {
        try PhaseProfiler.measure(.copies) { () throws(TensorError) -> [Tensor] in
            let ax = try normalizedAxis(axis, operation: "split")
            guard sizes.allSatisfy({ $0 >= 0 }), sizes.reduce(0, +) == shape[ax] else {
                throw .invalidArgument(operation: "split",
                                       reason: "sizes \(sizes) do not add up to \(shape[ax]) (axis \(ax) of \(shape))")
            }
            var out: [Tensor] = []
            var start = 0
            for s in sizes {
                out.append(try slice(axis: ax, start..<(start + s)))
                start += s
            }
            return out
        }
    }

    /// Splits along `axis` into `n` equal pieces (like `torch.chunk` with a divisible extent).
    public func chunked(_ n: Int, axis: Int) throws(TensorError) -> [Tensor] {
        let ax = try normalizedAxis(axis, operation: "chunk")
        guard n > 0, shape[ax] % n == 0 else {
            throw .invalidArgument(operation: "chunk", reason: "extent \(shape[ax]) of axis \(ax) is not divisible by \(n)")
        }
        return try split(sizes: Array(repeating: shape[ax] / n, count: n), axis: ax)
    }

    /// Inserts an axis of extent 1 at `axis` (a view).
    public func unsqueezed(_ axis: Int) throws(TensorError) -> Tensor {
        let a = axis < 0 ? axis + rank + 1 : axis
        guard a >= 0 && a <= rank else { throw .axisOutOfRange(operation: "unsqueeze", axis: axis, rank: rank + 1) }
        var s = shape
        s.insert(1, at: a)
        return try reshaped(s)
    }

    /// Returns a contiguous copy that owns its storage (useful before handing a view to C code
    /// that keeps the pointer).
    public func copy() -> Tensor {
        var t = self
        t.storage = TensorStorage(uninitializedCapacity: count)
        t.offset = 0
        if count > 0 { t.storage.pointer.initialize(from: storage.pointer + offset, count: count) }
        return t
    }
}
