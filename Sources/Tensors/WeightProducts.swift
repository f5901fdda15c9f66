import CKernels
import CDNNL

/// Which route the products with 16- and 8-bit weights take on this CPU, decided once per process.
///
/// - bf16 (and int8, via bf16 panels): oneDNN's bf16 × bf16 → float32 matmul when oneDNN implements it
///   on this CPU *and* the CPU has AVX512_BF16 instructions (without them oneDNN would emulate bf16
///   and run slower than float32); otherwise float32 products on converted panels.
/// - float16: always float32 products on converted panels (the significand is wider than bf16's, so
///   rounding the weights to bf16 would lose accuracy).
public enum WeightProducts {
    /// The route of one product.
    public enum Path: String, Sendable, CaseIterable {
        /// float32 weights: sgemm.
        case float32
        /// 16- or 8-bit weights converted one panel of rows at a time into a float32 scratch, then sgemm.
        case panels
        /// Activations rounded to bf16, bf16 weights (int8: panels converted to bf16), oneDNN matmul.
        case oneDNNBFloat16
    }

    /// Whether oneDNN runs bf16 products natively here: the CPU reports AVX512_BF16 and a probe product
    /// through oneDNN succeeds with the right result.
    public static let bfloat16Available: Bool = {
        guard ck_cpu_has_avx512_bf16() != 0 else { return false }
        return probeBFloat16()
    }()

    /// Why ``bfloat16Available`` is what it is, for reports.
    public static var bfloat16Reason: String {
        if VectorPaths.isLimitedToAVX2 { return "limited to AVX2 (no AVX512_BF16 taken)" }
        if ck_cpu_has_avx512_bf16() == 0 { return "this CPU has no AVX512_BF16" }
        return bfloat16Available ? "oneDNN \(oneDNNVersion) on \(oneDNNISA)" : "oneDNN answered unimplemented for bf16 matmul"
    }

    /// oneDNN's version (`major.minor.patch`).
    public static var oneDNNVersion: String {
        let v = Int(ck_dnnl_version())
        return "\(v / 10000).\(v / 100 % 100).\(v % 100)"
    }

    /// The instruction set oneDNN dispatches to in this process (e.g. `avx512_core_bf16`, `avx2`).
    public static var oneDNNISA: String { String(cString: ck_dnnl_isa()) }

    /// The path a product with weights of `precision` takes on this CPU.
    public static func path(for precision: WeightPrecision) -> Path {
        switch precision {
        case .float32: return .float32
        case .float16: return .panels
        case .bfloat16, .int8: return bfloat16Available ? .oneDNNBFloat16 : .panels
        }
    }

    /// One line saying how products with `precision` weights run here and why, e.g.
    /// "bf16 via oneDNN 2.6.3 on avx512_core_bf16" or "bf16 storage, float32 products: this CPU has no AVX512_BF16".
    public static func describe(_ precision: WeightPrecision) -> String {
        switch (precision, path(for: precision)) {
        case (.float32, _): return Float32Products.description
        case (.float16, _): return "float16 storage, float32 products on converted panels (\(Float32Products.description))"
        case (_, .oneDNNBFloat16): return "\(precision) storage, bf16 products via \(bfloat16Reason)"
        default: return "\(precision) storage, float32 products on converted panels (\(Float32Products.description)): \(bfloat16Reason)"
        }
    }

    /// The probe product in bf16 (its values are exact in bf16), checked against its known result.
    private static func probeBFloat16() -> Bool {
        let p = ProbeProduct.self
        var a16 = [UInt16](repeating: 0, count: p.a.count), w16 = [UInt16](repeating: 0, count: p.w.count)
        ck_f32_to_bf16(p.a, &a16, p.a.count)
        ck_f32_to_bf16(p.w, &w16, p.w.count)
        var c = [Float](repeating: 0, count: p.expected.count)
        ck_dnnl_set_threads(1)
        let status = ck_dnnl_matmul(Int32(CK_DNNL_BF16), 3, 2, 4, a16, 4, w16, 4, nil, &c, 2, 0)
        return status == Int32(CK_DNNL_OK) && c == p.expected
    }
}

