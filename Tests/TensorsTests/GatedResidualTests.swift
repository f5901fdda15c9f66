import Testing
@testable import Tensors
import CKernels

/// The one gated-residual kernel (``addGated(_:_:gate:)``): every gate kind against a naive loop of the
/// same float32 operations (`h + (x·g)`, the product rounded first — so equality is exact), on odd sizes,
/// on every vector width this CPU runs, in place and as a new tensor; shapes that do not fit are errors.
@Suite struct GatedResidualTests {
    /// `h + x·g` in float32 with the product rounded before the sum.
    static func naive(_ h: [Float], _ x: [Float], gateRow: (Int) -> ArraySlice<Float>, width d: Int) -> [Float] {
        var out = h
        for r in 0..<(h.count / d) {
            let g = Array(gateRow(r))
            for j in 0..<d { let p = x[r * d + j] * g[j]; out[r * d + j] = h[r * d + j] + p }
        }
        return out
    }

    @Test(arguments: [(2, 5, 37), (1, 3, 16), (3, 1, 7), (2, 4, 1)])
    func everyGateKindMatchesTheNaiveLoop(_ size: (Int, Int, Int)) throws {
        let (b, t, d) = size
        let h = rand([b, t, d], seed: 1), x = rand([b, t, d], seed: 2)
        let perSample = rand([b, d], seed: 3), perToken = rand([b, t, d], seed: 4), m = rand([b, 6 * d], seed: 5)
        let l = t / 2
        let cases: [(ResidualGate, (Int) -> ArraySlice<Float>)] = [
            (.perSample(perSample), { r in perSample.scalars[((r / t) * d)..<((r / t) * d + d)] }),
            (.perSample(try perSample.reshaped([b, 1, d])), { r in perSample.scalars[((r / t) * d)..<((r / t) * d + d)] }),
            (.perToken(perToken), { r in perToken.scalars[(r * d)..<(r * d + d)] }),
            (.chunks(of: m, leadingRows: l, leading: 5, trailing: 2), { r in
                let c = (r / t) * 6 + (r % t < l ? 5 : 2)
                return m.scalars[(c * d)..<(c * d + d)]
            }),
        ]
        for (gate, row) in cases {
            let want = Self.naive(h.scalars, x.scalars, gateRow: row, width: d)
            #expect(try addingGated(h, x, gate: gate).scalars == want)
            var inPlace = h
            try addGated(&inPlace, x, gate: gate)
            #expect(inPlace.scalars == want)
        }
    }

    /// Each vector width (portable, AVX2, AVX-512 — as many as this CPU runs) equals the portable loop
    /// exactly, across tails of every length.
    @Test func everyVectorWidthEqualsThePortableLoop() {
        for n in [1, 7, 8, 15, 16, 17, 33, 100] {
            let h = rand([n], seed: 11).scalars, x = rand([n], seed: 12).scalars, g = rand([n], seed: 13).scalars
            var reference = [Float](repeating: 0, count: n)
            ck_add_gated_portable(h, x, g, &reference, n)
            for j in 0..<n { let p = x[j] * g[j]; #expect(reference[j] == h[j] + p) }
            for level in 1...max(1, Int(ck_level())) {
                var out = [Float](repeating: 0, count: n)
                ck_add_gated_level(Int32(level), h, x, g, &out, n)
                #expect(out == reference, "level \(level), n \(n)")
            }
        }
    }

    @Test func shapesThatDoNotFitAreErrors() throws {
        let h = rand([2, 3, 4], seed: 1), x = rand([2, 3, 4], seed: 2)
        #expect(throws: TensorError.self) { try addingGated(h, rand([2, 3, 5], seed: 2), gate: .perSample(rand([2, 4], seed: 3))) }
        #expect(throws: TensorError.self) { try addingGated(h, x, gate: .perSample(rand([2, 3], seed: 3))) }
        #expect(throws: TensorError.self) { try addingGated(h, x, gate: .perToken(rand([2, 1, 4], seed: 3))) }
        #expect(throws: TensorError.self) { try addingGated(h, x, gate: .chunks(of: rand([2, 10], seed: 3), leadingRows: 1, leading: 0, trailing: 1)) }
        #expect(throws: TensorError.self) { try addingGated(h, x, gate: .chunks(of: rand([2, 8], seed: 3), leadingRows: 4, leading: 0, trailing: 1)) }
        #expect(throws: TensorError.self) { try addingGated(h, x, gate: .chunks(of: rand([2, 8], seed: 3), leadingRows: 1, leading: 2, trailing: 1)) }
    }
}
