import Foundation
import Testing
@testable import Tensors

/// Fully masked rows and query counts that are not a multiple of ``attentionQueryBlock``.
///
/// A query whose keys are all masked has no defined softmax. The library turns such a row into all
/// zeros (``softmaxRowInPlace(_:_:)``: "a row whose entries are all −∞ becomes all zeros"), so the
/// attention output for that query is exactly zero, never NaN. That is what PyTorch's
/// `scaled_dot_product_attention` returns since 2.5 (`_safe_softmax`, pytorch/pytorch#133882: fully
/// masked rows give 0; older releases gave NaN). With a *finite* mask value (diffusers' `-10000`
/// padding bias) a fully masked row is not special: a constant shift leaves the softmax unchanged.
@Suite struct AttentionMaskEdgeTests {
    /// The naive reference of `AttentionTests`, with the fully masked (b, h, query) rows set to zero
    /// (the naive softmax computes 0/0 there).
    func reference(_ q: Tensor, _ k: Tensor, _ v: Tensor, heads: Int,
                   bias: ((Int, Int, Int, Int) -> Double)? = nil, keep: ((Int, Int) -> Bool)? = nil,
                   fullyMasked: (Int, Int, Int) -> Bool) -> [Double] {
        var ref = AttentionTests().naive(q, k, v, heads: heads, bias: bias, keep: keep)
        let (b, sq, w) = (q.shape[0], q.shape[1], q.shape[2])
        let dh = w / heads
        for bi in 0..<b { for h in 0..<heads { for i in 0..<sq where fullyMasked(bi, h, i) {
            for c in 0..<dh { ref[(bi * sq + i) * w + h * dh + c] = 0 }
        } } }
        #expect(!ref.contains { $0.isNaN }, "every NaN of the naive softmax must be a fully masked row")
        return ref
    }

    func expectFullyMaskedRowsAreZero(_ o: Tensor, heads: Int, _ fullyMasked: (Int, Int, Int) -> Bool,
                                      sourceLocation: SourceLocation = #_sourceLocation) {
        let (b, sq, w) = (o.shape[0], o.shape[1], o.shape[2])
        let dh = w / heads, s = o.scalars
        #expect(!s.contains { $0.isNaN || $0.isInfinite }, "NaN/∞ in the output", sourceLocation: sourceLocation)
        var count = 0
        for bi in 0..<b { for h in 0..<heads { for i in 0..<sq where fullyMasked(bi, h, i) {
            count += 1
            let row = s[((bi * sq + i) * w + h * dh)..<((bi * sq + i) * w + (h + 1) * dh)]
            #expect(row.allSatisfy { $0 == 0 }, "b \(bi) h \(h) q \(i): \(Array(row))", sourceLocation: sourceLocation)
        } } }
        #expect(count > 0, "the case must have fully masked rows", sourceLocation: sourceLocation)
    }

    // (B, Sq, Sk, H, Dh): Sq = 131 and 257 are one and two full 128-row blocks plus a partial one;
    // odd Sk, H and Dh.
    static let cases = [(2, 131, 19, 3, 5), (3, 257, 7, 2, 3)]

