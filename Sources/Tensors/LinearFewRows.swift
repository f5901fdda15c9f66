import COpenBLAS

/// The largest row count ``linearFewRows(_:weight:bias:)-(Tensor,Tensor,Tensor?)`` serves with matrix-vector products; beyond
/// it the products go through ``linear(_:weight:bias:)-(Tensor,Tensor,Tensor?)`` (sgemm).
public let fewRowsLimit = 8

/// `x·Wᵀ + b` for inputs of a few rows — the per-sample conditioning vectors of adaptive norms
/// (`linear(silu(temb))`), time embeddings — as one `sgemv` per row.
///
/// For a handful of rows sgemm is dominated by packing the whole `[out, in]` weight (OpenBLAS: ~6 ms for
/// a 1 × 512 by 3072 × 512 product on this kind of machine, against ~0.6–1.2 ms for sgemv, which reads
/// the weight once). The output rows are split over ``Parallelism/threadCount`` workers in blocks of 64
/// weight rows, each a single-threaded sgemv. Inputs of more than ``fewRowsLimit`` rows use
/// ``linear(_:weight:bias:)-(Tensor,Tensor,Tensor?)``. Results equal sgemm's to float32 rounding (another summation order).
///
/// - Parameters:
///   - x: `[..., in]`.
///   - weight: `[out, in]` (PyTorch layout).
///   - bias: `[out]`, optional.
/// - Returns: `[..., out]`.
public func linearFewRows(_ x: Tensor, weight: Tensor, bias: Tensor? = nil) throws(TensorError) -> Tensor {
    try PhaseProfiler.measure(.products) { () throws(TensorError) -> Tensor in
        guard weight.rank == 2, x.rank >= 1, x.shape[x.rank - 1] == weight.shape[1] else {
            throw .shapeMismatch(operation: "linear (few rows)", shapes: [x.shape, weight.shape],
                                 reason: "expected x [..., in] and weight [out, in] with matching in")
        }
        let out = weight.shape[0], inF = weight.shape[1]
        let rows = x.shape.dropLast().reduce(1, *)
        guard rows <= fewRowsLimit, inF > 0, out > 0 else { return try linear(x, weight: weight, bias: bias) }
        if let bias, bias.shape != [out] {
            throw .shapeMismatch(operation: "linear (few rows)", shapes: [weight.shape, bias.shape], reason: "bias must be [out]")
        }
        _ = try blasInt(out, "linear (few rows)"); _ = try blasInt(inF, "linear (few rows)")
        _ = Parallelism.blasConfigured
        let panel = 64
        let panels = (out + panel - 1) / panel
        let workers = 2 * Double(out) * Double(inF) >= 1_000_000 ? min(Parallelism.threadCount, panels) : 1
        let perWorker = (panels + workers - 1) / workers
        return x.withUnsafeBufferPointer { px in
            weight.withUnsafeBufferPointer { pw in
                Tensor(uninitializedShape: Array(x.shape.dropLast()) + [out]) { py in
                    guard rows > 0 else { return }
                    fillRows(py.baseAddress!, rows: rows, width: out, with: bias)
                    let run = { (w: Int) in
                        let lo = w * perWorker * panel, hi = min(out, (w + 1) * perWorker * panel)
                        guard lo < hi else { return }
                        for r in 0..<rows {
                            cblas_sgemv(CblasRowMajor, CblasNoTrans, Int32(hi - lo), Int32(inF), 1,
                                        pw.baseAddress! + lo * inF, Int32(inF), px.baseAddress! + r * inF, 1,
                                        1, py.baseAddress! + r * out + lo, 1)
                        }
                    }
                    if workers == 1 { run(0) } else { Parallelism.concurrentPerform(workers, run) }
                }
            }
        }
    }
}
