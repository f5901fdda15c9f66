import CKernels
import Foundation
import Testing
@testable import Tensors

/// The fused attention kernel (`ck_attention_f32`) at every vector width this CPU runs, called directly
/// with strided rows, against attention computed in Double.
@Suite struct FusedAttentionKernelTests {
    /// One head's inputs: `rows` queries and `keys` keys/values of `dh` values, each row `stride` floats
    /// apart (so the kernel never relies on contiguous heads), uniform in [−2, 2) to give peaked softmaxes.
    struct Head {
        let rows: Int, keys: Int, dh: Int, stride: Int
        let q: [Float], k: [Float], v: [Float]

        /// `pad` floats between rows (odd by default: nothing may assume aligned rows).
        init(rows: Int, keys: Int, dh: Int, seed: UInt64, pad: Int = 3) {
            self.rows = rows; self.keys = keys; self.dh = dh; stride = dh + pad
            var g = SeededGenerator(seed: seed)
            func values(_ n: Int) -> [Float] { (0..<n * (dh + pad)).map { _ in Float.random(in: -2..<2, using: &g) } }
            q = values(rows); k = values(keys); v = values(keys)
        }

        /// Double attention: scale·q·k + bias(i, j), keys with keep(j) false left out, a query with no key
        /// left gets zeros.
        func reference(scale: Double, bias: ((Int, Int) -> Double)? = nil, keep: ((Int) -> Bool)? = nil) -> [Double] {
            var out = [Double](repeating: 0, count: rows * dh)
            for i in 0..<rows {
                var s = [Double](repeating: -.infinity, count: keys)
                for j in 0..<keys where keep?(j) ?? true {
                    var dot = 0.0
                    for c in 0..<dh { dot += Double(q[i * stride + c]) * Double(k[j * stride + c]) }
                    s[j] = scale * dot + (bias?(i, j) ?? 0)
                }
                let m = s.max()!
                guard m > -.infinity else { continue }
                let e = s.map { Foundation.exp($0 - m) }, total = e.reduce(0, +)
                for c in 0..<dh {
                    var acc = 0.0
                    for j in 0..<keys { acc += e[j] * Double(v[j * stride + c]) }
                    out[i * dh + c] = acc / total
                }
            }
            return out
        }

        /// The kernel's output at `level`, rows `dh + 1` apart, as [rows][dh].
        func fused(level: Int, scale: Float, bias: [Float]? = nil, biasStride: Int = 0, keyMask: [Float]? = nil) -> [Float] {
            let ldo = dh + 1
            var out = [Float](repeating: .nan, count: rows * ldo)
            var work = [Float](repeating: .nan, count: ck_attention_workspace_floats(dh))
            q.withUnsafeBufferPointer { pq in k.withUnsafeBufferPointer { pk in v.withUnsafeBufferPointer { pv in
                withArrayPointer(bias) { pb in withArrayPointer(keyMask) { pm in
                    ck_attention_f32_level(Int32(level), pq.baseAddress, Int64(stride), pk.baseAddress, Int64(stride),
                                           pv.baseAddress, Int64(stride), &out, Int64(ldo), rows, keys, dh, scale,
                                           pb, Int64(biasStride), pm, &work)
                } }
            } } }
            return (0..<rows).flatMap { i in out[(i * ldo)..<(i * ldo + dh)] }
        }
    }

    /// Each output is a convex combination of values in [−2, 2]; float32 scores over up to 70 products and
    /// the ≈ 1 ulp exp leave ≈ 1e-6 — 1e-5 absolute is ten times that.
    func expectClose(_ got: [Float], _ ref: [Double], _ what: String, tol: Double = 1e-5) {
        #expect(got.count == ref.count)
        let worst = zip(got, ref).map { abs(Double($0) - $1) }.max() ?? 0
        #expect(worst <= tol, "\(what): max abs error \(worst)")
    }

    static let levels = Array(0...Int(ck_level()))

