import CKernels
import Foundation
import Testing
@testable import Tensors

/// `ck_norm_rows` and `ck_rope_row` on every version this CPU runs (portable, AVX2+FMA, AVX-512F) against
/// Double references, on widths that leave vector tails; and ``preparedHeads(_:width:heads:rope:)``
/// against the unfused operations it replaces.
@Suite struct RowKernelTests {
    static let levels = [0, 1, 2]

    /// `n` values in about [-3, 3] (and a constant offset, so LayerNorm's centring matters).
    static func values(_ n: Int, seed: UInt64, offset: Float = 0) -> [Float] {
        rand([max(n, 1)], seed: seed).scalars.prefix(n).map { $0 * 3 + offset }
    }

    // MARK: ck_norm_rows

    /// The Double reference of one row of `ck_norm_rows`.
    static func normReference(_ x: [Float], mode: Int32, eps: Float, w: [Float]?, b: [Float]?, sc: [Float]?,
                              sf: [Float]?) -> [Double] {
        let xs = x.map(Double.init), n = Double(x.count)
        var mean = 0.0, inv = 1.0
        if mode == CK_NORM_LAYER { mean = xs.reduce(0, +) / n }
        if mode != CK_NORM_NONE {
            let v = xs.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / n
            inv = 1 / (v + Double(eps)).squareRoot()
        }
        return xs.indices.map { j in
            var t = (xs[j] - mean) * inv
            if let w { t *= Double(w[j]) }
            if let b { t += Double(b[j]) }
            if let sc { t *= 1 + Double(sc[j]) }
            if let sf { t += Double(sf[j]) }
            return t
        }
    }

    @Test(arguments: [CK_NORM_NONE, CK_NORM_LAYER, CK_NORM_RMS])
    func normRowMatchesDoubleOnEveryPath(mode: Int32) {
        for d in [1, 7, 16, 37, 64, 130] {
            let x = Self.values(d, seed: UInt64(d), offset: 2)
            let w = Self.values(d, seed: 100 + UInt64(d)), b = Self.values(d, seed: 200 + UInt64(d))
            let sc = Self.values(d, seed: 300 + UInt64(d)), sf = Self.values(d, seed: 400 + UInt64(d))
            for (hasW, hasB, hasScale, hasShift) in [(false, false, false, false), (true, false, false, false),
                                                     (true, true, false, false), (false, false, true, true),
                                                     (true, true, true, false), (false, true, false, true)] {
                let ref = Self.normReference(x, mode: mode, eps: 1e-5, w: hasW ? w : nil, b: hasB ? b : nil,
                                             sc: hasScale ? sc : nil, sf: hasShift ? sf : nil)
                let scale = ref.map(abs).max()! + 1
                var outputs: [[Float]] = []
                for level in Self.levels {
                    var out = [Float](repeating: .nan, count: d)
                    w.withUnsafeBufferPointer { pw in b.withUnsafeBufferPointer { pb in
                        sc.withUnsafeBufferPointer { psc in sf.withUnsafeBufferPointer { psf in
                            ck_norm_rows_level(Int32(level), x, Int64(d), &out, Int64(d), 1, d, mode, 1e-5, hasW ? pw.baseAddress : nil,
                                              hasB ? pb.baseAddress : nil, hasScale ? psc.baseAddress : nil,
                                              hasShift ? psf.baseAddress : nil)
                        }}
                    }}
                    // Float32 rounding of a few operations on values of this scale: 1e-5 of the largest.
                    let err = zip(out, ref).map { abs(Double($0) - $1) }.max()!
                    #expect(err <= 1e-5 * scale, "mode \(mode) d \(d) level \(level) w\(hasW) b\(hasB) s\(hasScale) t\(hasShift): \(err)")
                    outputs.append(out)
                }
                if mode == CK_NORM_NONE {
                    // No sums: every version computes the same operations in the same order.
                    #expect(outputs.allSatisfy { $0 == outputs[0] }, "mode none d \(d): versions differ")
                }
            }
        }
    }

    @Test func normRowInPlace() {
        let x = Self.values(70, seed: 5, offset: 1)
        for level in Self.levels {
            var copy = [Float](repeating: 0, count: 70)
            ck_norm_rows_level(Int32(level), x, 70, &copy, 70, 1, 70, CK_NORM_LAYER, 1e-6, nil, nil, nil, nil)
            var inPlace = x
            inPlace.withUnsafeMutableBufferPointer { p in
                ck_norm_rows_level(Int32(level), p.baseAddress!, 70, p.baseAddress!, 70, 1, 70, CK_NORM_LAYER, 1e-6, nil, nil,
                                   nil, nil)
            }
            #expect(inPlace == copy, "level \(level)")
        }
    }

