import CKernels
import Foundation
import Testing
@testable import Tensors

/// The 16- and 8-bit weight storages: conversions against independent scalar references, on every
/// vector width this CPU runs, and products against a Double reference on every route.
@Suite struct WeightStorageTests {
    /// Values that exercise rounding: random magnitudes over many binades, ties, subnormals, signed
    /// zeros, the largest finite values and infinities.
    static let specials: [Float] = {
        var v: [Float] = [0, -0, 1, -1, .infinity, -.infinity, .greatestFiniteMagnitude, -.greatestFiniteMagnitude,
                          .leastNonzeroMagnitude, .leastNormalMagnitude, 65504, 65519.99, 65520, 1e-8, 6e-8, 3e-5,
                          1 + 0x1p-8, 1 + 0x1p-7 + 0x1p-8, 1 + 0x1p-11, 1 + 0x1p-10 + 0x1p-11, -3.0000002, 0.1]
        var g = SeededGenerator(seed: 11)
        for _ in 0..<997 {
            let m = Float.random(in: -1...1, using: &g)
            let e = Float.random(in: -30...20, using: &g)
            v.append(m * Foundation.pow(2, e))
        }
        return v
    }()

    /// bf16 by an independent rule: the two bf16 neighbours of x, the nearer in Double, ties to even.
    static func referenceBF16(_ x: Float) -> UInt16 {
        if x.isNaN { return 0x7FC0 }
        let bits = x.bitPattern
        let lo = bits & 0xFFFF_0000
        if lo == bits { return UInt16(bits >> 16) }
        let hi = lo &+ 0x1_0000
        let dLo = abs(Double(Float(bitPattern: lo)) - Double(x))
        let dHi = Float(bitPattern: hi).isInfinite && !x.isInfinite
            ? abs((x < 0 ? -0x1p128 : 0x1p128) - Double(x))  // infinity counts as the next power of two
            : abs(Double(Float(bitPattern: hi)) - Double(x))
        if dLo < dHi { return UInt16(lo >> 16) }
        if dHi < dLo { return UInt16(hi >> 16) }
        return (lo >> 16) & 1 == 0 ? UInt16(lo >> 16) : UInt16(hi >> 16)
    }