    /// Key-padding mask `[B, Sk]` that masks every key of batch element 1.
    @Test(arguments: cases)
    func keyMaskWithAFullyMaskedBatchElement(_ c: (Int, Int, Int, Int, Int)) throws {
        let (b, sq, sk, h, dh) = c
        let q = rand([b, sq, h * dh], seed: 11), k = rand([b, sk, h * dh], seed: 12), v = rand([b, sk, h * dh], seed: 13)
        var keys = [Float](repeating: 1, count: b * sk)
        for j in 0..<sk where j % 2 == 1 { keys[j] = 0 }            // element 0: odd keys padded
        for j in 0..<sk { keys[sk + j] = 0 }                        // element 1: every key padded
        if b > 2 { for j in 0..<(sk - 1) { keys[2 * sk + j] = 0 } } // element 2: only the last key kept
        let mask = try Tensor(shape: [b, sk], scalars: keys)
        let o = try attention(query: q, key: k, value: v, heads: h, mask: .keys(mask))
        #expect(o.shape == [b, sq, h * dh])
        let masked = { (bi: Int, _: Int, _: Int) in bi == 1 }
        expectFullyMaskedRowsAreZero(o, heads: h, masked)
        expectClose(o, reference(q, k, v, heads: h, keep: { bi, j in keys[bi * sk + j] != 0 }, fullyMasked: masked))
        // The other elements do not see the masked one: same result as attending without it.
        let o0 = try attention(query: q.slice(axis: 0, 0..<1), key: k.slice(axis: 0, 0..<1), value: v.slice(axis: 0, 0..<1),
                               heads: h, mask: .keys(mask.slice(axis: 0, 0..<1)))
        expectClose(o0, d(try o.slice(axis: 0, 0..<1)), tol: 1e-6)
    }

    /// Additive `−∞` masks that remove every key for some queries: per query `[B, 1, Sq, Sk]`, and per
    /// head and query `[B, H, Sq, Sk]`. Rows straddle the block boundaries (127, 128, Sq − 1).
    @Test(arguments: cases, [false, true])
    func additiveMaskWithFullyMaskedQueries(_ c: (Int, Int, Int, Int, Int), perHead: Bool) throws {
        let (b, sq, sk, h, dh) = c
        let q = rand([b, sq, h * dh], seed: 21), k = rand([b, sk, h * dh], seed: 22), v = rand([b, sk, h * dh], seed: 23)
        let mh = perHead ? h : 1
        let fullyMasked = { (bi: Int, hh: Int, i: Int) -> Bool in
            let rows: Set<Int> = bi == 0 ? [0, 127, 128, sq - 1] : [5, sq - 2]
            return rows.contains(i) && (!perHead || hh == (bi + 1) % h)
        }
        var bias = rand([b, mh, sq, sk], seed: 24).scalars
        for bi in 0..<b { for hh in 0..<mh { for i in 0..<sq {
            let rowStart = ((bi * mh + hh) * sq + i) * sk
            if fullyMasked(bi, hh, i) {
                for j in 0..<sk { bias[rowStart + j] = -.infinity }
            } else if i % 3 == 0 {
                bias[rowStart + (i % sk)] = -.infinity                  // a partially masked row
            }
        } } }
        let m = try Tensor(shape: [b, mh, sq, sk], scalars: bias)
        let o = try attention(query: q, key: k, value: v, heads: h, mask: .additive(m))
        let isMasked = { (bi: Int, hh: Int, i: Int) in fullyMasked(bi, perHead ? hh : 0, i) }
        expectFullyMaskedRowsAreZero(o, heads: h, isMasked)
        let ref = reference(q, k, v, heads: h, bias: { bi, hh, i, j in
            Double(bias[((bi * mh + (perHead ? hh : 0)) * sq + i) * sk + j])
        }, fullyMasked: isMasked)
        expectClose(o, ref)
    }

    /// A finite large negative bias on every key (diffusers' `-10000` padding) is a constant shift of the
    /// row: the output equals unmasked attention (PyTorch gives the same), not zeros.
    @Test func finiteBiasOnEveryKeyIsAShift() throws {
        let (b, sq, sk, h, dh) = (1, 133, 9, 2, 4)
        let q = rand([b, sq, h * dh], seed: 31), k = rand([b, sk, h * dh], seed: 32), v = rand([b, sk, h * dh], seed: 33)
        let m = try Tensor(shape: [b, 1, 1, sk], repeating: -10000)
        let o = try attention(query: q, key: k, value: v, heads: h, mask: .additive(m))
        // Scores of ~1 next to 1e4: float32 keeps ~1e-3 absolute of each score, so the softmax weights
        // move by up to ~1e-3 relative; the outputs are O(1).
        expectClose(o, AttentionTests().naive(q, k, v, heads: h), tol: 3e-3)
    }
}