    /// Many rows per call (strided, as the heads of a projection row are), including the AVX-512 register
    /// path for rows of at most 64 values: each row as a call of its own would compute it.
    @Test func manyStridedRowsEqualOneRowAtATime() {
        for d in [5, 16, 48, 64, 65, 100] {
            let (count, ldx, ldo) = (7, d + 3, d + 1)
            let x = Self.values(count * ldx, seed: UInt64(d), offset: 1)
            let w = Self.values(d, seed: 7), b = Self.values(d, seed: 8), sc = Self.values(d, seed: 9)
            for level in Self.levels {
                for mode in [CK_NORM_NONE, CK_NORM_LAYER, CK_NORM_RMS] {
                    var all = [Float](repeating: -7, count: count * ldo), single = all
                    ck_norm_rows_level(Int32(level), x, Int64(ldx), &all, Int64(ldo), count, d, mode, 1e-6, w, b, sc, nil)
                    single.withUnsafeMutableBufferPointer { o in
                        x.withUnsafeBufferPointer { xp in
                            for r in 0..<count {
                                ck_norm_rows_level(Int32(level), xp.baseAddress! + r * ldx, Int64(ldx), o.baseAddress! + r * ldo, Int64(ldo),
                                                   1, d, mode, 1e-6, w, b, sc, nil)
                            }
                        }
                    }
                    #expect(all == single, "d \(d) level \(level) mode \(mode)")
                    // The gaps between output rows are left alone.
                    #expect((0..<count).allSatisfy { r in (d..<ldo).allSatisfy { all[r * ldo + $0] == -7 } })
                    let ref = Self.normReference(Array(x[(2 * ldx)..<(2 * ldx + d)]), mode: mode, eps: 1e-6, w: w, b: b,
                                                 sc: sc, sf: nil)
                    let err = zip(all[(2 * ldo)..<(2 * ldo + d)], ref).map { abs(Double($0) - $1) }.max()!
                    #expect(err <= 1e-5 * (ref.map(abs).max()! + 1), "d \(d) level \(level) mode \(mode): \(err)")
                }
            }
        }
    }

    // MARK: ck_rope_row

    @Test(arguments: [Int32(0), 1])
    func ropeRowMatchesDoubleAndIsIdenticalOnEveryPath(split: Int32) {
        for (heads, d) in [(1, 2), (3, 6), (2, 18), (4, 36), (1, 70), (2, 64)] {
            let x = Self.values(heads * d, seed: UInt64(d))
            let angles = (0..<d).map { Double($0 / 2 + 1) * 0.37 }
            let cs = angles.map { Float(Foundation.cos($0)) }, sn = angles.map { Float(Foundation.sin($0)) }
            var ref = [Double](repeating: 0, count: heads * d)
            for h in 0..<heads {
                for p in 0..<(d / 2) {
                    let (i, j) = split == 1 ? (p, p + d / 2) : (2 * p, 2 * p + 1)
                    let a = Double(x[h * d + i]), b = Double(x[h * d + j])
                    ref[h * d + i] = a * Double(cs[i]) - b * Double(sn[i])
                    ref[h * d + j] = b * Double(cs[j]) + a * Double(sn[j])
                }
            }
            var outputs: [[Float]] = []
            for level in Self.levels {
                var out = [Float](repeating: .nan, count: heads * d)
                ck_rope_row_level(Int32(level), x, &out, heads, d, cs, sn, split)
                // Two products and a sum, each rounded once: 3 ulp of the operands' scale.
                let err = zip(out, ref).map { abs(Double($0) - $1) }.max()!
                #expect(err <= 1e-6 * 4, "heads \(heads) d \(d) split \(split) level \(level): \(err)")
                var inPlace = x
                inPlace.withUnsafeMutableBufferPointer { p in
                    ck_rope_row_level(Int32(level), p.baseAddress!, p.baseAddress!, heads, d, cs, sn, split)
                }
                #expect(inPlace == out, "in place differs: heads \(heads) d \(d) level \(level)")
                outputs.append(out)
            }
            // Products rounded before the sum everywhere: the versions agree bit for bit.
            #expect(outputs.allSatisfy { $0 == outputs[0] }, "heads \(heads) d \(d) split \(split): versions differ")
        }
    }