    // Rows around the tiles (4, 32, 64 queries), keys around the register tiles (4, 6) and the 128-key
    // blocks, head dimensions off the 4/6-row tiles; (1, 1, 1) the smallest.
    static let shapes: [(Int, Int, Int)] = [(1, 1, 1), (5, 7, 13), (17, 129, 64), (64, 128, 6), (70, 300, 5), (130, 33, 70)]

    @Test(arguments: levels)
    func unmaskedAtEveryWidth(_ level: Int) {
        for (n, (rows, keys, dh)) in Self.shapes.enumerated() {
            let head = Head(rows: rows, keys: keys, dh: dh, seed: UInt64(10 + n))
            let scale = 1 / Float(dh).squareRoot()
            expectClose(head.fused(level: level, scale: scale), head.reference(scale: Double(scale)),
                        "level \(level) \(rows)x\(keys)x\(dh)")
        }
    }

    /// A key mask with whole 128-key blocks left out (so the running maximum starts at −∞ in later
    /// blocks), and an additive bias shared by all queries or one row per query, with −∞ entries that
    /// leave some queries no key at all (their rows must be zeros, not NaN or an average).
    @Test(arguments: levels)
    func masksAndBiasesAtEveryWidth(_ level: Int) {
        let (rows, keys, dh) = (37, 300, 9)
        let head = Head(rows: rows, keys: keys, dh: dh, seed: 3)
        let scale: Float = 0.3
        let keep = (0..<keys).map { j in j < 130 || (j % 7 == 3) ? Float(0) : 1 }
        expectClose(head.fused(level: level, scale: scale, keyMask: keep),
                    head.reference(scale: Double(scale), keep: { keep[$0] != 0 }), "level \(level) key mask")
        let none = [Float](repeating: 0, count: keys)
        let zeros = head.fused(level: level, scale: scale, keyMask: none)
        #expect(zeros.allSatisfy { $0 == 0 }, "level \(level): every key masked gives zeros")

        var g = SeededGenerator(seed: 4)
        let shared = (0..<keys).map { _ in Float.random(in: -3..<3, using: &g) }
        expectClose(head.fused(level: level, scale: scale, bias: shared, biasStride: 0),
                    head.reference(scale: Double(scale), bias: { Double(shared[$1]) }), "level \(level) shared bias")

        let ldb = keys + 2
        var perQuery = (0..<rows * ldb).map { _ in Float.random(in: -3..<3, using: &g) }
        for j in 0..<keys { perQuery[5 * ldb + j] = -.infinity }                 // query 5: no key
        for j in 0..<200 { perQuery[6 * ldb + j] = -.infinity }                  // query 6: only the last block
        let got = head.fused(level: level, scale: scale, bias: perQuery, biasStride: ldb)
        expectClose(got, head.reference(scale: Double(scale), bias: { Double(perQuery[$0 * ldb + $1]) }),
                    "level \(level) per-query bias")
        #expect(got[(5 * dh)..<(6 * dh)].allSatisfy { $0 == 0 })
    }

    /// A NaN in one key makes every query's output NaN (as the unfused products did), not a finite
    /// answer that hides it.
    @Test(arguments: levels)
    func nanInAKeyPropagates(_ level: Int) {
        let head = Head(rows: 20, keys: 40, dh: 8, seed: 5)
        var k = head.k
        k[17 * head.stride + 3] = .nan
        let poisoned = Head(rows: head.rows, keys: head.keys, dh: head.dh, stride: head.stride, q: head.q, k: k, v: head.v)
        let out = poisoned.fused(level: level, scale: 0.5)
        #expect(out.allSatisfy { $0.isNaN }, "level \(level)")
    }

    /// Every width agrees with the portable one to float32 rounding (the same algorithm, other orders).
    @Test func widthsAgree() {
        let head = Head(rows: 70, keys: 260, dh: 64, seed: 6)
        let portable = head.fused(level: 0, scale: 0.125)
        for level in Self.levels.dropFirst() {
            let got = head.fused(level: level, scale: 0.125)
            let worst = zip(got, portable).map { abs($0 - $1) }.max() ?? 0
            #expect(worst <= 2e-6, "level \(level) vs portable: \(worst)")
        }
    }
}

