import Tensors

/// diffusers' `AdaLayerNormSingle` without additional conditions (PixArt-α's adaLN-single; Latte, LTX-Video): the
/// combined timestep embedding — 256 sinusoidal features (cos first, shift 0) through
/// `emb.timestep_embedder` (`TimestepEmbedding`, SiLU) — is `embedded_timestep`, and
/// `linear(silu(embedded_timestep))` is the 6·D modulation every block adds to its `scale_shift_table`.
public struct AdaLayerNormSingle: Sendable {
    /// Sinusoidal features of `PixArtAlphaCombinedTimestepSizeEmbeddings` (fixed in diffusers).
    public static let frequencyChannels = 256
    /// `emb.timestep_embedder`.
    public let timestepEmbedder: TimestepMLP
    /// `linear`: `[6D, D]`.
    public let linear: Linear

    /// Takes `emb.timestep_embedder.linear_{1,2}` and `linear` of the scope (e.g. `adaln_single`).
    public init(_ weights: WeightScope, dim: Int) {
        timestepEmbedder = TimestepMLP(weights["emb"]["timestep_embedder"], in: Self.frequencyChannels, hidden: dim, out: dim)
        linear = Linear(weights["linear"], in: dim, out: 6 * dim)
    }

    /// `(modulation [N, 6D], embedded_timestep [N, D])` for N timestep values.
    public func callAsFunction(_ timesteps: [Float]) throws(TensorError) -> (modulation: Tensor, embedded: Tensor) {
        let features = try sinusoidalTimestepEmbedding(timesteps, dim: Self.frequencyChannels, flipSinToCos: true,
                                                       downscaleFreqShift: 0)
        let embedded = try timestepEmbedder(features)
        return (try linear(silu(embedded)), embedded)
    }
}
