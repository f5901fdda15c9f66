import CKernels
import COpenBLAS

/// Converts a dimension to BLAS's 32-bit integer type, or throws.
@inlinable
func blasInt(_ v: Int, _ op: String) throws(TensorError) -> Int32 {
    guard v >= 0, v <= Int(Int32.max) else {
        throw .invalidArgument(operation: op, reason: "dimension \(v) exceeds BLAS's 32-bit limit")
    }
    return Int32(v)
}

/// Row-major single-precision GEMM on raw pointers: `C = alpha·op(A)·op(B) + beta·C`.
///
/// `lda`, `ldb`, `ldc` are row strides in elements, so sub-matrices (a head's columns in a
/// `[tokens, heads·dim]` tensor, for example) are used in place without copies.
///
/// Products of at least ``parallelGEMMThreshold`` flops are split over ``Parallelism/threadCount``
/// workers into blocks of whole 64-column (or 64-row) panels of C, along the larger of N and M; each block
/// is one single-threaded sgemm. Results agree across thread counts to float32 rounding, not bit for bit:
/// OpenBLAS may choose another micro-kernel for a narrower block, which rounds differently.
public func sgemm(
    transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
    alpha: Float, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
) {
    sgemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
          beta: beta, c: c, ldc: ldc, backend: Float32Products.backend)
}

/// ``sgemm(transposeA:transposeB:m:n:k:alpha:a:lda:b:ldb:beta:c:ldc:)`` on a given backend (tests run
/// both), with an optional `bias` (`n` values) added to every row: `C = alpha·op(A)·op(B) + bias + beta·C`
/// (see ``sgemmSerial(transposeA:transposeB:m:n:k:alpha:a:lda:b:ldb:beta:c:ldc:bias:backend:)``).
func sgemm(
    transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
    alpha: Float, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int, bias: UnsafePointer<Float>? = nil,
    backend: Float32Products.Backend
) {
    let threads = Parallelism.threadCount
    let panel = 64
    let alongN = n >= m
    let panels = ((alongN ? n : m) + panel - 1) / panel
    let workers = min(threads, panels)
    guard workers > 1, 2 * Double(m) * Double(n) * Double(k) >= parallelGEMMThreshold else {
        sgemmSerial(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, alpha: alpha,
                    a: a, lda: lda, b: b, ldb: ldb, beta: beta, c: c, ldc: ldc, bias: bias, backend: backend)
        return
    }
    let perWorker = (panels + workers - 1) / workers
    Parallelism.concurrentPerform(workers) { w in
        let lo = w * perWorker * panel
        let hi = min((w + 1) * perWorker * panel, alongN ? n : m)
        guard lo < hi else { return }
        if alongN {
            // Columns lo..<hi of C: the same columns of op(B).
            sgemmSerial(transposeA: transposeA, transposeB: transposeB, m: m, n: hi - lo, k: k, alpha: alpha,
                        a: a, lda: lda, b: b + (transposeB ? lo * ldb : lo), ldb: ldb,
                        beta: beta, c: c + lo, ldc: ldc, bias: bias.map { $0 + lo }, backend: backend)
        } else {
            // Rows lo..<hi of C: the same rows of op(A).
            sgemmSerial(transposeA: transposeA, transposeB: transposeB, m: hi - lo, n: n, k: k, alpha: alpha,
                        a: a + (transposeA ? lo : lo * lda), lda: lda, b: b, ldb: ldb,
                        beta: beta, c: c + lo * ldc, ldc: ldc, bias: bias, backend: backend)
        }
    }
}

/// `body` with the base address of `tensor`'s values, or with nil when there is no tensor (or it is empty).
package func withOptionalPointer<R>(_ tensor: Tensor?, _ body: (UnsafePointer<Float>?) -> R) -> R {
    guard let tensor else { return body(nil) }
    return tensor.withUnsafeBufferPointer { body($0.baseAddress) }
}

/// Products smaller than this many flops run as one single-threaded sgemm on the calling thread.
public let parallelGEMMThreshold: Double = 4_000_000

