import Tensors

/// The conditioning vector of FLUX: diffusers' `CombinedTimestepGuidanceTextProjEmbeddings` (with
/// guidance) or `CombinedTimestepTextProjEmbeddings` (without).
///
/// `temb = MLP_t(sin(1000·t)) [+ MLP_g(sin(1000·g))] + MLP_text(pooled)`, where `sin(·)` is the 256-channel
/// sinusoid with cos first (`flip_sin_to_cos=True`, shift 0) and every MLP is `linear_2(silu(linear_1))`.
struct FluxTimeTextEmbedding: Sendable {
    /// `time_text_embed.timestep_embedder`.
    let timestepEmbedder: TimestepMLP
    /// `time_text_embed.guidance_embedder`, present when `guidance_embeds` is true.
    let guidanceEmbedder: TimestepMLP?
    /// `time_text_embed.text_embedder` (PixArt-α text projection with SiLU).
    let textEmbedder: TimestepMLP

    /// The scale FLUX applies to timestep and guidance values before the sinusoid.
    static let valueScale: Float = 1000

    /// Takes the parameters of the `time_text_embed` scope.
    init(_ weights: WeightScope, configuration c: FluxConfiguration) {
        let ch = FluxConfiguration.timestepChannels
        timestepEmbedder = TimestepMLP(weights["timestep_embedder"], in: ch, hidden: c.innerDim, out: c.innerDim)
        guidanceEmbedder = c.guidanceEmbeds
            ? TimestepMLP(weights["guidance_embedder"], in: ch, hidden: c.innerDim, out: c.innerDim) : nil
        textEmbedder = TimestepMLP(weights["text_embedder"], in: c.pooledProjectionDim, hidden: c.innerDim,
                                   out: c.innerDim)
    }

    /// The conditioning `[B, D]`.
    ///
    /// - Parameters:
    ///   - timestep: `[B]` or `[1]` (broadcast over the batch), in FLUX units (sigma, ×1000 here).
    ///   - guidance: like `timestep`; required exactly when the model embeds guidance.
    ///   - pooled: `[B, pooled_projection_dim]`.
    func callAsFunction(timestep: Tensor, guidance: Tensor?, pooled: Tensor) throws(TensorError) -> Tensor {
        var temb = try timestepEmbedder(Self.sinusoid(timestep))
        if let guidanceEmbedder, let guidance {
            temb = try temb + guidanceEmbedder(Self.sinusoid(guidance))
        }
        return try temb + textEmbedder(pooled)
    }

    /// The 256-channel features of `1000·values` (the multiplication is done in Float32, as diffusers does).
    static func sinusoid(_ values: Tensor) throws(TensorError) -> Tensor {
        try sinusoidalTimestepEmbedding(values.scalars.map { $0 * valueScale }, dim: FluxConfiguration.timestepChannels,
                                        flipSinToCos: true, downscaleFreqShift: 0)
    }
}

/// FLUX's rotary position embedding (`FluxPosEmbed`): one rotary table per id column, concatenated,
/// with interleaved pairs and frequencies `θ^(−2i/dim)` evaluated in Double (θ = 10000).
enum FluxPositionEmbedding {
    /// cos/sin tables `[L + S, headDim]` for the joint sequence: text ids first, then image ids.
    ///
    /// - Parameters:
    ///   - textIDs: `[L, n]` (or a deprecated batched `[B, L, n]`, of which element 0 is used, as diffusers does).
    ///   - imageIDs: `[S, n]` (or `[B, S, n]`, element 0).
    ///   - axesDims: `axes_dims_rope`; `n` must equal its count.
    static func tables(
        textIDs: Tensor, imageIDs: Tensor, axesDims: [Int]
    ) throws(TensorError) -> (cos: Tensor, sin: Tensor) {
        let txt = try firstElement(textIDs, name: "txt_ids", axes: axesDims.count)
        let img = try firstElement(imageIDs, name: "img_ids", axes: axesDims.count)
        let ids = try Tensor.concatenate([txt, img], axis: 0)
        return try RotaryEmbedding.tables(positions: ids, axesDims: axesDims, theta: FluxConfiguration.ropeTheta,
                                          layout: .interleaved)
    }

    private static func firstElement(_ ids: Tensor, name: String, axes: Int) throws(TensorError) -> Tensor {
        let two = ids.rank == 3 && ids.shape[0] > 0 ? try ids.slice(axis: 0, 0..<1).reshaped(Array(ids.shape.dropFirst())) : ids
        guard two.rank == 2, two.shape[1] == axes else {
            throw .shapeMismatch(operation: "FLUX position ids", shapes: [ids.shape],
                                 reason: "\(name) must be [tokens, \(axes)] (one column per axes_dims_rope entry)")
        }
        return two
    }
}
