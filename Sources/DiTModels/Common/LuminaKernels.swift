import Foundation
import Tensors

/// Fused row passes of the Lumina blocks, so each `[B, S, D]` tensor is read once per norm:
/// `RMSNorm(x)·w·(1 + s)` (the adaptive norms) and `h + tanh(g)·RMSNorm(x)·w` (the gated residual
/// updates), with per-sample `s`, `g` `[B, D]`. Same float32 operation order as diffusers:
/// `((x·r)·w)·(1 + s)` with `r = 1/√(mean(x²) + ε)`, and `h + tanh(g)·((x·r)·w)`.
enum LuminaKernels {
    /// `RMSNorm(x)·weight·(1 + scale)`; `scale` `[B, D]` (per sample) or nil (plain RMSNorm).
    static func rmsNormScaled(_ x: Tensor, weight: Tensor, eps: Float, scale: Tensor?) throws(TensorError) -> Tensor {
        let (b, s, d) = try shape(x, weight: weight, perSample: scale, name: "Lumina RMSNorm·(1 + scale)")
        return x.withUnsafeBufferPointer { px in
            weight.withUnsafeBufferPointer { pw in
                withOptionalPointer(scale) { ps in
                    Tensor(uninitializedShape: x.shape) { out in
                        Parallelism.forEachChunk(b * s, costPerItem: 4 * d) { rows in
                            for r in rows {
                                let xi = px.baseAddress! + r * d, o = out.baseAddress! + r * d
                                let inv = RowReductions.inverseRMS(xi, d, eps: eps)
                                if let ps {
                                    let sc = ps + (r / s) * d
                                    for j in 0..<d { o[j] = ((xi[j] * inv) * pw[j]) * (1 + sc[j]) }
                                } else {
                                    for j in 0..<d { o[j] = (xi[j] * inv) * pw[j] }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// `h + tanh(gate)·RMSNorm(x)·weight`; `gate` `[B, D]` (its tanh is taken here) or nil (`h + RMSNorm(x)·weight`).
    static func addingGatedRMSNorm(
        _ h: Tensor, _ x: Tensor, weight: Tensor, eps: Float, gate: Tensor?
    ) throws(TensorError) -> Tensor {
        let (b, s, d) = try shape(x, weight: weight, perSample: gate, name: "Lumina gated RMSNorm residual")
        guard h.shape == x.shape else {
            throw .shapeMismatch(operation: "Lumina gated RMSNorm residual", shapes: [h.shape, x.shape], reason: "h and x must match")
        }
        let g = gate.map { Tensors.tanh($0) }
        return h.withUnsafeBufferPointer { ph in
            x.withUnsafeBufferPointer { px in
                weight.withUnsafeBufferPointer { pw in
                    withOptionalPointer(g) { pg in
                        Tensor(uninitializedShape: x.shape) { out in
                            Parallelism.forEachChunk(b * s, costPerItem: 5 * d) { rows in
                                for r in rows {
                                    let xi = px.baseAddress! + r * d, hi = ph.baseAddress! + r * d, o = out.baseAddress! + r * d
                                    let inv = RowReductions.inverseRMS(xi, d, eps: eps)
                                    if let pg {
                                        let gr = pg + (r / s) * d
                                        for j in 0..<d { o[j] = hi[j] + gr[j] * ((xi[j] * inv) * pw[j]) }
                                    } else {
                                        for j in 0..<d { o[j] = hi[j] + (xi[j] * inv) * pw[j] }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    /// `a + b·g` with `g` `[W]` broadcast over the rows of `a`, `b` `[..., W]` (the per-head gated sum of
    /// Lumina-Next's two attention outputs).
    static func addingScaledColumns(_ a: Tensor, _ b: Tensor, columns g: Tensor) throws(TensorError) -> Tensor {
        let w = g.count
        guard a.shape == b.shape, a.shape.last == w, g.rank == 1 else {
            throw .shapeMismatch(operation: "Lumina gated attention sum", shapes: [a.shape, b.shape, g.shape],
                                 reason: "expected two [..., W] tensors and a [W] gate")
        }
        let rows = w == 0 ? 0 : a.count / w
        return a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                g.withUnsafeBufferPointer { pg in
                    Tensor(uninitializedShape: a.shape) { out in
                        Parallelism.forEachChunk(rows, costPerItem: 3 * w) { range in
                            for r in range {
                                let ai = pa.baseAddress! + r * w, bi = pb.baseAddress! + r * w, o = out.baseAddress! + r * w
                                for j in 0..<w { o[j] = ai[j] + bi[j] * pg[j] }
                            }
                        }
                    }
                }
            }
        }
    }

    /// `a *= b` element by element (equal shapes).
    static func multiply(_ a: inout Tensor, by b: Tensor) throws(TensorError) {
        guard a.shape == b.shape else {
            throw .shapeMismatch(operation: "Lumina gated product", shapes: [a.shape, b.shape], reason: "shapes must be equal")
        }
        let n = a.count
        b.withUnsafeBufferPointer { pb in
            a.withUnsafeMutableBufferPointer { pa in
                Parallelism.forEachChunk((n + 4095) / 4096, costPerItem: 8192) { blocks in
                    for i in (blocks.lowerBound * 4096)..<min(n, blocks.upperBound * 4096) { pa[i] *= pb[i] }
                }
            }
        }
    }


    /// `[B, S, D]` with a `[D]` weight and an optional `[B, D]` per-sample parameter.
    private static func shape(_ x: Tensor, weight: Tensor, perSample p: Tensor?, name: String) throws(TensorError) -> (Int, Int, Int) {
        guard x.rank == 3, weight.shape == [x.shape[2]] else {
            throw .shapeMismatch(operation: name, shapes: [x.shape, weight.shape], reason: "expected x [B, S, D] and weight [D]")
        }
        if let p, p.shape != [x.shape[0], x.shape[2]] {
            throw .shapeMismatch(operation: name, shapes: [x.shape, p.shape], reason: "the per-sample parameter must be [B, D]")
        }
        return (x.shape[0], x.shape[1], x.shape[2])
    }
}