/// One single-threaded sgemm on the calling thread. Used inside work that is already parallel, such as
/// attention blocks, so every product of a forward runs on this module's workers (one thread pool).
public func sgemmSerial(
    transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
    alpha: Float, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
) {
    sgemmSerial(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda,
                b: b, ldb: ldb, beta: beta, c: c, ldc: ldc, backend: Float32Products.backend)
}

/// Products of at least this many flops go to oneDNN when it is the backend; below, oneDNN's set-up per
/// call (≈ 15 µs) costs more than its faster kernel saves.
let oneDNNMinimumFlops: Double = 1_048_576

/// ``sgemmSerial(transposeA:transposeB:m:n:k:alpha:a:lda:b:ldb:beta:c:ldc:)`` on a given backend: oneDNN
/// runs single-threaded on the calling thread (its OpenMP team of one, so no OpenMP workers spin between
/// products and compete with this module's workers), OpenBLAS is kept single-threaded
/// (``Parallelism/blasConfigured``).
///
/// With `bias` (`n` values): `C = alpha·op(A)·op(B) + bias + beta·C`. oneDNN adds it inside the product
/// (for `alpha` = 1); otherwise C's rows are first set to `bias + beta·C` and the product accumulates
/// onto them.
func sgemmSerial(
    transposeA: Bool, transposeB: Bool, m: Int, n: Int, k: Int,
    alpha: Float, a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
    beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int, bias: UnsafePointer<Float>? = nil,
    backend: Float32Products.Backend
) {
    guard m > 0, n > 0 else { return }
    if backend == .oneDNN, k > 0, bias == nil || alpha == 1, 2 * Double(m) * Double(n) * Double(k) >= oneDNNMinimumFlops {
        ck_dnnl_set_threads(1)
        if ck_dnnl_gemm_bias(Int32(CK_DNNL_F32), transposeA ? 1 : 0, transposeB ? 1 : 0, Int64(m), Int64(n), Int64(k), alpha,
                             a, Int64(lda), b, Int64(ldb), bias, beta, c, Int64(ldc)) == Int32(CK_DNNL_OK) { return }
    }
    var beta = beta
    if let bias {
        for r in 0..<m {
            let row = c + r * ldc
            if beta == 0 { row.update(from: bias, count: n) } else { for j in 0..<n { row[j] = bias[j] + beta * row[j] } }
        }
        beta = 1
    } else if k == 0 {
        // BLAS leaves C alone for k = 0 only when beta = 1; make "C = beta·C" explicit.
        for r in 0..<m { let row = c + r * ldc; for j in 0..<n { row[j] = beta == 0 ? 0 : beta * row[j] } }
        return
    }
    guard k > 0 else { return }
    _ = Parallelism.blasConfigured
    cblas_sgemm(CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans, transposeB ? CblasTrans : CblasNoTrans,
                Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
}

/// Matrix product with optional transposes, done by sgemm (no transposed copies are made).
///
/// - 2-D × 2-D: `[M, K] · [K, N] → [M, N]`.
/// - Batched: `[..., M, K] · [..., K, N]` where `b` has the same leading dims as `a`, or is 2-D and shared.
/// With `transposeA`/`transposeB` the last two axes of that operand are read transposed.
public func matmul(
    _ a: Tensor, _ b: Tensor, transposeA: Bool = false, transposeB: Bool = false
) throws(TensorError) -> Tensor {
    try PhaseProfiler.measure(.products) { () throws(TensorError) -> Tensor in
        guard a.rank >= 2, b.rank >= 2 else {
            throw .shapeMismatch(operation: "matmul", shapes: [a.shape, b.shape], reason: "operands need rank >= 2")
        }
        let ar = a.shape[a.rank - 2], ac = a.shape[a.rank - 1]
        let br = b.shape[b.rank - 2], bc = b.shape[b.rank - 1]
        let (m, k) = transposeA ? (ac, ar) : (ar, ac)
        let (k2, n) = transposeB ? (bc, br) : (br, bc)
        guard k == k2 else {
            throw .shapeMismatch(operation: "matmul", shapes: [a.shape, b.shape],
                                 reason: "inner dimensions differ (\(k) vs \(k2))")
        }
        let batchA = Array(a.shape.dropLast(2))
        let batchB = Array(b.shape.dropLast(2))
        guard batchB.isEmpty || batchB == batchA else {
            throw .shapeMismatch(operation: "matmul", shapes: [a.shape, b.shape],
                                 reason: "batch dimensions must match, or b must be 2-D")
        }
        let batches = batchA.reduce(1, *)
        _ = try blasInt(m, "matmul"); _ = try blasInt(n, "matmul"); _ = try blasInt(k, "matmul")
        return a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in
                Tensor(uninitializedShape: batchA + [m, n]) { pc in
                    if m * n == 0 { return }
                    if k == 0 { pc.update(repeating: 0); return }
                    for i in 0..<batches {
                        sgemm(transposeA: transposeA, transposeB: transposeB, m: m, n: n, k: k, alpha: 1,
                              a: pa.baseAddress! + i * m * k, lda: ac,
                              b: pb.baseAddress! + (batchB.isEmpty ? 0 : i * k * n), ldb: bc,
                              beta: 0, c: pc.baseAddress! + i * m * n, ldc: n)
                    }
                }
            }
        }
    }
}