/// The bf16 kernel (`ck_attention_bf16`, AVX512_BF16) against Double attention of the bf16-rounded
/// queries, keys and values: what is left is the bf16 rounding of the softmax numerators (≤ 2⁻⁹ relative
/// each, so ≤ 2⁻⁹ · max|v| = 4e-3 on outputs of values in [−2, 2]) — 8e-3 is twice that.
@Suite struct FusedBFloat16AttentionKernelTests {
    typealias Head = FusedAttentionKernelTests.Head

    func bf16(_ x: [Float]) -> [UInt16] {
        var out = [UInt16](repeating: 0, count: x.count)
        ck_f32_to_bf16(x, &out, x.count)
        return out
    }

    func widened(_ x: [UInt16]) -> [Float] { x.map { Float(bitPattern: UInt32($0) << 16) } }

    /// The kernel's output as [rows][dh], or nil when it declined (returned 0).
    func fused(_ head: Head, scale: Float, bias: [Float]? = nil, biasStride: Int = 0, keyMask: [Float]? = nil) -> [Float]? {
        let (q, k) = (bf16(head.q), bf16(head.k))
        let pairRows = (head.keys + 1) / 2
        var pairs = [UInt32](repeating: 0, count: pairRows * head.stride)
        head.v.withUnsafeBufferPointer { v in
            pairs.withUnsafeMutableBufferPointer { out in
                for t in 0..<pairRows {
                    let first = v.baseAddress! + 2 * t * head.stride
                    ck_bf16_pairs(first, 2 * t + 1 < head.keys ? first + head.stride : nil, out.baseAddress! + t * head.stride, head.stride)
                }
            }
        }
        let ldo = head.dh + 2
        var out = [Float](repeating: .nan, count: head.rows * ldo)
        var work = [Float](repeating: .nan, count: ck_attention_workspace_floats(head.dh))
        let done = withArrayPointer(bias) { pb in withArrayPointer(keyMask) { pm in
            ck_attention_bf16(q, Int64(head.stride), k, Int64(head.stride), pairs, Int64(head.stride), &out, Int64(ldo),
                              head.rows, head.keys, head.dh, scale, pb, Int64(biasStride), pm, &work)
        } }
        guard done != 0 else { return nil }
        return (0..<head.rows).flatMap { i in out[(i * ldo)..<(i * ldo + head.dh)] }
    }

    /// The head with its queries, keys and values rounded to bf16 (the reference's inputs).
    func rounded(_ head: Head) -> Head {
        Head(rows: head.rows, keys: head.keys, dh: head.dh, stride: head.stride,
             q: widened(bf16(head.q)), k: widened(bf16(head.k)), v: widened(bf16(head.v)))
    }

    @Test func matchesRoundedReferenceWhereTheCPUHasIt() throws {
        // Odd key counts (the last value pair padded), several 128-key blocks, tails of every tile; more
        // keys than CK_ATTENTION_FEW_KEYS (fewer are declined, see fewKeysAreDeclined).
        let shapes = [(1, 17, 2), (5, 23, 14), (17, 129, 64), (70, 301, 6), (130, 33, 70)]
        for (n, (rows, keys, dh)) in shapes.enumerated() {
            let head = Head(rows: rows, keys: keys, dh: dh, seed: UInt64(40 + n), pad: 4)
            let scale = 1 / Float(dh).squareRoot()
            guard let got = fused(head, scale: scale) else {
                #expect(ck_attention_bf16_available() == 0, "declined an even head dimension on a CPU that has the kernel")
                return
            }
            let ref = rounded(head).reference(scale: Double(scale))
            let worst = zip(got, ref).map { abs(Double($0) - $1) }.max() ?? 0
            #expect(worst <= 8e-3, "\(rows)x\(keys)x\(dh): \(worst)")
        }
    }

