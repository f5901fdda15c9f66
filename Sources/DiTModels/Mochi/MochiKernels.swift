import Tensors

/// `h + RMSNorm(x) · tanh(gate)` in one pass over the rows (diffusers' `h + norm2(x, tanh(gate)[:, None])`
/// with `MochiModulatedRMSNorm`: no weight, ε = 1e-6), `gate` `[B, D]` per sample.
///
/// The product is formed as diffusers orders it: `(x · rsqrt(mean(x²) + ε)) · tanh(gate)`, then added.
func mochiGatedRMSResidual(_ h: Tensor, _ x: Tensor, gate: Tensor) throws(TensorError) -> Tensor {
    guard h.rank == 3, x.shape == h.shape, gate.shape == [h.shape[0], h.shape[2]] else {
        throw .shapeMismatch(operation: "Mochi gated residual", shapes: [h.shape, x.shape, gate.shape],
                             reason: "expected h, x [B, S, D] and gate [B, D]")
    }
    let (b, s, d) = (h.shape[0], h.shape[1], h.shape[2])
    let g = tanh(gate)
    let eps = MochiConfiguration.blockEps
    return h.withUnsafeBufferPointer { ph in
        x.withUnsafeBufferPointer { px in
            g.withUnsafeBufferPointer { pg in
                Tensor(uninitializedShape: h.shape) { out in
                    Parallelism.forEachChunk(b * s, costPerItem: 5 * d) { rows in
                        for r in rows {
                            let xi = px.baseAddress! + r * d, hi = ph.baseAddress! + r * d
                            let gi = pg.baseAddress! + (r / max(s, 1)) * d, o = out.baseAddress! + r * d
                            let inv = RowReductions.inverseRMS(xi, d, eps: eps)
                            for j in 0..<d { o[j] = hi[j] + (xi[j] * inv) * gi[j] }
                        }
                    }
                }
            }
        }
    }
}

/// The visual stream's fused `[q | k | v]` projection `[B, S, 3·H·Dh]` split in one pass into q and k —
/// each head RMS-normalised (learned scale `[Dh]`, ε = 1e-5) and rotated by the tables `[S, H·Dh]`
/// (interleaved pairs: `(a·cos − b·sin, b·cos + a·sin)`) — and a copy of v.
///
/// The same arithmetic as `rmsNorm` per head followed by ``RotaryEmbedding/apply(_:cos:sin:heads:layout:)``
/// with one table row per token, without the five intermediate tensors.
func mochiNormRotateSplit(
    _ qkv: Tensor, heads: Int, headDim dh: Int, normQ: Tensor, normK: Tensor, cos: Tensor, sin: Tensor
) throws(TensorError) -> (q: Tensor, k: Tensor, v: Tensor) {
    let d = heads * dh
    guard qkv.rank == 3, qkv.shape[2] == 3 * d, dh % 2 == 0, normQ.shape == [dh], normK.shape == [dh],
          cos.shape == [qkv.shape[1], d], sin.shape == cos.shape else {
        throw .shapeMismatch(operation: "Mochi q/k norm and rotary", shapes: [qkv.shape, normQ.shape, cos.shape, sin.shape],
                             reason: "expected [B, S, 3·H·Dh], norms [Dh] and tables [S, H·Dh] with Dh even")
    }
    let (b, s) = (qkv.shape[0], qkv.shape[1])
    let eps = MochiConfiguration.qkEps
    let shape = [b, s, d]
    var q = try Tensor(zeros: shape), k = try Tensor(zeros: shape), v = try Tensor(zeros: shape)
    qkv.withUnsafeBufferPointer { px in
        cos.withUnsafeBufferPointer { pc in
            sin.withUnsafeBufferPointer { ps in
                normQ.withUnsafeBufferPointer { pwq in
                    normK.withUnsafeBufferPointer { pwk in
                        q.withUnsafeMutableBufferPointer { pq in
                            k.withUnsafeMutableBufferPointer { pk in
                                v.withUnsafeMutableBufferPointer { pv in
                                    let outs = (pq.baseAddress!, pk.baseAddress!, pv.baseAddress!)
                                    Parallelism.forEachChunk(b * s, costPerItem: 12 * d) { rows in
                                        for r in rows {
                                            let src = px.baseAddress! + r * 3 * d
                                            let c = pc.baseAddress! + (r % s) * d, sn = ps.baseAddress! + (r % s) * d
                                            for part in 0..<2 {
                                                let weight = part == 0 ? pwq.baseAddress! : pwk.baseAddress!
                                                let out = part == 0 ? outs.0 : outs.1
                                                for h in 0..<heads {
                                                    let x = src + part * d + h * dh, o = out + r * d + h * dh
                                                    let ch = c + h * dh, sh = sn + h * dh
                                                    let inv = RowReductions.inverseRMS(x, dh, eps: eps)
                                                    var i = 0
                                                    while i < dh {
                                                        let a = (x[i] * inv) * weight[i], bb = (x[i + 1] * inv) * weight[i + 1]
                                                        o[i] = a * ch[i] - bb * sh[i]
                                                        o[i + 1] = bb * ch[i + 1] + a * sh[i + 1]
                                                        i += 2
                                                    }
                                                }
                                            }
                                            (outs.2 + r * d).update(from: src + 2 * d, count: d)
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