/// The product each oneDNN route is probed with before it is chosen: `A` 3 × 4 times `Wᵀ` (`W` 2 × 4),
/// with values exact in bf16 and a result exact in float32.
private enum ProbeProduct {
    static let a: [Float] = [1, 2, 3, 4, 0.5, -1, 2, 0, -2, 1, 0, 0.25]
    static let w: [Float] = [1, 0, -1, 2, 0.5, 0.5, 1, -1]
    static let expected: [Float] = [6, 0.5, -1.5, 1.75, -1.5, -0.75]
}

/// Which library runs the large float32 products (``sgemm(transposeA:transposeB:m:n:k:alpha:a:lda:b:ldb:beta:c:ldc:)``
/// of at least ``parallelGEMMThreshold`` flops), decided once per process from the CPU.
///
/// oneDNN when the CPU has AVX-512, oneDNN dispatches to an AVX-512 kernel, and OpenBLAS runs a kernel
/// without AVX-512 (this environment pins `OPENBLAS_CORETYPE=Haswell` on AVX-512 CPUs, which halves
/// OpenBLAS's rate; oneDNN dispatches on the CPU itself): there oneDNN's float32 matmul runs about twice
/// as fast. Otherwise OpenBLAS, split over this module's workers. Small products, and products inside
/// work that is already parallel (attention heads), always use single-threaded OpenBLAS.
public enum Float32Products {
    /// A float32 product backend.
    public enum Backend: String, Sendable, CaseIterable {
        /// OpenBLAS sgemm, split over ``Parallelism`` workers.
        case openBLAS
        /// oneDNN's float32 matmul on its own (OpenMP) threads.
        case oneDNN
    }

    /// The backend of this process.
    public static let backend: Backend = {
        let avx512Cores = ["skylakex", "cooperlake", "sapphirerapids"]
        guard BLASKernel.cpuVectorFeatures.contains("avx512f"), WeightProducts.oneDNNISA.hasPrefix("avx512"),
              !avx512Cores.contains(BLASKernel.coreName.lowercased()), probe() else { return .openBLAS }
        return .oneDNN
    }()

    /// One line naming the backend and why.
    public static var description: String {
        switch backend {
        case .oneDNN:
            return "float32 products: oneDNN \(WeightProducts.oneDNNVersion) on \(WeightProducts.oneDNNISA) "
                + "(OpenBLAS's \(BLASKernel.coreName) kernel has no AVX-512)"
        case .openBLAS:
            return "float32 products: OpenBLAS \(BLASKernel.coreName)"
        }
    }

    /// The probe product through oneDNN's float32 matmul, checked against its known result.
    private static func probe() -> Bool {
        let p = ProbeProduct.self
        var c = [Float](repeating: 0, count: p.expected.count)
        ck_dnnl_set_threads(1)
        let status = ck_dnnl_sgemm(0, 1, 3, 2, 4, 1, p.a, 4, p.w, 4, 0, &c, 2)
        return status == Int32(CK_DNNL_OK) && c == p.expected
    }
}

/// Rows of weights converted per panel: the panel's converted copy stays near `panelBytes`, at least
/// 64 rows, in multiples of 64.
///
/// 8 MB (in L3, not L2): each panel is one product, so a panel of few rows makes a thin product that
/// re-reads all of `A`. With 2 MB a feed-forward down-projection (`k` = 8960) had 64-row panels and ran
/// at 0.70 of the bf16 rate (int8 weights, `bench kernels`, AMD EPYC Zen 5, 2 threads); with 8 MB at 0.95,
/// and the other shapes did not change.
@usableFromInline
func panelRows(columns: Int, bytesPerValue: Int, panelBytes: Int = 8 << 20) -> Int {
    let rows = panelBytes / max(1, columns * bytesPerValue)
    return max(64, rows / 64 * 64)
}