    @Test(arguments: [RotaryEmbedding.Layout.interleaved, .splitHalves])
    func rotateRowMatchesApplyOnEveryRow(layout: RotaryEmbedding.Layout) throws {
        let (s, heads, dh) = (5, 3, 10)
        let x = rand([1, s, heads * dh], seed: 30), c = rand([s, dh], seed: 31), sn = rand([s, dh], seed: 32)
        var rows = x.scalars
        c.withUnsafeBufferPointer { pc in
            sn.withUnsafeBufferPointer { ps in
                rows.withUnsafeMutableBufferPointer { p in
                    for t in 0..<s {
                        RotaryEmbedding.rotateRow(p.baseAddress! + t * heads * dh, heads: heads, headDim: dh,
                                                  cos: pc.baseAddress! + t * dh, sin: ps.baseAddress! + t * dh, layout: layout)
                    }
                }
            }
        }
        #expect(rows == (try RotaryEmbedding.apply(x, cos: c, sin: sn, heads: heads, layout: layout)).scalars)
    }

    // MARK: preparedHeads

    /// The unfused sequence: slice each segment's columns, normalise, concatenate, rotate.
    static func unfused(_ segments: [HeadSegment], width: Int, heads: Int,
                        rope: (cos: Tensor, sin: Tensor, layout: RotaryEmbedding.Layout)?) throws -> Tensor {
        let dh = width / heads
        let parts = try segments.map { s throws -> Tensor in
            var t = try s.tensor.slice(axis: 2, s.column..<(s.column + width))
            if let n = s.norm {
                let shape = t.shape
                let rows = n.perHead ? try t.reshaped([shape[0], shape[1], heads, dh]) : t
                t = try (n.kind == .rms ? rmsNorm(rows, weight: n.weight, eps: n.eps)
                                        : layerNorm(rows, weight: n.weight, bias: n.bias, eps: n.eps)).reshaped(shape)
            }
            return t
        }
        let joined = try Tensor.concatenate(parts, axis: 1)
        guard let rope else { return joined }
        return try RotaryEmbedding.apply(joined, cos: rope.cos, sin: rope.sin, heads: heads, layout: rope.layout)
    }

    @Test(arguments: [RotaryEmbedding.Layout.interleaved, .splitHalves])
    func preparedHeadsIsBitIdenticalToTheUnfusedOperations(layout: RotaryEmbedding.Layout) throws {
        let (b, heads, dh) = (2, 3, 10)
        let width = heads * dh
        let text = rand([b, 5, 3 * width + 4], seed: 1), image = rand([b, 9, 3 * width], seed: 2)
        let pos = try Tensor(shape: [14, 1], scalars: (0..<14).map { Float($0) })
        let (c, s) = try RotaryEmbedding.tables(positions: pos, axesDims: [dh], theta: 50, layout: layout)
        let perHeadRMS = HeadNormalisation(.rms, weight: rand([dh], seed: 3), eps: 1e-6)
        let perHeadLayer = HeadNormalisation(.layer, weight: rand([dh], seed: 4), bias: rand([dh], seed: 5), eps: 1e-5)
        let wholeRMS = HeadNormalisation(.rms, weight: rand([width], seed: 6), eps: 1e-5, perHead: false)
        let wholeLayer = HeadNormalisation(.layer, weight: nil, eps: 1e-6, perHead: false)
        let cases: [([HeadSegment], Bool)] = [
            ([HeadSegment(text, column: 0, norm: perHeadRMS), HeadSegment(image, column: 0, norm: perHeadLayer)], true),
            ([HeadSegment(text, column: width + 4, norm: wholeRMS), HeadSegment(image, column: width, norm: wholeLayer)], true),
            ([HeadSegment(text, column: 2 * width), HeadSegment(image, column: 2 * width)], false),
            ([HeadSegment(image, column: width, norm: perHeadRMS)], false),
        ]
        for (segments, rotate) in cases {
            let sequence = segments.map { $0.tensor.shape[1] }.reduce(0, +)
            let r = rotate ? (cos: try c.slice(axis: 0, 0..<sequence), sin: try s.slice(axis: 0, 0..<sequence), layout: layout)
                           : nil
            let fused = try preparedHeads(segments, width: width, heads: heads, rope: r)
            let reference = try Self.unfused(segments, width: width, heads: heads, rope: r)
            #expect(fused.shape == reference.shape)
            #expect(fused.scalars == reference.scalars, "segments at columns \(segments.map(\.column)), rope \(rotate)")
        }
    }

