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

        init(rows: Int, keys: Int, dh: Int, seed: UInt64) {
            self.rows = rows; self.keys = keys; self.dh = dh; stride = dh + 3
            var g = SeededGenerator(seed: seed)
            func values(_ n: Int) -> [Float] { (0..<n * (dh + 3)).map { _ in Float.random(in: -2..<2, using: &g) } }
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

/// `body` with the array's storage, or nil without an array.
private func withArrayPointer<R>(_ values: [Float]?, _ body: (UnsafePointer<Float>?) -> R) -> R {
    guard let values else { return body(nil) }
    return values.withUnsafeBufferPointer { body($0.baseAddress) }
}

extension FusedAttentionKernelTests.Head {
    init(rows: Int, keys: Int, dh: Int, stride: Int, q: [Float], k: [Float], v: [Float]) {
        self.rows = rows; self.keys = keys; self.dh = dh; self.stride = stride
        self.q = q; self.k = k; self.v = v
    }
}