/// A fully connected layer in PyTorch's convention: `y = x · Wᵀ + b`.
///
/// - Parameters:
///   - x: `[..., in]`.
///   - weight: `[out, in]` (PyTorch `nn.Linear.weight` layout; read transposed by sgemm, never copied).
///   - bias: `[out]`, optional.
/// - Returns: `[..., out]`.
public func linear(_ x: Tensor, weight: Tensor, bias: Tensor? = nil) throws(TensorError) -> Tensor {
    try PhaseProfiler.measure(.products) { () throws(TensorError) -> Tensor in
        guard weight.rank == 2, x.rank >= 1, x.shape[x.rank - 1] == weight.shape[1] else {
            throw .shapeMismatch(operation: "linear", shapes: [x.shape, weight.shape],
                                 reason: "expected x [..., in] and weight [out, in] with matching in")
        }
        let out = weight.shape[0], inF = weight.shape[1]
        if let bias { guard bias.shape == [out] else {
            throw .shapeMismatch(operation: "linear", shapes: [weight.shape, bias.shape], reason: "bias must be [out]")
        } }
        let rows = x.shape.dropLast().reduce(1, *)   // not x.count / in: `in` may be 0
        _ = try blasInt(rows, "linear"); _ = try blasInt(out, "linear"); _ = try blasInt(inF, "linear")
        let outShape = Array(x.shape.dropLast()) + [out]
        return x.withUnsafeBufferPointer { px in
            weight.withUnsafeBufferPointer { pw in
                Tensor(uninitializedShape: outShape) { py in
                    guard rows > 0, out > 0 else { return }
                    guard inF > 0 else { fillRows(py.baseAddress!, rows: rows, width: out, with: bias); return }
                    // The bias is added inside the product (no separate pass over the output).
                    withOptionalPointer(bias) { pb in
                        sgemm(transposeA: false, transposeB: true, m: rows, n: out, k: inF, alpha: 1,
                              a: px.baseAddress!, lda: inF, b: pw.baseAddress!, ldb: inF,
                              beta: 0, c: py.baseAddress!, ldc: out, bias: pb, backend: Float32Products.backend)
                    }
                }
            }
        }
    }
}

/// `linear(concatenate(parts, axis: -1), weight, bias)` without materialising the concatenation: one
/// accumulating sgemm per part against the matching column block of `weight` (`[out, Σ inᵢ]`).
///
/// - Parameters:
///   - parts: `[..., inᵢ]` tensors with equal leading dimensions.
///   - weight: `[out, Σ inᵢ]` (PyTorch layout).
///   - bias: `[out]` or nil.
public func linear(concatenating parts: [Tensor], weight: Tensor, bias: Tensor?) throws(TensorError) -> Tensor {
    guard weight.rank == 2 else {
        throw .invalidArgument(operation: "linear of concatenation", reason: "needs at least one part and a 2-D weight")
    }
    return try linear(concatenating: parts, weight: WeightMatrix(weight), bias: bias)
}
