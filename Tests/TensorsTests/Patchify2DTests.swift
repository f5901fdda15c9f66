import Testing
@testable import Tensors

/// 2-D patch packing (FLUX latents) against an index loop, on odd grids.
@Suite struct Patchify2DTests {
    typealias Order = Patches.ChannelOrder

    /// Naive `[B, C, H, W]` → `[B, (H/p)(W/p), C·p·p]`: token `(hp, wp)` in raster order; inside a token
    /// `(c, ph, pw)` for channels-first and `(ph, pw, c)` for channels-last.
    static func naive(_ x: Tensor, patch p: Int, order: Order) -> [Float] {
        let (b, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (hp, wp) = (h / p, w / p)
        let xs = x.scalars
        let width = c * p * p
        var out = [Float](repeating: .nan, count: xs.count)
        for bi in 0..<b { for ci in 0..<c { for y in 0..<h { for xx in 0..<w {
            let token = (y / p) * wp + xx / p
            let (ph, pw) = (y % p, xx % p)
            let inner = order == .channelsFirst ? (ci * p + ph) * p + pw : (ph * p + pw) * c + ci
            out[(bi * hp * wp + token) * width + inner] = xs[((bi * c + ci) * h + y) * w + xx]
        } } } }
        return out
    }

    // (B, C, H, W, p): odd channel counts and grids (5×3, 7×1 and 3×3 patches), p = 1 (pure reshape).
    static let cases = [(2, 3, 15, 9, 3), (1, 5, 7, 7, 1), (3, 1, 14, 2, 2), (1, 16, 10, 6, 2)]

    @Test(arguments: [Order.channelsFirst, .channelsLast], cases)
    func patchifyMatchesIndexLoopAndRoundTrips(_ order: Order, _ c: (Int, Int, Int, Int, Int)) throws {
        let (b, ch, h, w, p) = c
        let x = rand([b, ch, h, w], seed: UInt64(h * w + ch))
        let t = try Patches.patchify2D(x, patch: p, order: order)
        #expect(t.shape == [b, (h / p) * (w / p), ch * p * p])
        // Pure data movement: exact equality.
        #expect(t.scalars == Self.naive(x, patch: p, order: order))
        let back = try Patches.unpatchify2D(t, height: h, width: w, patch: p, order: order)
        #expect(back.shape == [b, ch, h, w])
        #expect(back == x)
        // And the other way round, starting from arbitrary tokens.
        let tokens = rand(t.shape, seed: 99)
        #expect(try Patches.patchify2D(Patches.unpatchify2D(tokens, height: h, width: w, patch: p, order: order),
                                       patch: p, order: order) == tokens)
    }

    /// 2-D packing is the 3-D packing with one frame and a temporal patch of 1.
    @Test func agreesWithPatchify3D() throws {
        let x = rand([2, 3, 9, 15], seed: 5)
        for order in [Order.channelsFirst, .channelsLast] {
            let a = try Patches.patchify2D(x, patch: 3, order: order)
            let b = try Patches.patchify3D(x.reshaped([2, 3, 1, 9, 15]), patch: (1, 3, 3), order: order)
            #expect(a == b)
        }
    }

    @Test func shapeErrorsAreTyped() throws {
        func isShapeMismatch(_ e: TensorError?) -> Bool { if case .shapeMismatch? = e { true } else { false } }
        func isInvalidArgument(_ e: TensorError?) -> Bool { if case .invalidArgument? = e { true } else { false } }
        let x = rand([1, 3, 9, 15], seed: 6)
        // Not [B, C, H, W].
        #expect(isShapeMismatch(#expect(throws: TensorError.self) {
            try Patches.patchify2D(rand([3, 9, 15], seed: 1), patch: 3, order: .channelsFirst)
        }))
        // Grid not divisible by the patch; non-positive patches.
        for p in [2, 4, 0, -3] {
            #expect(isInvalidArgument(#expect(throws: TensorError.self) {
                try Patches.patchify2D(x, patch: p, order: .channelsLast)
            }), "patch \(p)")
        }
        let t = try Patches.patchify2D(x, patch: 3, order: .channelsFirst)   // [1, 15, 27]
        // Height/width not divisible by the patch.
        #expect(isInvalidArgument(#expect(throws: TensorError.self) {
            try Patches.unpatchify2D(t, height: 10, width: 15, patch: 3, order: .channelsFirst)
        }))
        // Token count does not match the grid (a 6×15 grid needs 2·5 = 10 tokens, there are 15).
        #expect(isShapeMismatch(#expect(throws: TensorError.self) {
            try Patches.unpatchify2D(t, height: 6, width: 15, patch: 3, order: .channelsFirst)
        }))
        // Token width not a multiple of p·p.
        #expect(isShapeMismatch(#expect(throws: TensorError.self) {
            try Patches.unpatchify2D(rand([1, 15, 26], seed: 2), height: 9, width: 15, patch: 3, order: .channelsLast)
        }))
        // Tokens not [B, N, D].
        #expect(isShapeMismatch(#expect(throws: TensorError.self) {
            try Patches.unpatchify2D(rand([15, 27], seed: 3), height: 9, width: 15, patch: 3, order: .channelsLast)
        }))
    }
}
