/// Conversions between latent grids and patch tokens.
public enum Patches {
    /// The order of the values inside one patch token.
    public enum ChannelOrder: Sendable {
        /// `(c, pt, ph, pw)`: channel outermost. This is the flattening of a Conv3d/Conv2d kernel
        /// `[out, C, pt, ph, pw]` and of FLUX's latent packing.
        case channelsFirst
        /// `(pt, ph, pw, c)`: channel innermost (the output tokens of Wan and HunyuanVideo).
        case channelsLast
    }

    /// `[B, C, F, H, W]` → `[B, (F/pt)(H/ph)(W/pw), C·pt·ph·pw]`, tokens in (f, h, w) raster order.
    public static func patchify3D(
        _ x: Tensor, patch: (t: Int, h: Int, w: Int), order: ChannelOrder
    ) throws(TensorError) -> Tensor {
        guard x.rank == 5 else {
            throw .shapeMismatch(operation: "patchify3D", shapes: [x.shape], reason: "expected [B, C, F, H, W]")
        }
        let (b, c, f, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3], x.shape[4])
        guard patch.t > 0, patch.h > 0, patch.w > 0, f % patch.t == 0, h % patch.h == 0, w % patch.w == 0 else {
            throw .invalidArgument(operation: "patchify3D",
                                   reason: "grid \(f)×\(h)×\(w) is not divisible by patch \(patch.t)×\(patch.h)×\(patch.w)")
        }
        let (ft, ht, wt) = (f / patch.t, h / patch.h, w / patch.w)
        // [B, C, ft, pt, ht, ph, wt, pw]
        let v = try x.reshaped([b, c, ft, patch.t, ht, patch.h, wt, patch.w])
        let axes: [Int] = order == .channelsFirst ? [0, 2, 4, 6, 1, 3, 5, 7] : [0, 2, 4, 6, 3, 5, 7, 1]
        return try v.permuted(axes).reshaped([b, ft * ht * wt, c * patch.t * patch.h * patch.w])
    }

    /// Inverse of ``patchify3D(_:patch:order:)``: `[B, (F/pt)(H/ph)(W/pw), C·pt·ph·pw]` → `[B, C, F, H, W]`.
    public static func unpatchify3D(
        _ tokens: Tensor, grid: (f: Int, h: Int, w: Int), patch: (t: Int, h: Int, w: Int), order: ChannelOrder
    ) throws(TensorError) -> Tensor {
        guard tokens.rank == 3 else {
            throw .shapeMismatch(operation: "unpatchify3D", shapes: [tokens.shape], reason: "expected [B, N, D]")
        }
        guard patch.t > 0, patch.h > 0, patch.w > 0,
              grid.f % patch.t == 0, grid.h % patch.h == 0, grid.w % patch.w == 0 else {
            throw .invalidArgument(operation: "unpatchify3D", reason: "grid is not divisible by the patch size")
        }
        let (ft, ht, wt) = (grid.f / patch.t, grid.h / patch.h, grid.w / patch.w)
        let p = patch.t * patch.h * patch.w
        let b = tokens.shape[0]
        guard tokens.shape[1] == ft * ht * wt, tokens.shape[2] % p == 0 else {
            throw .shapeMismatch(operation: "unpatchify3D", shapes: [tokens.shape],
                                 reason: "expected \(ft * ht * wt) tokens of a multiple of \(p) values")
        }
        let c = tokens.shape[2] / p
        if order == .channelsFirst {
            let v = try tokens.reshaped([b, ft, ht, wt, c, patch.t, patch.h, patch.w])
            return try v.permuted([0, 4, 1, 5, 2, 6, 3, 7]).reshaped([b, c, grid.f, grid.h, grid.w])
        } else {
            let v = try tokens.reshaped([b, ft, ht, wt, patch.t, patch.h, patch.w, c])
            return try v.permuted([0, 7, 1, 4, 2, 5, 3, 6]).reshaped([b, c, grid.f, grid.h, grid.w])
        }
    }

    /// `[B, C, H, W]` → `[B, (H/p)(W/p), C·p·p]` (FLUX's latent packing with `order: .channelsFirst`).
    public static func patchify2D(_ x: Tensor, patch: Int, order: ChannelOrder) throws(TensorError) -> Tensor {
        guard x.rank == 4 else {
            throw .shapeMismatch(operation: "patchify2D", shapes: [x.shape], reason: "expected [B, C, H, W]")
        }
        let v = try x.reshaped([x.shape[0], x.shape[1], 1, x.shape[2], x.shape[3]])
        return try patchify3D(v, patch: (1, patch, patch), order: order)
    }

    /// Inverse of ``patchify2D(_:patch:order:)``.
    public static func unpatchify2D(
        _ tokens: Tensor, height: Int, width: Int, patch: Int, order: ChannelOrder
    ) throws(TensorError) -> Tensor {
        let v = try unpatchify3D(tokens, grid: (1, height, width), patch: (1, patch, patch), order: order)
        return try v.reshaped([v.shape[0], v.shape[1], height, width])
    }
}
