import Tensors

/// The fused element-wise passes of a CogVideoX block over its joint `[text; video]` sequence
/// `[B, L + S, D]`: the text rows of each sample take the `enc_*` modulation, the video rows the other.
///
/// Each reads its rows once (the unfused form builds the normalised copy, the modulated copy and, for
/// q/k, the split, the head norm and the rotation as separate tensors).
enum CogVideoXKernels {
    /// Where the per-sample `[B, k·D]` modulation holds each parameter: chunk indices of width D.
    struct Chunks {
        var shift: Int
        var scale: Int
    }

    /// `LN(x)·(1 + scale) + shift` per row, `LN` a LayerNorm over D with optional affine `weight`/`bias`;
    /// rows `0 ..< textLength` of each sample use the `text` chunks of `modulation`, the others `video`.
    static func layerNormModulated(
        _ x: Tensor, textLength l: Int, eps: Float, weight: Tensor?, bias: Tensor?,
        modulation m: Tensor, text: Chunks, video: Chunks
    ) throws(TensorError) -> Tensor {
        guard x.rank == 3, m.rank == 2, m.shape[0] == x.shape[0], x.shape[2] > 0, m.shape[1] % x.shape[2] == 0,
              (0...x.shape[1]).contains(l) else {
            throw .shapeMismatch(operation: "CogVideoX modulated norm", shapes: [x.shape, m.shape],
                                 reason: "x must be [B, T, D] and the modulation [B, k·D]")
        }
        let (b, t, d) = (x.shape[0], x.shape[1], x.shape[2])
        let k = m.shape[1] / d
        guard [text.shift, text.scale, video.shift, video.scale].allSatisfy({ (0..<k).contains($0) }),
              weight.map({ $0.shape == [d] }) ?? true, bias.map({ $0.shape == [d] }) ?? true else {
            throw .invalidArgument(operation: "CogVideoX modulated norm", reason: "chunk index or affine shape out of range")
        }
        let w = weight ?? Tensor(scalar: 1), bi = bias ?? Tensor(scalar: 0)
        let affine = (weight != nil, bias != nil)
        return x.withUnsafeBufferPointer { px in
            m.withUnsafeBufferPointer { pm in
                w.withUnsafeBufferPointer { pw in
                    bi.withUnsafeBufferPointer { pb in
                        Tensor(uninitializedShape: x.shape) { out in
                            Parallelism.forEachChunk(b * t, costPerItem: 6 * d) { rows in
                                for r in rows {
                                    let s = r / t, chunks = r % t < l ? text : video
                                    let xi = px.baseAddress! + r * d, o = out.baseAddress! + r * d
                                    let shift = pm.baseAddress! + (s * k + chunks.shift) * d
                                    let scale = pm.baseAddress! + (s * k + chunks.scale) * d
                                    let (mean, inv) = statistics(xi, d, eps)
                                    for j in 0..<d {
                                        var y = (xi[j] - mean) * inv
                                        if affine.0 { y = y * pw[j] }
                                        if affine.1 { y = y + pb[j] }
                                        o[j] = y * (1 + scale[j]) + shift[j]
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// `x += gate · y` in place, the gate chunk `text` of `modulation` for the text rows and `video` for
    /// the video rows of each sample (diffusers multiplies first, then adds).
    static func addGated(
        _ x: inout Tensor, _ y: Tensor, textLength l: Int, modulation m: Tensor, textGate: Int, videoGate: Int
    ) throws(TensorError) {
        guard x.rank == 3, y.shape == x.shape, m.rank == 2, m.shape[0] == x.shape[0], x.shape[2] > 0,
              m.shape[1] % x.shape[2] == 0, (0..<(m.shape[1] / x.shape[2])).contains(textGate),
              (0..<(m.shape[1] / x.shape[2])).contains(videoGate), (0...x.shape[1]).contains(l) else {
            throw .shapeMismatch(operation: "CogVideoX gated residual", shapes: [x.shape, y.shape, m.shape],
                                 reason: "x and y must be [B, T, D] and the modulation [B, k·D]")
        }
        let (b, t, d) = (x.shape[0], x.shape[1], x.shape[2])
        let k = m.shape[1] / d
        y.withUnsafeBufferPointer { py in
            m.withUnsafeBufferPointer { pm in
                x.withUnsafeMutableBufferPointer { px in
                    Parallelism.forEachChunk(b * t, costPerItem: 2 * d) { rows in
                        for r in rows {
                            let s = r / t
                            let g = pm.baseAddress! + (s * k + (r % t < l ? textGate : videoGate)) * d
                            let xi = px.baseAddress! + r * d, yi = py.baseAddress! + r * d
                            for j in 0..<d { xi[j] = xi[j] + g[j] * yi[j] }
                        }
                    }
                }
            }
        }
    }

    /// Splits the fused projection `[B, T, 3·H·Dh]` into q, k, v `[B, T, H·Dh]`; q and k get the per-head
    /// LayerNorm (`weight`, `bias` `[Dh]`) and, for rows `t ≥ textLength`, the interleaved rotation by
    /// row `t − textLength` of the video tables `[T − textLength, Dh]`.
    static func splitQKV(
        _ p: Tensor, heads: Int, textLength l: Int, normQ: (weight: Tensor, bias: Tensor),
        normK: (weight: Tensor, bias: Tensor), eps: Float, rope: (cos: Tensor, sin: Tensor)?
    ) throws(TensorError) -> (q: Tensor, k: Tensor, v: Tensor) {
        guard p.rank == 3, heads > 0, p.shape[2] % (3 * heads) == 0, (0...p.shape[1]).contains(l) else {
            throw .shapeMismatch(operation: "CogVideoX q/k/v", shapes: [p.shape], reason: "expected [B, T, 3·H·Dh]")
        }
        let (b, t) = (p.shape[0], p.shape[1])
        let width = p.shape[2] / 3, dh = width / heads
        for n in [normQ.weight, normQ.bias, normK.weight, normK.bias] where n.shape != [dh] {
            throw .shapeMismatch(operation: "CogVideoX q/k norm", shapes: [n.shape], reason: "expected [\(dh)]")
        }
        if let rope, rope.cos.shape != [t - l, dh] || rope.sin.shape != [t - l, dh] || dh % 2 != 0 {
            throw .shapeMismatch(operation: "CogVideoX rotary", shapes: [rope.cos.shape, rope.sin.shape],
                                 reason: "tables must be [video tokens = \(t - l), head dim = \(dh)]")
        }
        let cosT = rope?.cos ?? Tensor(scalar: 1), sinT = rope?.sin ?? Tensor(scalar: 0)
        let hasRope = rope != nil
        var q = try Tensor(zeros: [b, t, width]), k = try Tensor(zeros: [b, t, width]), v = try Tensor(zeros: [b, t, width])
        p.withUnsafeBufferPointer { pp in
            cosT.withUnsafeBufferPointer { pc in
                sinT.withUnsafeBufferPointer { ps in
                    normQ.weight.withUnsafeBufferPointer { qw in
                        normQ.bias.withUnsafeBufferPointer { qb in
                            normK.weight.withUnsafeBufferPointer { kw in
                                normK.bias.withUnsafeBufferPointer { kb in
                                    q.withUnsafeMutableBufferPointer { pq in
                                        k.withUnsafeMutableBufferPointer { pk in
                                            v.withUnsafeMutableBufferPointer { pv in
                                                let targets = [(pq.baseAddress!, qw.baseAddress!, qb.baseAddress!, 0),
                                                               (pk.baseAddress!, kw.baseAddress!, kb.baseAddress!, width)]
                                                Parallelism.forEachChunk(b * t, costPerItem: 12 * width) { rows in
                                                    let y = UnsafeMutablePointer<Float>.allocate(capacity: dh)
                                                    defer { y.deallocate() }
                                                    for r in rows {
                                                        let src = pp.baseAddress! + r * 3 * width
                                                        (pv.baseAddress! + r * width).update(from: src + 2 * width, count: width)
                                                        let tok = r % t
                                                        let rotate = hasRope && tok >= l
                                                        let c = pc.baseAddress! + (rotate ? (tok - l) * dh : 0)
                                                        let s = ps.baseAddress! + (rotate ? (tok - l) * dh : 0)
                                                        for (dst, w, bias, offset) in targets {
                                                            for h in 0..<heads {
                                                                let x = src + offset + h * dh, o = dst + r * width + h * dh
                                                                let (mean, inv) = statistics(x, dh, eps)
                                                                for j in 0..<dh { y[j] = ((x[j] - mean) * inv) * w[j] + bias[j] }
                                                                if rotate {
                                                                    var j = 0
                                                                    while j < dh {
                                                                        o[j] = y[j] * c[j] - y[j + 1] * s[j]
                                                                        o[j + 1] = y[j + 1] * c[j + 1] + y[j] * s[j + 1]
                                                                        j += 2
                                                                    }
                                                                } else {
                                                                    o.update(from: y, count: dh)
                                                                }
                                                            }
                                                        }
                                                    }
                                                }
                                            }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        return (q, k, v)
    }

    /// Mean and `1/√(var + eps)` of a row (biased variance, as `nn.LayerNorm`), with 16-lane sums.
    @inline(__always)
    static func statistics(_ p: UnsafePointer<Float>, _ n: Int, _ eps: Float) -> (mean: Float, inv: Float) {
        var acc = SIMD16<Float>(repeating: 0)
        var i = 0
        while i + 16 <= n { acc += UnsafeRawPointer(p + i).loadUnaligned(as: SIMD16<Float>.self); i += 16 }
        var sum = acc.sum()
        while i < n { sum += p[i]; i += 1 }
        let mean = sum / Float(n)
        var sq = SIMD16<Float>(repeating: 0)
        let vm = SIMD16<Float>(repeating: mean)
        i = 0
        while i + 16 <= n {
            let v = UnsafeRawPointer(p + i).loadUnaligned(as: SIMD16<Float>.self) - vm
            sq += v * v
            i += 16
        }
        var total = sq.sum()
        while i < n { let v = p[i] - mean; total += v * v; i += 1 }
        return (mean, 1 / (total / Float(n) + eps).squareRoot())
    }
}