/// `C[m, n] (+)= A[m, k] · W[:, c₀ ..< c₀+k]ᵀ` for any weight storage; `n` = `weight.rows`.
///
/// - Parameters:
///   - a: `m` rows of `k` values, row stride `lda`.
///   - columnOffset: the first weight column (`c₀`), so a product can use a column block of `W`.
///   - c: `m` rows of `n` values, row stride `ldc`.
///   - accumulate: add to `C` instead of overwriting it.
///   - bias: `n` values added to every row of the product (inside oneDNN's product where it runs), or nil.
///   - path: force a route (tests); nil chooses ``WeightProducts/path(for:)``.
func weightProduct(
    m: Int, k: Int, a: UnsafePointer<Float>, lda: Int, weight: WeightMatrix, columnOffset: Int,
    c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool, bias: UnsafePointer<Float>? = nil,
    path: WeightProducts.Path? = nil, panelBytes: Int = 8 << 20
) {
    let n = weight.rows
    guard m > 0, n > 0, k > 0 else { return }
    let route = path ?? WeightProducts.path(for: weight.precision)
    switch (weight.storage, route) {
    case (.float32(let t), _):
        t.withUnsafeBufferPointer { pw in
            sgemm(transposeA: false, transposeB: true, m: m, n: n, k: k, alpha: 1, a: a, lda: lda,
                  b: pw.baseAddress! + columnOffset, ldb: weight.columns, beta: accumulate ? 1 : 0, c: c, ldc: ldc,
                  bias: bias, backend: Float32Products.backend)
        }
    case (.bfloat16(let b), .oneDNNBFloat16):
        let a16 = roundedToBFloat16(m: m, k: k, a: a, lda: lda)
        defer { BufferPool.release(a16, count: m * k) }
        let w = b.baseAddress.assumingMemoryBound(to: UInt16.self) + columnOffset
        if !bfloat16Product(m: m, n: n, k: k, a16: a16, w: w, ldw: weight.columns, c: c, ldc: ldc, accumulate: accumulate,
                            bias: bias) {
            panelProduct(m: m, k: k, a: a, lda: lda, weight: weight, columnOffset: columnOffset, c: c, ldc: ldc, accumulate: accumulate,
                         bias: bias, panelBytes: panelBytes)
        }
    case (.int8, .oneDNNBFloat16):
        let a16 = roundedToBFloat16(m: m, k: k, a: a, lda: lda)
        defer { BufferPool.release(a16, count: m * k) }
        if !int8BFloat16Product(m: m, k: k, a: a, lda: lda, a16: a16, weight: weight, columnOffset: columnOffset, c: c, ldc: ldc,
                                accumulate: accumulate, bias: bias, panelBytes: panelBytes) {
            panelProduct(m: m, k: k, a: a, lda: lda, weight: weight, columnOffset: columnOffset, c: c, ldc: ldc, accumulate: accumulate,
                         bias: bias, panelBytes: panelBytes)
        }
    default:
        panelProduct(m: m, k: k, a: a, lda: lda, weight: weight, columnOffset: columnOffset, c: c, ldc: ldc, accumulate: accumulate,
                     bias: bias, panelBytes: panelBytes)
    }
}

