import Tensors

/// Fused element-wise passes of the LTX-Video blocks, so each row is read once: the gated residual
/// update, and the q/k RMS norm (with the rotary embedding in self-attention) read straight from the
/// stacked projection output.
enum LTXVideoKernels {
    /// Column block `part` (of `parts` equal blocks of width D) of `p` `[B, S, parts·D]`, RMS-normalised
    /// over its D values with the learned `weight` (`torch.nn.RMSNorm`: `x · rsqrt(mean(x²) + ε) · w`),
    /// then rotated pairwise by `rotary` when given (`(a, b) → (a·c − b·s, b·c + a·s)`). Returns
    /// `[B, S, D]`.
    static func normalizedColumns(
        _ p: Tensor, part: Int, parts: Int, weight: Tensor, eps: Float, rotary: LTXVideoRotaryTables?
    ) throws(TensorError) -> Tensor {
        guard p.rank == 3, parts > 0, p.shape[2] % parts == 0, (0..<parts).contains(part) else {
            throw .shapeMismatch(operation: "LTX q/k norm", shapes: [p.shape], reason: "expected [B, S, \(parts)·D]")
        }
        let (b, s, w) = (p.shape[0], p.shape[1], p.shape[2])
        let d = w / parts
        guard weight.shape == [d] else {
            throw .shapeMismatch(operation: "LTX q/k norm", shapes: [p.shape, weight.shape], reason: "weight must be [\(d)]")
        }
        if let rotary {
            let c = rotary.cos.shape
            guard c.count == 3, c[0] == 1 || c[0] == b, c[1] == s, c[2] == d, d % 2 == 0 else {
                throw .shapeMismatch(operation: "LTX q/k norm", shapes: [p.shape, c],
                                     reason: "rotary tables must be [1 or B, S, D] with D even")
            }
        }
        let sharedTables = (rotary?.cos.shape[0] ?? 1) == 1
        let cosT = rotary?.cos ?? weight, sinT = rotary?.sin ?? weight
        let rotate = rotary != nil
        return p.withUnsafeBufferPointer { pp in
            weight.withUnsafeBufferPointer { pw in
                cosT.withUnsafeBufferPointer { pc in
                    sinT.withUnsafeBufferPointer { ps in
                        Tensor(uninitializedShape: [b, s, d]) { out in
                            Parallelism.forEachChunk(b * s, costPerItem: 6 * d) { rows in
                                for r in rows {
                                    let x = pp.baseAddress! + r * w + part * d, o = out.baseAddress! + r * d
                                    let inv = RowReductions.inverseRMS(x, d, eps: eps)
                                    let wt = pw.baseAddress!
                                    if rotate {
                                        let t = (sharedTables ? r % s : r) * d
                                        let c = pc.baseAddress! + t, sn = ps.baseAddress! + t
                                        var j = 0
                                        while j < d {
                                            let a = (x[j] * inv) * wt[j], bb = (x[j + 1] * inv) * wt[j + 1]
                                            o[j] = a * c[j] - bb * sn[j]
                                            o[j + 1] = bb * c[j + 1] + a * sn[j + 1]
                                            j += 2
                                        }
                                    } else {
                                        for j in 0..<d { o[j] = (x[j] * inv) * wt[j] }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// Column block `part` of `p` `[B, S, parts·D]` as a contiguous `[B, S, D]` tensor.
    static func columns(_ p: Tensor, part: Int, parts: Int) -> Tensor {
        let (b, s, w) = (p.shape[0], p.shape[1], p.shape[2])
        let d = w / parts
        return p.withUnsafeBufferPointer { pp in
            Tensor(uninitializedShape: [b, s, d]) { out in
                Parallelism.forEachChunk(b * s, costPerItem: d) { rows in
                    for r in rows {
                        (out.baseAddress! + r * d).update(from: pp.baseAddress! + r * w + part * d, count: d)
                    }
                }
            }
        }
    }

}
