import CKernels
import Foundation
import Testing
@testable import Tensors

@Suite struct AttentionTests {
    /// Naive attention in Double on [B, S, H·D] tensors; `bias(b, h, i, j)` is added to scores,
    /// `keep(b, j)` masks keys.
    func naive(_ q: Tensor, _ k: Tensor, _ v: Tensor, heads: Int,
               bias: ((Int, Int, Int, Int) -> Double)? = nil, keep: ((Int, Int) -> Bool)? = nil) -> [Double] {
        let (b, sq, w) = (q.shape[0], q.shape[1], q.shape[2])
        let sk = k.shape[1], dh = w / heads
        let qs = d(q), ks = d(k), vs = d(v)
        var out = [Double](repeating: 0, count: b * sq * w)
        for bi in 0..<b { for h in 0..<heads { for i in 0..<sq {
            var scores = [Double](repeating: 0, count: sk)
            for j in 0..<sk {
                var s = 0.0
                for c in 0..<dh { s += qs[(bi * sq + i) * w + h * dh + c] * ks[(bi * sk + j) * w + h * dh + c] }
                s /= Double(dh).squareRoot()
                if let bias { s += bias(bi, h, i, j) }
                if let keep, !keep(bi, j) { s = -.infinity }
                scores[j] = s
            }
            let m = scores.max()!
            let e = scores.map { Foundation.exp($0 - m) }
            let tot = e.reduce(0, +)
            for c in 0..<dh {
                var acc = 0.0
                for j in 0..<sk { acc += e[j] / tot * vs[(bi * sk + j) * w + h * dh + c] }
                out[(bi * sq + i) * w + h * dh + c] = acc
            }
        } } }
        return out
    }

    // Sq = 130 crosses the 64-query tiles; odd key counts exercise the tile tails; 2000 and 9000 keys take
    // 16 and 71 blocks of 128 keys (the online softmax rescales across them).
    @Test(arguments: [(1, 5, 7, 1, 4), (2, 130, 33, 3, 8), (1, 17, 300, 2, 16), (1, 1000, 2000, 2, 4), (1, 300, 9000, 1, 4)])
    func unmaskedMatchesNaive(_ c: (Int, Int, Int, Int, Int)) throws {
        let (b, sq, sk, h, dh) = c
        let q = rand([b, sq, h * dh], seed: 1), k = rand([b, sk, h * dh], seed: 2), v = rand([b, sk, h * dh], seed: 3)
        let o = try attention(query: q, key: k, value: v, heads: h)
        #expect(o.shape == [b, sq, h * dh])
        expectClose(o, naive(q, k, v, heads: h))
    }

    /// The per-worker bound the models' activation estimates use covers the fused kernel's workspace
    /// (for head dimensions up to 256) at every key count, and the Double form bounds the Int form.
    @Test func scratchEstimateCoversTheWorkspace() {
        for sk in [1, 7, 2000, 9000, 70_000] {
            #expect(ck_attention_workspace_floats(256) <= attentionScoreFloats(keys: sk))
            #expect(Double(attentionScoreFloats(keys: sk)) <= attentionScoreFloats(keys: Double(sk)))
        }
    }

    /// bf16 products for bf16 (and int8) models where the CPU has them: within bf16 rounding of the naive
    /// reference (operands rounded to 8 significant bits: ~1% relative on these scores), with a key mask and
    /// across a two-block head; elsewhere the float32 result exactly.
    @Test(arguments: [WeightPrecision.bfloat16, .int8])
    func bfloat16ProductsWhereTheCPUHasThem(_ precision: WeightPrecision) throws {
        let (b, sq, sk, h, dh) = (2, 600, 1900, 2, 16)
        let q = rand([b, sq, h * dh], seed: 11), k = rand([b, sk, h * dh], seed: 12), v = rand([b, sk, h * dh], seed: 13)
        var keep = [Float](repeating: 1, count: b * sk)
        for j in 1500..<sk { keep[sk + j] = 0 }   // the second sample's last 400 keys are padding
        let mask = AttentionMask.keys(try Tensor(shape: [b, sk], scalars: keep))
        let f32 = try attention(query: q, key: k, value: v, heads: h, mask: mask)
        let low = try attention(query: q, key: k, value: v, heads: h, mask: mask, precision: precision)
        if WeightProducts.path(for: precision) == .oneDNNBFloat16 {
            let reference = naive(q, k, v, heads: h, keep: { bi, j in keep[bi * sk + j] != 0 })
            let ref = try Tensor(shape: [b, sq, h * dh], scalars: reference.map(Float.init))
            let e = try Tensor.relativeL2(low, ref)
            #expect(e < 1e-2, "bf16 attention rel L2 \(e)")
            #expect(low.scalars != f32.scalars, "the bf16 route must have run")
        } else {
            #expect(low.scalars == f32.scalars, "without bf16 products: the float32 route")
        }
    }