/// `C[m, n] (+)= A16 · W16ᵀ (+ bias)` through oneDNN's bf16 matmul, split over ``Parallelism`` workers into
/// blocks of 64-aligned columns (or rows when M is the larger), each a single-threaded oneDNN product
/// on the worker's thread (one thread pool for the forward; see ``sgemmSerial(transposeA:transposeB:m:n:k:alpha:a:lda:b:ldb:beta:c:ldc:bias:backend:)``).
/// False when oneDNN refused the first block (then nothing was written).
private func bfloat16Product(m: Int, n: Int, k: Int, a16: UnsafePointer<UInt16>, w: UnsafePointer<UInt16>, ldw: Int,
                             c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool, bias: UnsafePointer<Float>?) -> Bool {
    let panel = 64, alongN = n >= m
    let panels = ((alongN ? n : m) + panel - 1) / panel
    let workers = 2 * Double(m) * Double(n) * Double(k) >= parallelGEMMThreshold ? min(Parallelism.threadCount, panels) : 1
    let perWorker = (panels + workers - 1) / workers
    let failed = UnsafeMutablePointer<Bool>.allocate(capacity: workers)
    defer { failed.deallocate() }
    failed.initialize(repeating: false, count: workers)
    Parallelism.concurrentPerform(workers) { worker in
        let lo = worker * perWorker * panel, hi = min((worker + 1) * perWorker * panel, alongN ? n : m)
        guard lo < hi else { return }
        ck_dnnl_set_threads(1)
        let status = alongN
            ? ck_dnnl_matmul(Int32(CK_DNNL_BF16), Int64(m), Int64(hi - lo), Int64(k), a16, Int64(k), w + lo * ldw, Int64(ldw),
                             bias.map { $0 + lo }, c + lo, Int64(ldc), accumulate ? 1 : 0)
            : ck_dnnl_matmul(Int32(CK_DNNL_BF16), Int64(hi - lo), Int64(n), Int64(k), a16 + lo * k, Int64(k), w, Int64(ldw),
                             bias, c + lo * ldc, Int64(ldc), accumulate ? 1 : 0)
        failed[worker] = status != Int32(CK_DNNL_OK)
    }
    // Blocks are the same kind of product: oneDNN refuses all of them or none.
    return !(0..<workers).contains { failed[$0] }
}

/// `A` rounded to bf16 into a new contiguous `m × k` buffer (the caller gives it back to ``BufferPool``).
private func roundedToBFloat16(m: Int, k: Int, a: UnsafePointer<Float>, lda: Int) -> UnsafeMutablePointer<UInt16> {
    let out = BufferPool.allocate(UInt16.self, count: m * k)
    Parallelism.forEachChunk(m, costPerItem: k) { rows in
        for r in rows { ck_f32_to_bf16(a + r * lda, out + r * k, k) }
    }
    return out
}

/// int8 weights converted to bf16 one panel of rows at a time, each panel one oneDNN product into its
/// columns of `C`. False when oneDNN refused (nothing of `C` written then).
private func int8BFloat16Product(
    m: Int, k: Int, a: UnsafePointer<Float>, lda: Int, a16: UnsafePointer<UInt16>, weight: WeightMatrix, columnOffset: Int,
    c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool, bias: UnsafePointer<Float>?, panelBytes: Int
) -> Bool {
    guard case .int8(let values, let scales, let g) = weight.storage else { return false }
    let n = weight.rows, p = min(n, panelRows(columns: k, bytesPerValue: 2, panelBytes: panelBytes))
    let scratch = BufferPool.allocate(UInt16.self, count: p * k)
    defer { BufferPool.release(scratch, count: p * k) }
    let q = values.baseAddress.assumingMemoryBound(to: Int8.self)
    let groups = scales.shape[1], columns = weight.columns
    return scales.withUnsafeBufferPointer { sc in
        var r0 = 0
        while r0 < n {
            let rows = min(p, n - r0)
            Parallelism.forEachChunk(rows, costPerItem: k) { part in
                for i in part {
                    let row = r0 + i
                    let dst = scratch + i * k
                    if columnOffset % g == 0 {
                        ck_i8_to_bf16(q + row * columns + columnOffset, sc.baseAddress! + row * groups + columnOffset / g, g, dst, k)
                    } else {
                        // A column block that starts inside a group: via float32, group piece by piece.
                        withUnsafeTemporaryAllocation(of: Float.self, capacity: k) { tmp in
                            WeightMatrix.dequantize(q + row * columns, sc.baseAddress! + row * groups, groupSize: g,
                                                    columns: columnOffset..<(columnOffset + k), into: tmp.baseAddress!)
                            ck_f32_to_bf16(tmp.baseAddress!, dst, k)
                        }
                    }
                }
            }
            if !bfloat16Product(m: m, n: rows, k: k, a16: a16, w: scratch, ldw: k, c: c + r0, ldc: ldc, accumulate: accumulate,
                                bias: bias.map { $0 + r0 }) {
                // Only the first panel can fail (same descriptor shape otherwise); nothing written yet.
                if r0 == 0 { return false }
                // A later panel failing would leave C half-written: finish it on the portable path.
                panelProduct(m: m, k: k, a: a, lda: lda, weight: weight, columnOffset: columnOffset, c: c, ldc: ldc,
                             accumulate: accumulate, bias: bias, rowStart: r0, panelBytes: panelBytes)
                return true
            }
            r0 += rows
        }
        return true
    }
}

