import Foundation
import Tensors

/// diffusers' `LuminaPatchEmbed`: `[B, C, H, W]` → `[B, (H/p)(W/p), D]`, each token the `(c, ph, pw)`
/// flattening of its patch through `proj`.
struct LuminaNextPatchEmbedding: Sendable {
    /// `proj`: `[D, C·p²]` with bias.
    let proj: Linear
    /// The patch side.
    let patch: Int

    /// Takes `proj` of the scope.
    init(_ weights: WeightScope, configuration c: LuminaNextConfiguration) {
        proj = Linear(weights["proj"], in: c.patchSize * c.patchSize * c.inChannels, out: c.hiddenSize)
        patch = c.patchSize
    }

    /// Embeds `[B, C, H, W]` (H and W multiples of the patch side).
    func callAsFunction(_ x: Tensor) throws(TensorError) -> Tensor {
        try proj(Patches.patchify2D(x, patch: patch, order: .channelsFirst))
    }
}

/// diffusers' `LuminaCombinedTimestepCaptionEmbedding`: `temb = MLP_t(sin(t)) + proj(LayerNorm(masked mean
/// of the caption))`, `[B, min(D, 1024)]`.
///
/// `sin(t)` is the 256-channel sinusoid with cos first and shift 0 of the raw timestep (Lumina's t is in
/// 0…1); the caption is averaged over the tokens its mask selects.
struct LuminaNextTimeCaptionEmbedding: Sendable {
    /// `timestep_embedder`.
    let timestepEmbedder: TimestepMLP
    /// `caption_embedder.0`: LayerNorm over the caption width (ε 1e-5).
    let captionNorm: AffineLayerNorm
    /// `caption_embedder.1`.
    let captionProjection: Linear

    /// Width of the sinusoidal timestep features.
    static let frequencyChannels = 256

    /// Takes `timestep_embedder` and `caption_embedder` of the scope.
    init(_ weights: WeightScope, configuration c: LuminaNextConfiguration) {
        let dt = c.conditioningDim
        timestepEmbedder = TimestepMLP(weights["timestep_embedder"], in: Self.frequencyChannels, hidden: dt, out: dt)
        captionNorm = AffineLayerNorm(weights["caption_embedder.0"], dim: c.crossAttentionDim, eps: 1e-5)
        captionProjection = Linear(weights["caption_embedder.1"], in: c.crossAttentionDim, out: dt)
    }

    /// `temb` for one timestep per sample, captions `[B, L, E]` and their 0/1 masks `[B, L]` (each
    /// selecting at least one token).
    func callAsFunction(timesteps: [Float], caption: Tensor, mask: Tensor) throws(TensorError) -> Tensor {
        let features = try sinusoidalTimestepEmbedding(timesteps, dim: Self.frequencyChannels, flipSinToCos: true,
                                                       downscaleFreqShift: 0)
        let time = try timestepEmbedder(features)
        return try time + captionProjection(captionNorm(Self.maskedMean(caption, mask: mask)))
    }

    /// `Σ_l x[b, l]·m[b, l] / Σ_l m[b, l]`: `[B, L, E]` with `[B, L]` → `[B, E]` (Float32 sums).
    static func maskedMean(_ x: Tensor, mask: Tensor) throws(TensorError) -> Tensor {
        let (b, l, e) = (x.shape[0], x.shape[1], x.shape[2])
        let m = mask.scalars
        return x.withUnsafeBufferPointer { px in
            Tensor(uninitializedShape: [b, e]) { out in
                for i in 0..<b {
                    let o = out.baseAddress! + i * e
                    o.update(repeating: 0, count: e)
                    var total: Float = 0
                    for t in 0..<l {
                        let w = m[i * l + t]
                        total += w
                        let row = px.baseAddress! + (i * l + t) * e
                        for j in 0..<e { o[j] += row[j] * w }
                    }
                    for j in 0..<e { o[j] /= total }
                }
            }
        }
    }
}

/// Lumina-Next's 2-D rotary embedding: diffusers' `get_2d_rotary_pos_embed_lumina` and the scaling
/// factors `LuminaText2ImgPipeline` passes, computed here from sizes.
///
/// For a head of `Dh` channels, each axis (rows, columns) gets `Dh/4` frequencies
/// `f_i = 1 / (θ·ntk)^(4i/Dh) / linear` (θ = 10000), and the `Dh/2` complex rotations of a token at
/// `(row, col)` alternate between the axes: `[row·f₀, col·f₀, row·f₁, col·f₁, …]`. Rotation k turns the
/// channel pair `(2k, 2k+1)`. Everything is computed in Float32 as diffusers does (frequencies, the
/// angle product), with each cos/sin correctly rounded.
enum LuminaNextRotaryEmbedding {
    /// The rotary base.
    public static let theta: Float = 10000

