import Testing
@testable import Tensors

@Suite struct ShapeTests {
    @Test func constructionErrors() {
        #expect(throws: TensorError.scalarCountMismatch(shape: [2, 2], expected: 4, got: 3)) {
            try Tensor(shape: [2, 2], scalars: [1, 2, 3])
        }
        #expect(throws: TensorError.self) { try Tensor(zeros: [2, -1]) }
        #expect(throws: TensorError.self) { try Tensor(zeros: [Int.max, 3]) }
    }

    @Test func reshapeIsAViewAndCopyOnWriteProtectsIt() throws {
        var a = try Tensor(shape: [2, 3], scalars: [1, 2, 3, 4, 5, 6])
        let b = try a.reshaped([3, -1])
        #expect(b.shape == [3, 2])
        a[0, 0] = 100
        #expect(b[0, 0] == 1, "mutating a must not change its view b")
        #expect(throws: TensorError.self) { try a.reshaped([4, 2]) }
        #expect(throws: TensorError.self) { try a.reshaped([-1, -1]) }
    }

    @Test func permuteMatchesIndexMapping() throws {
        let a = rand([2, 3, 4, 5], seed: 1)
        let p = try a.permuted([2, 0, 3, 1])
        #expect(p.shape == [4, 2, 5, 3])
        for i in 0..<2 { for j in 0..<3 { for k in 0..<4 { for l in 0..<5 {
            #expect(p[k, i, l, j] == a[i, j, k, l])
        } } } }
        #expect(throws: TensorError.self) { try a.permuted([0, 0, 1, 2]) }
    }

    @Test func sliceConcatSplitChunk() throws {
        let a = rand([3, 4, 5], seed: 2)
        let s = try a.slice(axis: 1, 1..<3)
        #expect(s.shape == [3, 2, 5])
        for i in 0..<3 { for j in 0..<2 { for k in 0..<5 { #expect(s[i, j, k] == a[i, j + 1, k]) } } }
        let parts = try a.split(sizes: [1, 3], axis: 1)
        let back = try Tensor.concatenate(parts, axis: 1)
        #expect(back == a)
        let ch = try a.chunked(5, axis: -1)
        #expect(ch.count == 5 && ch[4].shape == [3, 4, 1] && ch[4][2, 3, 0] == a[2, 3, 4])
        #expect(try Tensor.concatenate(ch, axis: 2) == a)
        #expect(throws: TensorError.self) { try a.slice(axis: 1, 2..<5) }
        #expect(throws: TensorError.self) { try a.split(sizes: [1, 2], axis: 1) }
        #expect(throws: TensorError.self) { try a.chunked(3, axis: 1) }
        #expect(throws: TensorError.self) { try Tensor.concatenate([a, rand([3, 5, 5], seed: 3)], axis: 0) }
        #expect(throws: TensorError.self) { try a.slice(axis: 3, 0..<1) }
    }

    @Test func broadcastingArithmetic() throws {
        let a = rand([2, 3, 4], seed: 4)
        let row = rand([4], seed: 5), col = rand([2, 3, 1], seed: 6), mid = rand([2, 1, 4], seed: 7)
        let s1 = try a + row, s2 = try a * col, s3 = try a - mid, s4 = try a / (row + 3)
        for i in 0..<2 { for j in 0..<3 { for k in 0..<4 {
            #expect(s1[i, j, k] == a[i, j, k] + row[k])
            #expect(s2[i, j, k] == a[i, j, k] * col[i, j, 0])
            #expect(s3[i, j, k] == a[i, j, k] - mid[i, 0, k])
            #expect(abs(s4[i, j, k] - a[i, j, k] / (row[k] + 3)) <= 1e-7)
        } } }
        #expect(throws: TensorError.self) { try a + rand([3], seed: 1) }
        let big = rand([3, 1000], seed: 8), brow = rand([1000], seed: 9)
        let sb = try big + brow
        for j in stride(from: 0, to: 1000, by: 37) { #expect(sb[2, j] == big[2, j] + brow[j]) }
    }

    @Test func reductions() throws {
        let a = try Tensor(shape: [5], scalars: [1, -2, 3, -4, 5])
        #expect(a.sum() == 3)
        #expect(a.meanAbsolute() == 3)
        let b = try Tensor(shape: [5], scalars: [0, 0, 0, 0, 0])
        #expect(try Tensor.meanAbsoluteDifference(a, b) == 3)
        #expect(try Tensor.relativeL2(b, a) == 1)
    }

    @Test func patchifyRoundTripAndOrder() throws {
        let x = rand([2, 3, 4, 6, 8], seed: 10)
        for order in [Patches.ChannelOrder.channelsFirst, .channelsLast] {
            let t = try Patches.patchify3D(x, patch: (2, 3, 2), order: order)
            #expect(t.shape == [2, 2 * 2 * 4, 3 * 12])
            // Token (b, f', h', w') value (c, pt, ph, pw) ↔ x[b, c, f'·2+pt, h'·3+ph, w'·2+pw].
            let b = 1, f = 1, h = 0, w = 3, c = 2, pt = 1, ph = 2, pw = 0
            let token = (f * 2 + h) * 4 + w
            let inner = order == .channelsFirst ? ((c * 2 + pt) * 3 + ph) * 2 + pw : ((pt * 3 + ph) * 2 + pw) * 3 + c
            #expect(t[b, token, inner] == x[b, c, f * 2 + pt, h * 3 + ph, w * 2 + pw])
            let back = try Patches.unpatchify3D(t, grid: (4, 6, 8), patch: (2, 3, 2), order: order)
            #expect(back == x)
        }
        #expect(throws: TensorError.self) { try Patches.patchify3D(x, patch: (3, 3, 2), order: .channelsFirst) }
    }

    /// Rows of axis 0 picked in any order, repeated, of a rank-3 tensor: each output row equals the
    /// source row it names; bad selections are typed errors naming the index.
    @Test func gatheringRowsCopiesTheNamedRows() throws {
        let x = try Tensor(shape: [4, 2, 3], scalars: (0..<24).map(Float.init))
        let g = try x.gatheringRows([3, 0, 3, 1])
        #expect(g.shape == [4, 2, 3])
        #expect(g.scalars == [3, 0, 3, 1].flatMap { r in (0..<6).map { Float(r * 6 + $0) } })
        #expect(throws: TensorError.self) { try x.gatheringRows([]) }
        #expect(throws: TensorError.self) { try x.gatheringRows([4]) }
        #expect(throws: TensorError.self) { try x.gatheringRows([-1]) }
        do { _ = try x.gatheringRows([0, 7]); Issue.record("index 7 accepted") } catch {
            #expect("\(error)".contains("index 7 is outside 0..<4"))
        }
    }
}