    @Test func rowsBeforeRotatedFromAreNotRotated() throws {
        let (heads, dh, l) = (2, 6, 3)
        let width = heads * dh
        let p = rand([2, 8, 2 * width], seed: 11)
        let norm = HeadNormalisation(.layer, weight: rand([dh], seed: 12), bias: rand([dh], seed: 13), eps: 1e-6)
        let pos = try Tensor(shape: [8 - l, 1], scalars: (0..<(8 - l)).map { Float($0) + 0.5 })
        let (c, s) = try RotaryEmbedding.tables(positions: pos, axesDims: [dh], theta: 30)
        let fused = try preparedHeads([HeadSegment(p, column: width, norm: norm)], width: width, heads: heads,
                                      rope: (c, s, .interleaved), rotatedFrom: l)
        let normed = try preparedHeads([HeadSegment(p, column: width, norm: norm)], width: width, heads: heads)
        let rotated = try RotaryEmbedding.apply(normed.slice(axis: 1, l..<8), cos: c, sin: s, heads: heads)
        let reference = try Tensor.concatenate([normed.slice(axis: 1, 0..<l), rotated], axis: 1)
        #expect(fused.scalars == reference.scalars)
        #expect(throws: TensorError.self) {
            try preparedHeads([HeadSegment(p)], width: width, heads: heads, rope: (c, s, .interleaved), rotatedFrom: 2)
        }
        #expect(throws: TensorError.self) { try preparedHeads([HeadSegment(p)], width: width, heads: heads, rotatedFrom: 9) }
    }

    @Test func joiningOperandReadsOneSegmentInPlaceAndJoinsSeveral() throws {
        let (a, b) = (rand([2, 3, 20], seed: 21), rand([2, 5, 16], seed: 22))
        let one = try AttentionOperand(joining: [HeadSegment(a, column: 12)], width: 8, heads: 2)
        #expect(one.column == 12 && one.tensor.shape == [2, 3, 20] && one.tensor.scalars == a.scalars)
        let both = try AttentionOperand(joining: [HeadSegment(a, column: 12), HeadSegment(b, column: 4)], width: 8, heads: 2)
        let reference = try Tensor.concatenate([a.slice(axis: 2, 12..<20), b.slice(axis: 2, 4..<12)], axis: 1)
        #expect(both.column == 0 && both.tensor.shape == [2, 8, 8] && both.tensor.scalars == reference.scalars)
        let norm = HeadNormalisation(.rms, weight: nil, eps: 1e-6)
        let normed = try AttentionOperand(joining: [HeadSegment(a, column: 12, norm: norm)], width: 8, heads: 2)
        #expect(normed.tensor.scalars == (try rmsNorm(a.slice(axis: 2, 12..<20).reshaped([2, 3, 2, 4]), eps: 1e-6)).scalars)
        #expect(throws: TensorError.self) { try AttentionOperand(joining: [HeadSegment(a), HeadSegment(rand([3, 1, 20], seed: 1))], width: 8, heads: 2) }
    }

    @Test func preparedHeadsRejectsBadInput() throws {
        let x = rand([1, 4, 12], seed: 1), y = rand([2, 4, 12], seed: 2)
        let tables = (cos: rand([4, 4], seed: 3), sin: rand([4, 4], seed: 4), layout: RotaryEmbedding.Layout.interleaved)
        #expect(throws: TensorError.self) { try preparedHeads([], width: 4, heads: 1) }
        #expect(throws: TensorError.self) { try preparedHeads([HeadSegment(x, column: 10)], width: 4, heads: 1) }
        #expect(throws: TensorError.self) { try preparedHeads([HeadSegment(x), HeadSegment(y)], width: 4, heads: 1) }
        #expect(throws: TensorError.self) { try preparedHeads([HeadSegment(x)], width: 6, heads: 4) }
        #expect(throws: TensorError.self) {
            try preparedHeads([HeadSegment(x, norm: HeadNormalisation(.rms, weight: rand([3], seed: 5), eps: 1e-6))],
                              width: 8, heads: 2)
        }
        #expect(throws: TensorError.self) { try preparedHeads([HeadSegment(x), HeadSegment(x)], width: 8, heads: 2, rope: tables) }
        #expect(throws: TensorError.self) { try preparedHeads([HeadSegment(rand([4, 12], seed: 6))], width: 4, heads: 1) }
    }

    // MARK: activated(_:column:width:_:)

    @Test func activatedColumnsMatchSliceThenActivation() throws {
        let x = rand([2, 7, 45], seed: 9)
        for (column, width) in [(0, 45), (3, 17), (40, 5), (10, 0)] {
            let part = try x.slice(axis: 2, column..<(column + width))
            #expect(try activated(x, column: column, width: width, .gelu(.tanh)).scalars == gelu(part, approximation: .tanh).scalars)
            #expect(try activated(x, column: column, width: width, .silu).scalars == silu(part).scalars)
        }
        #expect(throws: TensorError.self) { try activated(x, column: 40, width: 6, .silu) }
        #expect(throws: TensorError.self) { try activated(x, column: -1, width: 3, .silu) }
    }
}