    /// The complex table `[rows, cols, Dh/2]` as `(real, imaginary)` pairs: `[rows, cols, Dh/2, 2]`
    /// (what `torch.view_as_real(get_2d_rotary_pos_embed_lumina(Dh, rows, cols, linear, ntk))` holds).
    public static func table(
        headDim: Int, rows: Int, cols: Int, linearFactor: Double = 1, ntkFactor: Double = 1
    ) throws(TensorError) -> Tensor {
        let (cosT, sinT) = try angles(headDim: headDim, rows: rows, cols: cols, linearFactor: linearFactor,
                                      ntkFactor: ntkFactor)
        let half = headDim / 2
        var out = [Float](repeating: 0, count: rows * cols * half * 2)
        for t in 0..<(rows * cols) {
            for k in 0..<half {
                out[(t * half + k) * 2] = cosT[t * half + k]
                out[(t * half + k) * 2 + 1] = sinT[t * half + k]
            }
        }
        return try Tensor(shape: [rows, cols, half, 2], scalars: out)
    }

    /// cos/sin tables `[rows·cols, Dh]` for ``RotaryEmbedding/apply(_:cos:sin:heads:layout:)`` with the
    /// interleaved layout, tokens in row-major order.
    public static func tables(
        headDim: Int, rows: Int, cols: Int, linearFactor: Double = 1, ntkFactor: Double = 1
    ) throws(TensorError) -> (cos: Tensor, sin: Tensor) {
        let (c, s) = try angles(headDim: headDim, rows: rows, cols: cols, linearFactor: linearFactor, ntkFactor: ntkFactor)
        return (try Tensor(shape: [rows * cols, headDim], scalars: c.flatMap { [$0, $0] }),
                try Tensor(shape: [rows * cols, headDim], scalars: s.flatMap { [$0, $0] }))
    }

    /// cos/sin tables `[rows·cols, Dh]` from a complex table `[R, C, Dh/2, 2]` (real, imaginary) with
    /// `R ≥ rows`, `C ≥ cols`: its top-left `rows × cols` corner, as diffusers' patch embedder slices it.
    public static func tables(fromTable table: Tensor, rows: Int, cols: Int, headDim: Int) throws(TensorError) -> (cos: Tensor, sin: Tensor) {
        let s = table.shape
        guard s.count == 4, s[2] == headDim / 2, s[3] == 2, s[0] >= rows, s[1] >= cols else {
            throw .shapeMismatch(operation: "Lumina-Next rotary table", shapes: [s],
                                 reason: "image_rotary_emb must be [≥ \(rows), ≥ \(cols), \(headDim / 2), 2] "
                                    + "(a complex table as (real, imaginary) pairs) for a \(rows)×\(cols) token grid")
        }
        let half = headDim / 2
        let v = table.scalars
        var c = [Float](repeating: 0, count: rows * cols * headDim), sn = c
        for r in 0..<rows {
            for col in 0..<cols {
                let src = (r * s[1] + col) * half * 2, dst = (r * cols + col) * headDim
                for k in 0..<half {
                    c[dst + 2 * k] = v[src + 2 * k]; c[dst + 2 * k + 1] = v[src + 2 * k]
                    sn[dst + 2 * k] = v[src + 2 * k + 1]; sn[dst + 2 * k + 1] = v[src + 2 * k + 1]
                }
            }
        }
        return (try Tensor(shape: [rows * cols, headDim], scalars: c), try Tensor(shape: [rows * cols, headDim], scalars: sn))
    }

    /// cos and sin of every rotation, `[rows·cols·Dh/2]` each.
    static func angles(
        headDim: Int, rows: Int, cols: Int, linearFactor: Double, ntkFactor: Double
    ) throws(TensorError) -> ([Float], [Float]) {
        guard headDim > 0, headDim % 4 == 0, rows > 0, cols > 0 else {
            throw .invalidArgument(operation: "Lumina-Next rotary table",
                                   reason: "needs a head dimension divisible by 4 and a non-empty grid, got \(headDim), \(rows)×\(cols)")
        }
        guard linearFactor.isFinite, linearFactor > 0, ntkFactor.isFinite, ntkFactor > 0 else {
            throw .invalidArgument(operation: "Lumina-Next rotary table",
                                   reason: "linear_factor \(linearFactor) and ntk_factor \(ntkFactor) must be finite and positive")
        }
        let axisDim = headDim / 2, quarter = headDim / 4
        // diffusers: freqs = 1 / ((θ·ntk) ** (arange(0, d, 2) / d)) / linear, in float32.
        let base = Float(Double(theta) * ntkFactor), linear = Float(linearFactor)
        let freqs: [Float] = (0..<quarter).map { i in
            let e = Float(2 * i) / Float(axisDim)
            return (1 / Float(Foundation.pow(Double(base), Double(e)))) / linear
        }
        let half = headDim / 2
        var c = [Float](repeating: 0, count: rows * cols * half), s = c
        for r in 0..<rows {
            for col in 0..<cols {
                let t = r * cols + col
                for i in 0..<quarter {
                    for (k, p) in [(2 * i, r), (2 * i + 1, col)] {
                        let angle = Double(Float(p) * freqs[i])
                        c[t * half + k] = Float(Foundation.cos(angle))
                        s[t * half + k] = Float(Foundation.sin(angle))
                    }
                }
            }
        }
        return (c, s)
    }
}
