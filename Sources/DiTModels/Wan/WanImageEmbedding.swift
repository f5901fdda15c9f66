import Tensors

/// diffusers' `WanImageEmbedding` (image-to-video): image-encoder features → `norm1` (affine
/// LayerNorm, ε = 1e-5) → feed-forward (exact GELU, hidden width = input width) → `norm2` (affine
/// LayerNorm, ε = 1e-5), all in float32.
///
/// With a position embedding (`pos_embed_seq_len`, Wan FLF2V) the input holds two images per sample,
/// `[2B, N, E]`; consecutive pairs are joined into `[B, 2N, E]` and `pos_embed` `[1, 2N, E]` is added
/// before the first norm.
struct WanImageEmbedding: Sendable {
    /// `norm1`.
    let norm1: AffineLayerNorm
    /// `ff`.
    let feedForward: FeedForward
    /// `norm2`.
    let norm2: AffineLayerNorm
    /// `[1, P, E]`, or nil.
    let positionEmbedding: Tensor?

    /// The epsilon of both norms (`torch.nn.LayerNorm`'s default, which diffusers keeps here).
    static let eps: Float = 1e-5

    /// Takes `norm1`, `ff.net.{0.proj,2}`, `norm2` and, when `positionCount` is set, `pos_embed` of the scope.
    init(_ w: WeightScope, in inFeatures: Int, out outFeatures: Int, positionCount: Int?) {
        norm1 = AffineLayerNorm(w["norm1"], dim: inFeatures, eps: Self.eps)
        feedForward = FeedForward(w["ff"], dim: inFeatures, inner: inFeatures, out: outFeatures, activation: .gelu(.none))
        norm2 = AffineLayerNorm(w["norm2"], dim: outFeatures, eps: Self.eps)
        positionEmbedding = positionCount.map { w["pos_embed"].tensor(shape: [1, $0, inFeatures]) }
    }

    /// The input width E.
    var inFeatures: Int { norm1.weight.count }

    /// Embeds `[B, N, E]` (or `[2B, N, E]` with a position embedding) into `[B, N', D]`.
    func callAsFunction(_ image: Tensor) throws(TensorError) -> Tensor {
        guard image.rank == 3, image.shape[2] == inFeatures else {
            throw .shapeMismatch(operation: "Wan image embedding", shapes: [image.shape],
                                 reason: "encoder_hidden_states_image must be [B, N, image_dim = \(inFeatures)]")
        }
        var x = image
        if let positionEmbedding {
            let (b, n) = (image.shape[0], image.shape[1])
            guard b % 2 == 0, 2 * n == positionEmbedding.shape[1] else {
                throw .shapeMismatch(operation: "Wan image embedding", shapes: [image.shape, positionEmbedding.shape],
                                     reason: "with pos_embed_seq_len = \(positionEmbedding.shape[1]) the image tokens must be "
                                        + "[2B, \(positionEmbedding.shape[1] / 2), \(inFeatures)] (two images per sample)")
            }
            x = try x.reshaped([b / 2, 2 * n, inFeatures]) + positionEmbedding
        }
        return try norm2(feedForward(norm1(x)))
    }
}
