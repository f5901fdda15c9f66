import Foundation
import Tensors

/// LTX-Video's rotary position embedding (diffusers `LTXVideoRotaryPosEmbed`) over the full model width.
///
/// Each token has three coordinates (frame, row, column), either from the latent grid —
/// `index · rope_interpolation_scale[a] · patch / base[a]` with bases (20, 2048, 2048), or the raw
/// index without a scale — or from explicit `video_coords` `[B, 3, S]` divided by the bases. With
/// `K = ⌊D/6⌋` frequencies `f_k = (θ^linspace(0, 1, K)_k) · π/2`, the angle of frequency k on axis a is
/// `f_k · (2·coordinate_a − 1)`; channel pairs are laid out frequency-major, axis-minor and interleaved
/// (`(x₀, x₁)` share one angle), after `D mod 6` leading channels that are not rotated (cos 1, sin 0).
///
/// Precision: diffusers computes all of this in float32, and so does this port, operation for
/// operation (torch's fused `linspace` halves, the grid scaling left to right, `2·g − 1`, the products);
/// only `θ^x` is evaluated in Double and rounded (torch's vectorised float `pow` is within 1 ulp of it;
/// the measured effect on a 512-wide model's output is a relative L2 of 1.6e-7), and cos/sin are taken
/// in Double from the float32 angle.
struct LTXVideoRotaryEmbedding: Sendable {
    /// The rotated width (the model width D).
    let dim: Int
    /// `patch_size_t` and `patch_size` of the configuration.
    let patchSizeT: Int
    let patchSize: Int
    /// diffusers' `base_num_frames`, `base_height`, `base_width`.
    static let bases: [Float] = [20, 2048, 2048]
    /// The frequency base θ.
    static let theta: Double = 10000

    /// The embedding of a configuration.
    init(configuration c: LTXVideoConfiguration) {
        dim = c.innerDim
        patchSizeT = c.patchSizeT
        patchSize = c.patchSize
    }

    /// `f_k = float32(θ^linspace(0, 1, K)_k) · float32(π/2)` for `K = ⌊D/6⌋`, with torch's float32
    /// `linspace` (fused multiply-add from the start for the first half, from the end for the second).
    var frequencies: [Float] {
        let k = dim / 6
        guard k > 0 else { return [] }
        let halfPi = Float(Double.pi / 2)
        let step: Float = k > 1 ? 1 / Float(k - 1) : 0
        return (0..<k).map { i in
            let x: Float
            if k == 1 { x = 0 } else if i < k / 2 { x = Float(Double(step) * Double(i)) } else {
                x = Float(1 - Double(step) * Double(k - 1 - i))
            }
            return Float(Foundation.pow(Self.theta, Double(x))) * halfPi
        }
    }

    /// The grid coordinates `[F·H·W, 3]` of diffusers' `_prepare_video_coords`, tokens in (frame, row,
    /// column) raster order, scaled by `scale` (`rope_interpolation_scale`) when it is given.
    func gridCoordinates(frames f: Int, height h: Int, width w: Int, scale: [Float]?) -> [Float] {
        var out = [Float]()
        out.reserveCapacity(f * h * w * 3)
        let patch = [Float(patchSizeT), Float(patchSize), Float(patchSize)]
        for i in 0..<f {
            for j in 0..<h {
                for k in 0..<w {
                    var g = [Float(i), Float(j), Float(k)]
                    if let scale {
                        for a in 0..<3 { g[a] = ((g[a] * scale[a]) * patch[a]) / Self.bases[a] }
                    }
                    out += g
                }
            }
        }
        return out
    }

    /// The normalised coordinates `[B', S, 3]` of explicit `video_coords` `[B', 3, S]`: each axis divided
    /// by its base.
    func explicitCoordinates(_ videoCoords: Tensor) -> [Float] {
        let (b, s) = (videoCoords.shape[0], videoCoords.shape[2])
        let v = videoCoords.scalars
        var out = [Float](repeating: 0, count: b * s * 3)
        for bi in 0..<b {
            for a in 0..<3 {
                for t in 0..<s { out[(bi * s + t) * 3 + a] = v[(bi * 3 + a) * s + t] / Self.bases[a] }
            }
        }
        return out
    }

    /// cos/sin tables `[B', S, D]` for coordinates `[B', S, 3]` (flattened).
    ///
    /// Coordinates repeat a lot along each axis (a grid has only F, H and W distinct values), so the
    /// angles' cos/sin are computed once per distinct value of each axis and reused.
    func tables(coordinates: [Float], batch b: Int, tokens s: Int) throws(TensorError) -> (cos: Tensor, sin: Tensor) {
        let d = dim, freqs = frequencies, pad = d % 6, k = freqs.count
        var cosT = [Float](repeating: 0, count: b * s * d)
        var sinT = [Float](repeating: 0, count: b * s * d)
        var memo: [[UInt32: Int]] = [[:], [:], [:]]
        var values: [[(c: Float, s: Float)]] = [[], [], []]
        for r in 0..<(b * s) {
            let base = r * d
            for c in 0..<pad { cosT[base + c] = 1 }
            for a in 0..<3 {
                let g = coordinates[r * 3 + a]
                let slot: Int
                if let known = memo[a][g.bitPattern] {
                    slot = known
                } else {
                    slot = values[a].count / max(k, 1)
                    memo[a][g.bitPattern] = slot
                    let centred = g * 2 - 1
                    for f in freqs {
                        let angle = Double(f * centred)
                        values[a].append((Float(Foundation.cos(angle)), Float(Foundation.sin(angle))))
                    }
                }
                for i in 0..<k {
                    let (cv, sv) = values[a][slot * k + i]
                    let ch = base + pad + 2 * (i * 3 + a)
                    cosT[ch] = cv; cosT[ch + 1] = cv
                    sinT[ch] = sv; sinT[ch + 1] = sv
                }
            }
        }
        return (try Tensor(shape: [b, s, d], scalars: cosT), try Tensor(shape: [b, s, d], scalars: sinT))
    }
}

/// diffusers' `AdaLayerNormSingle` without additional conditions (PixArt-α's adaLN-single): the
/// combined timestep embedding `emb` — sinusoidal features (256, cos first, shift 0) through
/// `emb.timestep_embedder` (`TimestepEmbedding`, SiLU) — is `embedded_timestep`, and
/// `linear(silu(embedded_timestep))` gives the 6·D block modulation `temb`.
struct LTXVideoTimeEmbedding: Sendable {
    /// Sinusoidal features of `PixArtAlphaCombinedTimestepSizeEmbeddings`.
    static let frequencyChannels = 256
    /// `emb.timestep_embedder`.
    let timestepEmbedder: TimestepMLP
    /// `linear`: `[6D, D]`.
    let linear: Linear

    /// Takes every parameter of the `time_embed` scope.
    init(_ w: WeightScope, dim: Int) {
        timestepEmbedder = TimestepMLP(w["emb"]["timestep_embedder"], in: Self.frequencyChannels, hidden: dim, out: dim)
        linear = Linear(w["linear"], in: dim, out: 6 * dim)
    }

    /// `(temb [N, 6D], embedded_timestep [N, D])` for N timestep values.
    func callAsFunction(_ timesteps: [Float]) throws(TensorError) -> (temb: Tensor, embedded: Tensor) {
        let features = try sinusoidalTimestepEmbedding(timesteps, dim: Self.frequencyChannels, flipSinToCos: true,
                                                       downscaleFreqShift: 0)
        let embedded = try timestepEmbedder(features)
        let temb = try linear(silu(embedded))
        return (temb, embedded)
    }
}