    @Test func masksAndBiasesWhereTheCPUHasIt() throws {
        let (rows, keys, dh) = (37, 300, 10)
        let head = Head(rows: rows, keys: keys, dh: dh, seed: 50, pad: 2)
        let r = rounded(head)
        let keep = (0..<keys).map { j in j < 130 || (j % 7 == 3) ? Float(0) : 1 }
        guard let masked = fused(head, scale: 0.3, keyMask: keep) else { return }
        let ref = r.reference(scale: 0.3, keep: { keep[$0] != 0 })
        #expect(zip(masked, ref).allSatisfy { abs(Double($0) - $1) <= 8e-3 })
        let none = fused(head, scale: 0.3, keyMask: [Float](repeating: 0, count: keys))!
        #expect(none.allSatisfy { $0 == 0 }, "every key masked gives zeros")
        var g = SeededGenerator(seed: 51)
        let ldb = keys + 1
        var perQuery = (0..<rows * ldb).map { _ in Float.random(in: -3..<3, using: &g) }
        for j in 0..<keys { perQuery[2 * ldb + j] = -.infinity }
        let biased = fused(head, scale: 0.3, bias: perQuery, biasStride: ldb)!
        let refB = r.reference(scale: 0.3, bias: { Double(perQuery[$0 * ldb + $1]) })
        #expect(zip(biased, refB).allSatisfy { abs(Double($0) - $1) <= 8e-3 })
        #expect(biased[(2 * dh)..<(3 * dh)].allSatisfy { $0 == 0 })
    }

    /// An odd head dimension or query row stride is declined (the caller then takes the float32 kernel),
    /// never read past; so are CK_ATTENTION_FEW_KEYS keys or fewer (the float32 kernel's query-by-query
    /// path is faster there).
    @Test func oddSizesAndFewKeysAreDeclined() {
        #expect(fused(Head(rows: 3, keys: 20, dh: 7, seed: 52, pad: 1), scale: 1) == nil)
        #expect(fused(Head(rows: 3, keys: Int(CK_ATTENTION_FEW_KEYS), dh: 8, seed: 53, pad: 2), scale: 1) == nil)
        #expect(fused(Head(rows: 3, keys: 20, dh: 8, seed: 55, pad: 3), scale: 1) == nil, "odd row stride: pairs would straddle")
        #expect((fused(Head(rows: 3, keys: Int(CK_ATTENTION_FEW_KEYS) + 1, dh: 8, seed: 54, pad: 2), scale: 1) != nil)
                == (ck_attention_bf16_available() != 0))
    }

    /// Pairs are bf16 of each row, rounded to nearest even, the first row in the low half; no second row
    /// gives zeros.
    @Test func pairsOfRows() {
        let a: [Float] = [1, 1.00390625, -2.5, .infinity, 3e38, 1.0078125, 0.1, -0.1, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]
        let b = a.reversed().map { -$0 }
        var out = [UInt32](repeating: 0, count: a.count)
        ck_bf16_pairs(a, b, &out, a.count)
        let (ra, rb) = (bf16(a), bf16(Array(b)))
        for i in 0..<a.count { #expect(out[i] == UInt32(ra[i]) | UInt32(rb[i]) << 16, "\(i)") }
        ck_bf16_pairs(a, nil, &out, a.count)
        for i in 0..<a.count { #expect(out[i] == UInt32(ra[i]), "\(i)") }
    }
}

/// `body` with the array's storage, or nil without an array.
func withArrayPointer<R>(_ values: [Float]?, _ body: (UnsafePointer<Float>?) -> R) -> R {
    guard let values else { return body(nil) }
    return values.withUnsafeBufferPointer { body($0.baseAddress) }
}

extension FusedAttentionKernelTests.Head {
    init(rows: Int, keys: Int, dh: Int, stride: Int, q: [Float], k: [Float], v: [Float]) {
        self.rows = rows; self.keys = keys; self.dh = dh; self.stride = stride
        self.q = q; self.k = k; self.v = v
    }
}