/// The portable route: weights converted one panel of rows at a time into a float32 scratch, each panel
/// one (parallel) sgemm into its columns of `C`; from weight row `rowStart` on (0: the whole product).
func panelProduct(
    m: Int, k: Int, a: UnsafePointer<Float>, lda: Int, weight: WeightMatrix, columnOffset: Int,
    c: UnsafeMutablePointer<Float>, ldc: Int, accumulate: Bool, bias: UnsafePointer<Float>?, rowStart: Int = 0, panelBytes: Int
) {
    let n = weight.rows, p = min(n, panelRows(columns: k, bytesPerValue: 4, panelBytes: panelBytes))
    let scratch = BufferPool.allocate(Float.self, count: p * k)
    defer { BufferPool.release(scratch, count: p * k) }
    var r0 = rowStart
    while r0 < n {
        let rows = min(p, n - r0)
        Parallelism.forEachChunk(rows, costPerItem: k) { part in
            weight.convertRows((r0 + part.lowerBound)..<(r0 + part.upperBound), columns: columnOffset..<(columnOffset + k),
                               into: scratch + part.lowerBound * k)
        }
        sgemm(transposeA: false, transposeB: true, m: m, n: rows, k: k, alpha: 1, a: a, lda: lda,
              b: scratch, ldb: k, beta: accumulate ? 1 : 0, c: c + r0, ldc: ldc, bias: bias.map { $0 + r0 },
              backend: Float32Products.backend)
        r0 += rows
    }
}

// MARK: - Layers' products over any storage

/// `y = x · Wᵀ + b` with `W` in any storage (``WeightMatrix``); float32 weights take exactly the path of
/// ``linear(_:weight:bias:)-(Tensor,Tensor,Tensor?)``.
///
/// - Parameters:
///   - x: `[..., in]`.
///   - weight: `[out, in]`.
///   - bias: `[out]`, optional.
/// - Returns: `[..., out]`.
public func linear(_ x: Tensor, weight: WeightMatrix, bias: Tensor? = nil) throws(TensorError) -> Tensor {
    try linear(x, weight: weight, bias: bias, path: nil)
}

/// ``linear(_:weight:bias:)-(Tensor,WeightMatrix,Tensor?)`` on a forced route (tests compare every route).
///
/// `panelBytes` is ``panelRows(columns:bytesPerValue:panelBytes:)``'s (tests make it small to run several panels).
func linear(_ x: Tensor, weight: WeightMatrix, bias: Tensor?, path: WeightProducts.Path?,
            panelBytes: Int = 8 << 20) throws(TensorError) -> Tensor {
    try PhaseProfiler.measure(.products) { () throws(TensorError) -> Tensor in
        if case .float32(let w) = weight.storage, path == nil || path == .float32 { return try linear(x, weight: w, bias: bias) }
        guard x.rank >= 1, x.shape[x.rank - 1] == weight.columns else {
            throw .shapeMismatch(operation: "linear", shapes: [x.shape, weight.shape],
                                 reason: "expected x [..., in] and weight [out, in] with matching in")
        }
        let out = weight.rows, inF = weight.columns
        if let bias, bias.shape != [out] {
            throw .shapeMismatch(operation: "linear", shapes: [weight.shape, bias.shape], reason: "bias must be [out]")
        }
        let rows = x.shape.dropLast().reduce(1, *)
        _ = try blasInt(rows, "linear"); _ = try blasInt(out, "linear"); _ = try blasInt(inF, "linear")
        return x.withUnsafeBufferPointer { px in
            Tensor(uninitializedShape: Array(x.shape.dropLast()) + [out]) { py in
                guard rows > 0, out > 0 else { return }
                guard inF > 0 else { fillRows(py.baseAddress!, rows: rows, width: out, with: bias); return }
                withOptionalPointer(bias) { pb in
                    weightProduct(m: rows, k: inF, a: px.baseAddress!, lda: inF, weight: weight, columnOffset: 0,
                                  c: py.baseAddress!, ldc: out, accumulate: false, bias: pb, path: path, panelBytes: panelBytes)
                }
            }
        }
    }
}

