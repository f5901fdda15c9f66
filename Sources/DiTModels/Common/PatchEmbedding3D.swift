import Tensors

/// A 3-D patch embedding: `nn.Conv3d(C, D, kernel_size=patch, stride=patch)` over a `[B, C, F, H, W]`
/// latent, flattened to tokens in (frame, row, column) raster order — diffusers' `HunyuanVideoPatchEmbed`,
/// and the `patch_embedding` of Wan and Mochi-style video transformers.
///
/// With kernel = stride the convolution is a patchify followed by one matmul: the weight
/// `[D, C, pt, ph, pw]` read as `[D, C·pt·ph·pw]` has the `(c, pt, ph, pw)` column order of
/// `Patches/ChannelOrder/channelsFirst`.
public struct PatchEmbedding3D: Sendable {
    /// The weight as a matrix `[D, C·pt·ph·pw]` and the bias `[D]` (or none).
    public let projection: Linear
    /// The patch extent (frames, height, width).
    public let patch: (t: Int, h: Int, w: Int)
    /// Input channels C.
    public let inChannels: Int

    /// Takes `weight` `[outChannels, inChannels, pt, ph, pw]` (and `bias` `[outChannels]` when `bias` is true)
    /// of the scope (e.g. `x_embedder.proj`).
    public init(_ weights: WeightScope, inChannels: Int, outChannels: Int, patch: (t: Int, h: Int, w: Int), bias: Bool = true) {
        self.init(weights, kernel: [outChannels, inChannels, patch.t, patch.h, patch.w], patch: patch, bias: bias)
    }

    /// Takes a per-frame `nn.Conv2d` (diffusers' `PatchEmbed.proj`, e.g. Latte's `pos_embed.proj`): `weight`
    /// `[outChannels, inChannels, ph, pw]` (and `bias`) of the scope — the 3-D embedding with a temporal
    /// patch of 1, whose `[D, C·ph·pw]` matrix has the same `(c, ph, pw)` column order.
    public init(_ weights: WeightScope, inChannels: Int, outChannels: Int, framePatch patch: (h: Int, w: Int), bias: Bool = true) {
        self.init(weights, kernel: [outChannels, inChannels, patch.h, patch.w], patch: (1, patch.h, patch.w), bias: bias)
    }

    /// Takes `weight` of shape `kernel` (`[D, C, …]`) read as `[D, C·…]`, and `bias` `[D]` when `bias` is true.
    private init(_ weights: WeightScope, kernel: [Int], patch: (t: Int, h: Int, w: Int), bias: Bool) {
        let w = weights.tensor("weight", shape: kernel)
        // A mis-shaped stored weight is a placeholder here, already recorded by the loader as mis-shaped.
        let flat = (try? w.reshaped([kernel[0], kernel.dropFirst().reduce(1, *)])) ?? w
        projection = Linear(weight: flat, bias: bias ? weights.tensor("bias", shape: [kernel[0]]) : nil)
        self.patch = patch
        inChannels = kernel[1]
    }

    /// `[B, C, F, H, W]` → tokens `[B, (F/pt)(H/ph)(W/pw), D]`.
    /// - Throws: `TensorError` when the input is not 5-D with C channels or its grid is not divisible by the patch.
    public func callAsFunction(_ x: Tensor) throws(TensorError) -> Tensor {
        guard x.rank == 5, x.shape[1] == inChannels else {
            throw .shapeMismatch(operation: "3-D patch embedding", shapes: [x.shape],
                                 reason: "expected [B, \(inChannels), F, H, W]")
        }
        return try projection(Patches.patchify3D(x, patch: patch, order: .channelsFirst))
    }
}
