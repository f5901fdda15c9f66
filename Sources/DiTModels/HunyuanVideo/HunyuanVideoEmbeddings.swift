import Foundation
import Tensors

/// The 256-channel sinusoidal features diffusers' `Timesteps(256, flip_sin_to_cos=True,
/// downscale_freq_shift=0)` gives HunyuanVideo's timestep and guidance values (cos first, no scaling).
func hunyuanVideoSinusoid(_ values: [Float]) throws(TensorError) -> Tensor {
    try sinusoidalTimestepEmbedding(values, dim: HunyuanVideoConfiguration.timestepChannels, flipSinToCos: true,
                                    downscaleFreqShift: 0)
}

/// diffusers' `HunyuanVideoConditionEmbedding`: the conditioning the blocks receive,
/// `temb = MLP_t(sin(t)) [+ MLP_g(sin(g))] + MLP_text(pooled)`, every MLP `linear_2(silu(linear_1))`
/// (`text_embedder` is a `PixArtAlphaTextProjection` with SiLU, the same shape).
///
/// With `image_condition_type: "token_replace"` it also returns the first frame's conditioning
/// `MLP_t(sin(0)) + MLP_text(pooled)` (timestep 0, no guidance).
struct HunyuanVideoConditionEmbedding: Sendable {
    /// `timestep_embedder`.
    let timestepEmbedder: TimestepMLP
    /// `guidance_embedder`, present when `guidance_embeds` is true.
    let guidanceEmbedder: TimestepMLP?
    /// `text_embedder`.
    let textEmbedder: PixArtAlphaTextProjection
    /// Whether the token-replace conditioning is computed.
    let tokenReplace: Bool

    /// Takes the parameters of the `time_text_embed` scope.
    init(_ weights: WeightScope, configuration c: HunyuanVideoConfiguration) {
        let ch = HunyuanVideoConfiguration.timestepChannels, d = c.innerDim
        timestepEmbedder = TimestepMLP(weights["timestep_embedder"], in: ch, hidden: d, out: d)
        textEmbedder = PixArtAlphaTextProjection(weights["text_embedder"], in: c.pooledProjectionDim, hidden: d, activation: .silu)
        guidanceEmbedder = c.guidanceEmbeds ? TimestepMLP(weights["guidance_embedder"], in: ch, hidden: d, out: d) : nil
        tokenReplace = c.usesTokenReplace
    }

    /// `temb` `[B, D]` and, for token-replace models, the first frame's conditioning `[B, D]`.
    ///
    /// - Parameters:
    ///   - timesteps: one value per sample (0…1000 scale).
    ///   - guidance: one value per sample (the pipeline's `guidance_scale · 1000`); read only when the model
    ///     embeds guidance.
    ///   - pooled: `[B, pooled_projection_dim]`.
    func callAsFunction(
        timesteps: [Float], guidance: [Float]?, pooled: Tensor
    ) throws(TensorError) -> (temb: Tensor, tokenReplace: Tensor?) {
        let text = try textEmbedder(pooled)
        var temb = try timestepEmbedder(hunyuanVideoSinusoid(timesteps))
        if let guidanceEmbedder {
            guard let guidance else {
                throw .invalidArgument(operation: "HunyuanVideo forward",
                                       reason: "this model embeds guidance (guidance_embeds = true): pass guidance")
            }
            temb = try temb + guidanceEmbedder(hunyuanVideoSinusoid(guidance))
        }
        temb = try temb + text
        guard tokenReplace else { return (temb, nil) }
        let zero = try timestepEmbedder(hunyuanVideoSinusoid([Float](repeating: 0, count: timesteps.count)))
        return (temb, try zero + text)
    }
}

/// HunyuanVideo's 3-D rotary position embedding (diffusers `HunyuanVideoRotaryPosEmbed` with
/// `get_1d_rotary_pos_embed(use_real=True)`): the head dimension is split into frame, row and column parts
/// (`rope_axes_dim`), each rotating by its integer patch index with frequencies `θ^(−2i/dim)`, pairs
/// interleaved `(x₀, x₁), (x₂, x₃), …`, each axis owning a contiguous slice of the head.
///
/// diffusers computes the frequencies, the angles and their cos/sin in float32 (`freqs_dtype` defaults to
/// float32 there, unlike FLUX's float64); this port rounds each of those steps to Float in the same order,
/// so the tables agree with diffusers' to about one ulp.
struct HunyuanVideoRotaryEmbedding: Sendable {
    /// Rotary dimensions of the (frame, row, column) axes.
    let axesDims: [Int]
    /// The base θ (`rope_theta`).
    let theta: Double

    /// The embedding of a configuration.
    init(configuration c: HunyuanVideoConfiguration) {
        axesDims = c.rotaryAxesDims
        theta = c.ropeTheta
    }

    /// The float32 frequencies of one axis: `1 / θ^(float32(2i) / float32(dim))`.
    static func frequencies(dim: Int, theta: Double) -> [Float] {
        (0..<(dim / 2)).map { i in
            let exponent = Float(2 * i) / Float(dim)
            return 1 / Float(Foundation.pow(theta, Double(exponent)))
        }
    }

    /// cos/sin tables `[S + L, D]` for the joint (image, text) sequence of an `f × h × w` patched grid:
    /// the image rows in (frame, row, column) raster order, then `textTokens` rows of cos 1, sin 0.
    ///
    /// diffusers rotates only the image queries and keys; a text row of (1, 0) leaves its pair exactly
    /// unchanged (`a·1 − b·0 = a`), so the joint sequence can be rotated in one pass.
    func jointTables(frames f: Int, height h: Int, width w: Int, textTokens l: Int) throws(TensorError) -> (cos: Tensor, sin: Tensor) {
        let d = axesDims.reduce(0, +)
        let s = f * h * w
        var cosT = [Float](repeating: 1, count: (s + l) * d)
        var sinT = [Float](repeating: 0, count: (s + l) * d)
        let extents = [f, h, w]
        var column = 0
        for (axis, dim) in axesDims.enumerated() {
            let freqs = Self.frequencies(dim: dim, theta: theta)
            // cos/sin of every position of this axis (positions are 0 ..< extent).
            let values: [[(c: Float, s: Float)]] = (0..<extents[axis]).map { p in
                freqs.map { fr in
                    let angle = Float(p) * fr
                    return (Float(Foundation.cos(Double(angle))), Float(Foundation.sin(Double(angle))))
                }
            }
            for t in 0..<s {
                let index = [t / (h * w), (t / w) % h, t % w][axis]
                let base = t * d + column
                for (i, v) in values[index].enumerated() {
                    cosT[base + 2 * i] = v.c; cosT[base + 2 * i + 1] = v.c
                    sinT[base + 2 * i] = v.s; sinT[base + 2 * i + 1] = v.s
                }
            }
            column += dim
        }
        return (try Tensor(shape: [s + l, d], scalars: cosT), try Tensor(shape: [s + l, d], scalars: sinT))
    }
}