    @Test(arguments: 0...2) func bfloat16RoundsToNearestEvenOnEveryPath(level: Int) {
        let x = Self.specials
        var out = [UInt16](repeating: 0, count: x.count)
        ck_f32_to_bf16_level(Int32(level), x, &out, x.count)
        for (v, b) in zip(x, out) { #expect(b == Self.referenceBF16(v), "x = \(v)") }
        var back = [Float](repeating: 0, count: x.count)
        ck_bf16_to_f32_level(Int32(level), out, &back, x.count)
        for (b, w) in zip(out, back) { #expect(w.bitPattern == UInt32(b) << 16) }
        var nan = [UInt16](repeating: 0, count: 1)
        ck_f32_to_bf16_level(Int32(level), [Float.nan], &nan, 1)
        #expect(Float(bitPattern: UInt32(nan[0]) << 16).isNaN)
    }

    #if arch(x86_64) || arch(arm64)
    @Test(arguments: 0...2) func float16MatchesSwiftsFloat16OnEveryPath(level: Int) {
        let x = Self.specials
        var out = [UInt16](repeating: 0, count: x.count)
        ck_f32_to_f16_level(Int32(level), x, &out, x.count)
        for (v, h) in zip(x, out) { #expect(h == Float16(v).bitPattern, "x = \(v)") }
        var back = [Float](repeating: 0, count: x.count)
        ck_f16_to_f32_level(Int32(level), out, &back, x.count)
        for (h, w) in zip(out, back) { #expect(w == Float(Float16(bitPattern: h))) }
    }
    #endif

    @Test(arguments: [1, 7, 32, 64, 100]) func int8QuantisationMatchesAScalarReference(group: Int) throws {
        let rows = 5, columns = 77
        let w = rand([rows, columns], seed: UInt64(group))
        let m = try WeightMatrix.make(w, precision: .int8, groupSize: group)
        guard case .int8(let values, let scales, let g) = m.storage else { Issue.record("not int8"); return }
        #expect(g == group && scales.shape == [rows, (columns + group - 1) / group])
        let q = Array(UnsafeBufferPointer(start: values.baseAddress.assumingMemoryBound(to: Int8.self), count: rows * columns))
        let ws = w.scalars, sc = scales.scalars
        for r in 0..<rows {
            for j0 in stride(from: 0, to: columns, by: group) {
                let cols = j0..<min(columns, j0 + group)
                let amax = cols.map { abs(ws[r * columns + $0]) }.max()!
                let s = sc[r * scales.shape[1] + j0 / group]
                #expect(s == amax / 127)
                for j in cols {
                    let expected = Int8((ws[r * columns + j] / s).rounded(.toNearestOrEven))
                    #expect(q[r * columns + j] == expected)
                }
            }
        }
        // Dequantised values are within half a step of the originals, on every vector width.
        let deq = m.float32Tensor().scalars
        for r in 0..<rows { for j in 0..<columns {
            let s = sc[r * scales.shape[1] + j / group]
            #expect(abs(deq[r * columns + j] - ws[r * columns + j]) <= s / 2 * 1.0001)
        } }
        for level in 0...2 {
            var out = [Float](repeating: 0, count: columns)
            ck_i8_to_f32_level(Int32(level), q, sc, group, &out, columns)
            #expect(out == Array(deq[0..<columns]))
        }
    }

    @Test func quantisingNonFiniteWeightsIsATypedError() throws {
        let w = try Tensor(shape: [2, 2], scalars: [1, .nan, 0, 2])
        #expect(throws: TensorError.self) { try WeightMatrix.make(w, precision: .int8) }
        #expect(throws: TensorError.self) { try WeightMatrix.make(w, precision: .int8, groupSize: 0) }
        #expect(throws: TensorError.self) { try WeightMatrix(Tensor(shape: [4], repeating: 1)) }
    }

    /// The routes a product with `precision` weights can take on this CPU.
    static func routes(for precision: WeightPrecision) -> [WeightProducts.Path] {
        var routes: [WeightProducts.Path] = precision == .float32 ? [.float32, .panels] : [.panels]
        if WeightProducts.bfloat16Available, precision == .bfloat16 || precision == .int8 { routes.append(.oneDNNBFloat16) }
        return routes
    }

    /// `x · wᵀ + bias` in Double from the stored (dequantised) weights, `x` `[m, k]`, `w` `[n, k]`; on the
    /// bf16 route the activations and weights are rounded to bf16 first, as that route does.
    static func referenceProduct(_ x: Tensor, _ w: WeightMatrix, bias: Tensor?, route: WeightProducts.Path) -> [Double] {
        let (m, k, n) = (x.shape[0], x.shape[1], w.rows)
        let toBF16 = { (v: Float) in Float(bitPattern: UInt32(Self.referenceBF16(v)) << 16) }
        let xs = x.scalars, stored = w.float32Tensor().scalars, bs = bias?.scalars
        let xr: [Float] = route == .oneDNNBFloat16 ? xs.map(toBF16) : xs
        let wr: [Float] = route == .oneDNNBFloat16 ? stored.map(toBF16) : stored
        var ref = [Double](repeating: 0, count: m * n)
        for i in 0..<m { for j in 0..<n {
            var acc = bs.map { Double($0[j]) } ?? 0
            for t in 0..<k { acc += Double(xr[i * k + t]) * Double(wr[j * k + t]) }
            ref[i * n + j] = acc
        } }
        return ref
    }

    /// Every storage and route on odd shapes against a Double product of the stored (dequantised)
    /// weights. Tolerance 2e-5 of the largest output (float32 accumulation, K ≤ 300); the bf16 route
    /// rounds the activations to bf16 first, so its reference rounds them too.
    @Test(arguments: [WeightPrecision.float32, .bfloat16, .float16, .int8])
    func productsMatchADoubleReferenceOnEveryRoute(precision: WeightPrecision) throws {
        for (m, k, n) in [(1, 5, 3), (5, 37, 70), (70, 130, 129), (3, 300, 257)] {
            let x = rand([m, k], seed: UInt64(m * 1000 + k))
            let w = try WeightMatrix.make(rand([n, k], seed: UInt64(n)), precision: precision, groupSize: 32)
            let bias = rand([n], seed: 99)
            for route in Self.routes(for: precision) {
                let y = try linear(x, weight: w, bias: bias, path: route)
                #expect(y.shape == [m, n])
                expectClose(y, Self.referenceProduct(x, w, bias: bias, route: route), tol: 2e-5)
            }
        }
    }

    /// Products of several weight panels (the converting routes work one panel of rows at a time; here
    /// 64-row panels, so 257 rows are five panels, the last of one row) equal the Double reference like
    /// the one-panel product, with and without a bias. Tolerance as above.
    @Test(arguments: [WeightPrecision.bfloat16, .float16, .int8])
    func productsOverSeveralPanelsMatchADoubleReference(precision: WeightPrecision) throws {
        let (m, k, n) = (7, 96, 257)
        let x = rand([m, k], seed: 11)
        let w = try WeightMatrix.make(rand([n, k], seed: 12), precision: precision, groupSize: 32)
        for route in Self.routes(for: precision) where route != .float32 {
            #expect(panelRows(columns: k, bytesPerValue: route == .panels ? 4 : 2, panelBytes: 1) == 64)
            for bias in [nil, rand([n], seed: 13)] {
                let y = try linear(x, weight: w, bias: bias, path: route, panelBytes: 1)
                expectClose(y, Self.referenceProduct(x, w, bias: bias, route: route), tol: 2e-5)
            }
        }
    }

    /// Column blocks (a product of a concatenation) that start inside an int8 group, on every route.
    @Test(arguments: [WeightPrecision.bfloat16, .float16, .int8])
    func concatenatedProductsMatchTheWholeProduct(precision: WeightPrecision) throws {
        let a = rand([9, 20], seed: 1), b = rand([9, 45], seed: 2)
        let w = try WeightMatrix.make(rand([33, 65], seed: 3), precision: precision, groupSize: 16)
        let bias = rand([33], seed: 4)
        let joined = try Tensor.concatenate([a, b], axis: 1)
        let whole = try linear(joined, weight: w, bias: bias)
        let parts = try linear(concatenating: [a, b], weight: w, bias: bias)
        expectClose(parts, d(whole), tol: 1e-5)
        let reference = try linear(joined, weight: w.float32Tensor(), bias: bias)
        let tolerance = WeightProducts.path(for: precision) == .oneDNNBFloat16 ? 1e-2 : 1e-5  // bf16 activations
        expectClose(parts, d(reference), tol: tolerance)
    }

    @Test func stackedRowsKeepEveryPartsValues() throws {
        for precision in WeightPrecision.allCases {
            let p = try WeightMatrix.make(rand([3, 10], seed: 5), precision: precision)
            let q = try WeightMatrix.make(rand([4, 10], seed: 6), precision: precision)
            let s = try WeightMatrix.concatenatingRows([p, q])
            #expect(s.shape == [7, 10] && s.precision == precision)
            #expect(s.float32Tensor() == (try Tensor.concatenate([p.float32Tensor(), q.float32Tensor()], axis: 0)))
        }
        let f = try WeightMatrix.make(rand([2, 10], seed: 7), precision: .float32)
        let h = try WeightMatrix.make(rand([2, 10], seed: 7), precision: .bfloat16)
        #expect(throws: TensorError.self) { try WeightMatrix.concatenatingRows([f, h]) }
    }

    @Test func storageSizesAreAsStated() throws {
        let w = rand([64, 256], seed: 8)
        let f = try WeightMatrix.make(w, precision: .float32).byteCount
        #expect(try WeightMatrix.make(w, precision: .bfloat16).byteCount * 2 == f)
        #expect(try WeightMatrix.make(w, precision: .float16).byteCount * 2 == f)
        let i8 = try WeightMatrix.make(w, precision: .int8).byteCount
        #expect(Double(i8) <= 0.3 * Double(f))
        #expect(i8 == 64 * 256 + 4 * 64 * (256 / WeightMatrix.defaultGroupSize))
    }

    @Test func theRouteIsChosenFromTheCPU() {
        #expect(WeightProducts.path(for: .float32) == .float32)
        #expect(WeightProducts.path(for: .float16) == .panels)
        let bf16 = ck_cpu_has_avx512_bf16() != 0
        if !bf16 { #expect(!WeightProducts.bfloat16Available) }
        #expect(WeightProducts.path(for: .bfloat16) == (WeightProducts.bfloat16Available ? .oneDNNBFloat16 : .panels))
        #expect(WeightProducts.describe(.bfloat16).contains(bf16 ? "oneDNN" : "no AVX512_BF16"))
    }
}

/// Large float32 products on both backends, with transposes, strides, alpha and beta, against Double.
@Suite struct Float32BackendTests {
    /// Every transpose pair, with and without a bias row (`C = alpha·op(A)·op(B) + bias + beta·C`; oneDNN
    /// adds it inside the product for alpha = 1, else C is set to bias + beta·C first). Tolerance 2e-5 of
    /// the largest |C| (float32 accumulation over K = 300).
    @Test(arguments: Float32Products.Backend.allCases)
    func sgemmMatchesADoubleReference(backend: Float32Products.Backend) throws {
        let (m, n, k) = (67, 129, 300)  // ≥ the threshold that sends a product to a backend at all
        let bias = rand([n], seed: 4).scalars
        let cases: [(alpha: Float, beta: Float, bias: Bool)] = [(0.75, 0.5, false), (1, 0, true), (1, 0.5, true), (0.75, 0, true)]
        for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
            for (alpha, beta, withBias) in cases {
                let lda = (ta ? m : k) + 3, ldb = (tb ? k : n) + 5, ldc = n + 2
                let a = rand([(ta ? k : m) * lda], seed: 1).scalars, b = rand([(tb ? n : k) * ldb], seed: 2).scalars
                let c0 = rand([m * ldc], seed: 3).scalars
                var c = c0
                c.withUnsafeMutableBufferPointer { pc in
                    bias.withUnsafeBufferPointer { pb in
                        sgemm(transposeA: ta, transposeB: tb, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb,
                              beta: beta, c: pc.baseAddress!, ldc: ldc, bias: withBias ? pb.baseAddress : nil, backend: backend)
                    }
                }
                var worst = 0.0, scale = 0.0
                for i in 0..<m { for j in 0..<n {
                    var acc = 0.0
                    for t in 0..<k {
                        acc += Double(ta ? a[t * lda + i] : a[i * lda + t]) * Double(tb ? b[j * ldb + t] : b[t * ldb + j])
                    }
                    let ref = Double(alpha) * acc + (withBias ? Double(bias[j]) : 0) + Double(beta) * Double(c0[i * ldc + j])
                    worst = max(worst, abs(Double(c[i * ldc + j]) - ref)); scale = max(scale, abs(ref))
                } }
                #expect(worst / scale <= 2e-5, "\(backend) transposes \(ta) \(tb) alpha \(alpha) beta \(beta) bias \(withBias): \(worst / scale)")
                for i in 0..<m { for j in n..<ldc { #expect(c[i * ldc + j] == c0[i * ldc + j]) } }  // padding untouched
            }
        }
    }

    /// K = 0: C = bias + beta·C exactly (nothing is multiplied), on both backends.
    @Test(arguments: Float32Products.Backend.allCases)
    func emptyProductsKeepBiasAndBetaC(backend: Float32Products.Backend) {
        let (m, n) = (3, 5)
        let bias: [Float] = [1, -2, 3, 0.5, 4], c0: [Float] = (0..<(m * n)).map { Float($0) }
        let one: [Float] = [0]
        for withBias in [false, true] {
            var c = c0
            c.withUnsafeMutableBufferPointer { pc in
                bias.withUnsafeBufferPointer { pb in
                    sgemmSerial(transposeA: false, transposeB: true, m: m, n: n, k: 0, alpha: 1, a: one, lda: 1, b: one, ldb: 1,
                                beta: 0.5, c: pc.baseAddress!, ldc: n, bias: withBias ? pb.baseAddress : nil, backend: backend)
                }
            }
            #expect(c == (0..<(m * n)).map { (withBias ? bias[$0 % n] : 0) + 0.5 * c0[$0] })
        }
    }

    @Test func theBackendIsChosenFromTheCPUAndTheBLASKernel() {
        let avx512 = BLASKernel.cpuVectorFeatures.contains("avx512f")
        if !avx512 { #expect(Float32Products.backend == .openBLAS) }
        if ["skylakex", "cooperlake", "sapphirerapids"].contains(BLASKernel.coreName.lowercased()) {
            #expect(Float32Products.backend == .openBLAS)
        }
        #expect(Float32Products.description.contains(Float32Products.backend == .oneDNN ? "oneDNN" : "OpenBLAS"))
    }
}