/// `act(x · Wᵀ + b)` with `W` in any storage, the activation applied in place on the product.
public func linear(
    _ x: Tensor, weight: WeightMatrix, bias: Tensor? = nil, activation: Activation
) throws(TensorError) -> Tensor {
    var y = try linear(x, weight: weight, bias: bias)
    applyInPlace(&y, activation)
    return y
}

/// ``linearFewRows(_:weight:bias:)-(Tensor,Tensor,Tensor?)`` for `W` in any storage: float32 weights
/// take matrix-vector products; other storages the panel route (which reads each weight once too).
public func linearFewRows(_ x: Tensor, weight: WeightMatrix, bias: Tensor? = nil) throws(TensorError) -> Tensor {
    if case .float32(let w) = weight.storage { return try linearFewRows(x, weight: w, bias: bias) }
    return try linear(x, weight: weight, bias: bias)
}

/// ``linear(concatenating:weight:bias:)-(_,Tensor,_)`` for `W` in any storage: one accumulating
/// product per part against the matching column block of `weight` (`[out, Σ inᵢ]`).
public func linear(concatenating parts: [Tensor], weight: WeightMatrix, bias: Tensor?) throws(TensorError) -> Tensor {
    try PhaseProfiler.measure(.products) { () throws(TensorError) -> Tensor in
        guard let first = parts.first else {
            throw .invalidArgument(operation: "linear of concatenation", reason: "needs at least one part and a 2-D weight")
        }
        let lead = Array(first.shape.dropLast())
        let widths = parts.map { $0.shape.last ?? 0 }
        guard parts.allSatisfy({ $0.rank == first.rank && Array($0.shape.dropLast()) == lead }),
              widths.reduce(0, +) == weight.columns else {
            throw .shapeMismatch(operation: "linear of concatenation", shapes: parts.map(\.shape) + [weight.shape],
                                 reason: "parts must share leading dimensions and their widths must add up to the weight's input width")
        }
        let out = weight.rows
        if let bias, bias.shape != [out] {
            throw .shapeMismatch(operation: "linear of concatenation", shapes: [weight.shape, bias.shape], reason: "bias must be [out]")
        }
        let rows = lead.reduce(1, *)
        _ = try blasInt(rows, "linear of concatenation"); _ = try blasInt(out, "linear of concatenation")
        return Tensor(uninitializedShape: lead + [out]) { py in
            guard rows > 0, out > 0 else { return }
            guard weight.columns > 0 else { fillRows(py.baseAddress!, rows: rows, width: out, with: bias); return }
            // The first non-empty part writes C (with the bias, inside its product); the others add to it.
            var column = 0, written = false
            for (part, w) in zip(parts, widths) {
                if w > 0 {
                    part.withUnsafeBufferPointer { px in
                        withOptionalPointer(written ? nil : bias) { pb in
                            weightProduct(m: rows, k: w, a: px.baseAddress!, lda: w, weight: weight, columnOffset: column,
                                          c: py.baseAddress!, ldc: out, accumulate: written, bias: pb)
                        }
                    }
                    written = true
                }
                column += w
            }
        }
    }
}

/// Every row of `p` (`rows × width`) set to `bias`, or to zeros without one.
func fillRows(_ p: UnsafeMutablePointer<Float>, rows: Int, width: Int, with bias: Tensor?) {
    if let bias {
        bias.withUnsafeBufferPointer { pb in
            for r in 0..<rows { (p + r * width).update(from: pb.baseAddress!, count: width) }
        }
    } else {
        p.update(repeating: 0, count: rows * width)
    }
}
