import Tensors

/// Wan's 3-D rotary position embedding (diffusers `WanRotaryPosEmbed`).
///
/// The head dimension D is split into frame, height and width parts (`D − 4⌊D/6⌋`, `2⌊D/6⌋`,
/// `2⌊D/6⌋`); each part rotates by its axis' integer patch index with frequencies
/// `10000^(−2i/dim)` computed in Double, and the pairs are interleaved (`(x₀, x₁), (x₂, x₃), …`).
struct WanRotaryEmbedding: Sendable {
    /// Rotary dimensions per axis (frames, height, width).
    let axesDims: [Int]
    /// Positions covered per axis; grids longer than this are rejected, as diffusers' table is cut there.
    let maxSequenceLength: Int
    /// The frequency base.
    let theta: Double

    /// The embedding of a configuration (theta 10000, as diffusers).
    init(configuration c: WanConfiguration, theta: Double = 10000) {
        axesDims = c.rotaryAxesDims
        maxSequenceLength = c.ropeMaxSeqLen
        self.theta = theta
    }

    /// cos/sin tables `[f·h·w, D]` for a patched grid, tokens in (frame, row, column) raster order.
    func tables(frames f: Int, height h: Int, width w: Int) throws(TensorError) -> (cos: Tensor, sin: Tensor) {
        guard max(f, h, w) <= maxSequenceLength else {
            throw .invalidArgument(operation: "Wan rotary embedding",
                                   reason: "patched grid \(f)×\(h)×\(w) exceeds rope_max_seq_len = \(maxSequenceLength)")
        }
        var positions = [Float]()
        positions.reserveCapacity(f * h * w * 3)
        for i in 0..<f { for j in 0..<h { for k in 0..<w { positions += [Float(i), Float(j), Float(k)] } } }
        return try RotaryEmbedding.tables(positions: Tensor(shape: [f * h * w, 3], scalars: positions),
                                          axesDims: axesDims, theta: theta, layout: .interleaved)
    }
}

/// The Conv3d patch embedding with kernel = stride = patch size, computed as patchify + linear.
///
/// The Conv3d weight `[D, C, pt, ph, pw]` is read as a `[D, C·pt·ph·pw]` matrix, whose column order is
/// the `(c, pt, ph, pw)` order of ``Patches/ChannelOrder/channelsFirst``.
struct WanPatchEmbedding: Sendable {
    /// The weight as a matrix `[D, C·pt·ph·pw]` and the bias `[D]`.
    let projection: Linear
    /// The patch extent.
    let patch: (t: Int, h: Int, w: Int)

    /// Takes `weight` `[D, C, pt, ph, pw]` and `bias` of the scope (`patch_embedding`).
    init(_ weights: WeightScope, configuration c: WanConfiguration) {
        let p = c.patch
        let w = weights.tensor("weight", shape: [c.innerDim, c.inChannels, p.t, p.h, p.w])
        let b = weights.tensor("bias", shape: [c.innerDim])
        let flat = (try? w.reshaped([c.innerDim, c.inChannels * p.t * p.h * p.w])) ?? w
        projection = Linear(weight: flat, bias: b)
        patch = p
    }

    /// `[B, C, F, H, W]` → tokens `[B, (F/pt)(H/ph)(W/pw), D]`.
    func callAsFunction(_ x: Tensor) throws(TensorError) -> Tensor {
        try projection(Patches.patchify3D(x, patch: patch, order: .channelsFirst))
    }
}

/// The outputs of ``WanConditionEmbedder``.
struct WanConditionEmbedding: Sendable {
    /// The time embedding `temb` `[B, D]` (the original Wan code's `e`).
    var temb: Tensor
    /// The per-block modulation input `timestep_proj` unflattened to `[B, 6, D]` (the original's `e0`).
    var timestepProjection: Tensor
    /// The projected text tokens `[B, L, D]`.
    var text: Tensor
    /// The embedded image tokens `[B, N, D]`, when the model and the call have them.
    var image: Tensor?
}

/// diffusers' `WanTimeTextImageEmbedding`: sinusoidal timestep features (cos first, shift 0) →
/// `time_embedder` MLP = `temb`; `time_proj(silu(temb))` = the 6·D block modulation; the text
/// projection; and, for image-to-video, ``WanImageEmbedding``.
///
/// All of it runs in float32, as diffusers does for float32 weights.
struct WanConditionEmbedder: Sendable {
    /// Sinusoidal timestep features.
    let freqDim: Int
    /// The model width.
    let innerDim: Int
    /// `time_embedder`.
    let timeEmbedder: TimestepMLP
    /// `time_proj`: `temb` → six modulation vectors.
    let timeProjection: Linear
    /// `text_embedder`.
    let textEmbedder: PixArtAlphaTextProjection
    /// `image_embedder` (image-to-video only).
    let imageEmbedder: WanImageEmbedding?

    /// Takes every parameter of the `condition_embedder` scope.
    init(_ w: WeightScope, configuration c: WanConfiguration) {
        let d = c.innerDim
        freqDim = c.freqDim
        innerDim = d
        timeEmbedder = TimestepMLP(w["time_embedder"], in: c.freqDim, hidden: d, out: d)
        timeProjection = Linear(w["time_proj"], in: d, out: 6 * d)
        textEmbedder = PixArtAlphaTextProjection(w["text_embedder"], in: c.textDim, hidden: d, activation: .gelu(.tanh))
        imageEmbedder = c.imageDim.map { dim in
            WanImageEmbedding(w["image_embedder"], in: dim, out: d, positionCount: c.posEmbedSeqLen)
        }
    }

    /// The time embedding `[B, D]` and the block modulation `[B, 6, D]` for one timestep per sample.
    func time(_ timesteps: [Float]) throws(TensorError) -> (temb: Tensor, projection: Tensor) {
        let features = try sinusoidalTimestepEmbedding(timesteps, dim: freqDim, flipSinToCos: true, downscaleFreqShift: 0)
        let temb = try timeEmbedder(features)
        let proj = try timeProjection(silu(temb)).reshaped([timesteps.count, 6, innerDim])
        return (temb, proj)
    }

    /// Embeds the timesteps, the text tokens `[B, L, text_dim]` and the optional image tokens.
    func callAsFunction(
        timesteps: [Float], text: Tensor, image: Tensor?
    ) throws(TensorError) -> WanConditionEmbedding {
        let (temb, proj) = try time(timesteps)
        let textTokens = try textEmbedder(text)
        var imageTokens: Tensor? = nil
        if let image {
            guard let imageEmbedder else {
                throw .invalidArgument(operation: "Wan forward",
                                       reason: "encoder_hidden_states_image was given but the configuration has no image_dim")
            }
            imageTokens = try imageEmbedder(image)
        }
        return WanConditionEmbedding(temb: temb, timestepProjection: proj, text: textTokens, image: imageTokens)
    }
}