    /// Temporal attention over a few frames (4 keys, at most CK_ATTENTION_FEW_KEYS) runs the float32
    /// kernel query by query for every precision: a bf16 model gets the float32 result exactly. With more
    /// keys a bf16 model takes bf16 operands where the CPU has the bf16 kernel (within bf16 rounding of
    /// the naive reference), else float32; odd head dimensions and float32 weights stay float32.
    @Test func bf16OperandsFollowTheWeightsAndTheKeyCount() throws {
        let (b, h, dh) = (6, 2, 64)
        for s in [4, 40] {
            let q = rand([b, s, h * dh], seed: 21), k = rand([b, s, h * dh], seed: 22), v = rand([b, s, h * dh], seed: 23)
            let f32 = try attention(query: q, key: k, value: v, heads: h)
            let low = try attention(query: q, key: k, value: v, heads: h, precision: .bfloat16)
            let bf16Here = WeightProducts.path(for: .bfloat16) == .oneDNNBFloat16 && ck_attention_bf16_available() != 0
            if bf16Here && s > Int(CK_ATTENTION_FEW_KEYS) {
                let ref = try Tensor(shape: [b, s, h * dh], scalars: naive(q, k, v, heads: h).map(Float.init))
                let e = try Tensor.relativeL2(low, ref)
                #expect(e < 1e-2, "bf16 attention rel L2 \(e)")
                #expect(low.scalars != f32.scalars, "the bf16 kernel must have run")
            } else {
                #expect(low.scalars == f32.scalars, "\(s) keys: the float32 kernel")
            }
        }
        let bf16Here = WeightProducts.path(for: .bfloat16) == .oneDNNBFloat16 && ck_attention_bf16_available() != 0
        #expect(attentionUsesBFloat16(precision: .bfloat16, headDim: 64) == bf16Here)
        #expect(!attentionUsesBFloat16(precision: .bfloat16, headDim: 63))
        #expect(!attentionUsesBFloat16(precision: .float32, headDim: 64))
    }

    @Test func keyMaskAndAdditiveMask() throws {
        let (b, sq, sk, h, dh) = (2, 9, 11, 2, 4)
        let q = rand([b, sq, h * dh], seed: 4), k = rand([b, sk, h * dh], seed: 5), v = rand([b, sk, h * dh], seed: 6)
        var keys = [Float](repeating: 1, count: b * sk)
        for j in 7..<sk { keys[j] = 0 }          // sample 0: last 4 keys padded
        keys[sk + 2] = 0                          // sample 1: key 2 masked
        let mask = try Tensor(shape: [b, sk], scalars: keys)
        let o = try attention(query: q, key: k, value: v, heads: h, mask: .keys(mask))
        expectClose(o, naive(q, k, v, heads: h, keep: { bi, j in keys[bi * sk + j] != 0 }))

        let add = rand([b, 1, 1, sk], seed: 7)
        let adds = d(add)
        let o2 = try attention(query: q, key: k, value: v, heads: h, mask: .additive(add))
        expectClose(o2, naive(q, k, v, heads: h, bias: { bi, _, _, j in adds[bi * sk + j] }))

        let full = rand([b, h, sq, sk], seed: 8)
        let fulls = d(full)
        let o3 = try attention(query: q, key: k, value: v, heads: h, mask: .additive(full))
        expectClose(o3, naive(q, k, v, heads: h, bias: { bi, hh, i, j in fulls[((bi * h + hh) * sq + i) * sk + j] }))
    }

    @Test func rejectsBadShapes() {
        let q = rand([1, 4, 8], seed: 1), k = rand([1, 5, 8], seed: 2)
        #expect(throws: TensorError.self) { try attention(query: q, key: k, value: k, heads: 3) }
        #expect(throws: TensorError.self) { try attention(query: q, key: k, value: rand([1, 6, 8], seed: 3), heads: 2) }
        #expect(throws: TensorError.self) {
            try attention(query: q, key: k, value: k, heads: 2, mask: .keys(rand([1, 4], seed: 4)))
        }
    }
}
