import Foundation
import Tensors

/// The time-embedding activation of diffusers' `get_activation` (`timestep_activation_fn`).
enum CogVideoXTimestepActivation: Sendable, Equatable {
    /// `silu` / `swish`.
    case silu
    /// `mish`: `x · tanh(softplus(x))`.
    case mish
    /// `gelu` (exact, `nn.GELU()`).
    case gelu
    /// `relu`.
    case relu

    /// The activation diffusers names `name`, or nil for one `get_activation` rejects.
    init?(diffusersName name: String) {
        switch name {
        case "silu", "swish": self = .silu
        case "mish": self = .mish
        case "gelu": self = .gelu
        case "relu": self = .relu
        default: return nil
        }
    }

    /// Applies the activation to every element.
    func callAsFunction(_ x: Tensor) -> Tensor {
        switch self {
        case .silu: return Tensors.silu(x)
        case .gelu: return Tensors.gelu(x, approximation: .none)
        case .relu: return x.mapVector { $0.replacing(with: 0, where: $0 .< 0) }
        case .mish:
            // A [B, width] conditioning vector: evaluated per element in Double, as ATen's
            // x·tanh(log1p(exp(x))) (no threshold) rounds to float32.
            let v = x.scalars.map { e -> Float in
                let d = Double(e)
                return Float(d * Foundation.tanh(Foundation.log1p(Foundation.exp(d))))
            }
            return (try? Tensor(shape: x.shape, scalars: v)) ?? x
        }
    }
}

/// diffusers' `Timesteps` + `TimestepEmbedding` as CogVideoX uses them for the time (and `ofs`) value:
/// sinusoidal features of `channels` channels (`flip_sin_to_cos`, `freq_shift`), then
/// `linear_2(act(linear_1(features)))`.
struct CogVideoXTimestepEmbedding: Sendable {
    /// `Timesteps(channels, flip_sin_to_cos, freq_shift)`: `inner_dim` channels for the time,
    /// `ofs_embed_dim` for ofs.
    let sinusoid: (channels: Int, flipSinToCos: Bool, freqShift: Float)
    /// `linear_1` `[out, channels]`, `linear_2` `[out, out]` and the activation between them.
    let linear1: Linear, linear2: Linear, activation: CogVideoXTimestepActivation

    /// Takes `linear_1` and `linear_2` of the scope (`time_embedding`, `ofs_embedding`).
    init(_ w: WeightScope, channels: Int, out: Int, configuration c: CogVideoXConfiguration) {
        sinusoid = (channels, c.flipSinToCos, Float(c.freqShift))
        linear1 = Linear(w["linear_1"], in: channels, out: out)
        linear2 = Linear(w["linear_2"], in: out, out: out)
        activation = c.timeActivation ?? .silu
    }

    /// The embedding `[values.count, out]` of one value per row.
    func callAsFunction(_ values: [Float]) throws(TensorError) -> Tensor {
        let features = try sinusoidalTimestepEmbedding(values, dim: sinusoid.channels, flipSinToCos: sinusoid.flipSinToCos,
                                                       downscaleFreqShift: sinusoid.freqShift)
        return try linear2.fewRows(activation(linear1.fewRows(features)))
    }
}

/// The positional table of `CogVideoXPatchEmbed` (the 2B sincos table, or the 5B-I2V learned one).
enum CogVideoXPositionalTable: Sendable {
    /// Rotary models without learned positions: nothing is added.
    case none
    /// `get_3d_sincos_pos_embed`, computed for the input's grid.
    case sincos
    /// The stored `patch_embed.pos_embedding` `[1, max_text_seq_length + patches, D]`, used when the
    /// input has the configured sample size (else the sincos table replaces it, as in diffusers).
    case learned(Tensor)
}

/// diffusers' `get_3d_sincos_pos_embed` as `CogVideoXPatchEmbed` uses it (float64, rounded to float32).
///
/// For a `frames × height × width` grid of width D: the first `D/4` channels are the temporal sinusoid
/// `[sin(t·ω), cos(t·ω)]` of `t / temporal_scale`, the other `3D/4` the spatial one of the *column*
/// then the *row* (`[sin(x·ω), cos(x·ω), sin(y·ω), cos(y·ω)]`, positions `/ spatial_scale` in float32),
/// `ω_i = 10000^(−i/half)`; tokens in (frame, row, column) order.
enum CogVideoXSincosPositionEmbedding {
    /// The table `[frames · height · width, dim]`.
    static func table(dim: Int, frames: Int, height: Int, width: Int, spatialScale: Double,
                             temporalScale: Double) throws(TensorError) -> Tensor {
        guard dim % 16 == 0, dim > 0 else {
            throw .invalidArgument(operation: "CogVideoX sincos table", reason: "width \(dim) must be a positive multiple of 16")
        }
        let spatial = 3 * dim / 4, temporal = dim / 4
        // One axis' [sin, cos] block of width 2·half for float32 positions.
        func axis(_ count: Int, scale: Double, width: Int) -> [[Double]] {
            let half = width / 2
            let omega = (0..<half).map { i in 1 / Foundation.pow(10000.0, Double(i) / Double(half)) }
            return (0..<count).map { p in
                let pos = Double(Float(p) / Float(scale))
                return omega.map { Foundation.sin(pos * $0) } + omega.map { Foundation.cos(pos * $0) }
            }
        }
        let t = axis(frames, scale: temporalScale, width: temporal)
        let x = axis(width, scale: spatialScale, width: spatial / 2)
        let y = axis(height, scale: spatialScale, width: spatial / 2)
        var out = [Float](repeating: 0, count: frames * height * width * dim)
        var row = 0
        for f in 0..<frames {
            for r in 0..<height {
                for c in 0..<width {
                    let base = row * dim
                    for (j, v) in t[f].enumerated() { out[base + j] = Float(v) }
                    for (j, v) in x[c].enumerated() { out[base + temporal + j] = Float(v) }
                    for (j, v) in y[r].enumerated() { out[base + temporal + spatial / 2 + j] = Float(v) }
                    row += 1
                }
            }
        }
        return try Tensor(shape: [frames * height * width, dim], scalars: out)
    }
}

/// diffusers' `CogVideoXPatchEmbed`: the text projection, the video patch projection (1.0: a `Conv2d`
/// per frame, kernel = stride = `patch_size`; 1.5: a linear layer over `(c, p_t, p, p)` patches), and
/// the positional table added to the joint `[text; video]` sequence.
struct CogVideoXPatchEmbedding: Sendable {
    /// `text_proj`, and `proj` as a matrix `[D, C·p_t·p·p]` (a `Conv2d` weight `[D, C, p, p]` flattened
    /// in the same order).
    let textProjection: Linear, projection: Linear
    /// The positional table, and the configuration that sizes it.
    let positions: CogVideoXPositionalTable, configuration: CogVideoXConfiguration

    /// Takes `text_proj`, `proj` and, for learned positions, `pos_embedding` of the scope (`patch_embed`).
    init(_ w: WeightScope, configuration c: CogVideoXConfiguration) {
        configuration = c
        let d = c.innerDim
        textProjection = Linear(w["text_proj"], in: c.textEmbedDim, out: d)
        if c.patchSizeT == nil {
            let weight = w["proj"].tensor("weight", shape: [d, c.inChannels, c.patchSize, c.patchSize])
            let flat = (try? weight.reshaped([d, c.patchWidth])) ?? weight
            projection = Linear(weight: flat, bias: c.patchBias ? w["proj"].tensor("bias", shape: [d]) : nil)
        } else {
            projection = Linear(w["proj"], in: c.patchWidth, out: d)
        }
        if c.useLearnedPositionalEmbeddings {
            let n = c.maxTextSeqLength + (c.sampleHeight / c.patchSize) * (c.sampleWidth / c.patchSize) * c.sampleLatentFrames
            positions = .learned(w["pos_embedding"].tensor(shape: [1, n, d]))
        } else {
            positions = c.usesPositionalTable ? .sincos : .none
        }
    }

    /// Embeds `text` `[B, L, text_embed_dim]` and `video` `[B, F, C, H, W]` (shapes already checked):
    /// `[B, L, D]` text tokens and `[B, (F/p_t)(H/p)(W/p), D]` video tokens with the positional table added.
    func callAsFunction(text: Tensor, video: Tensor) throws(TensorError) -> (text: Tensor, video: Tensor) {
        let c = configuration
        let (f, h, w) = (video.shape[1], video.shape[3], video.shape[4])
        // [B, F, C, H, W] → [B, C, F, H, W] → patches with (c, p_t, p, p) inside, tokens in (f, h, w) order.
        let channelsFirst = try video.permuted([0, 2, 1, 3, 4])
        let patches = try Patches.patchify3D(channelsFirst, patch: (c.temporalPatch, c.patchSize, c.patchSize),
                                             order: .channelsFirst)
        var textTokens = try textProjection(text)
        var videoTokens = try projection(patches)
        let grid = (f: f / c.temporalPatch, h: h / c.patchSize, w: w / c.patchSize)
        switch positions {
        case .none:
            break
        case .sincos:
            videoTokens = try videoTokens + sincosTable(grid)
        case .learned(let table):
            // diffusers uses the stored table when the frame count is the configured one (the sizes were
            // checked against sample_height/width), and recomputes the sincos table otherwise.
            if (f - 1) * c.temporalCompressionRatio + 1 == c.sampleFrames {
                let l = textTokens.shape[1]
                let rows = try table.reshaped([table.shape[1], table.shape[2]])
                textTokens = try textTokens + rows.slice(axis: 0, 0..<l)
                videoTokens = try videoTokens + rows.slice(axis: 0, l..<rows.shape[0])
            } else {
                videoTokens = try videoTokens + sincosTable(grid)
            }
        }
        return (textTokens, videoTokens)
    }

    /// The sincos table of a patched grid `[f·h·w, D]`.
    func sincosTable(_ grid: (f: Int, h: Int, w: Int)) throws(TensorError) -> Tensor {
        let c = configuration
        return try CogVideoXSincosPositionEmbedding.table(
            dim: c.innerDim, frames: grid.f, height: grid.h, width: grid.w,
            spatialScale: c.spatialInterpolationScale, temporalScale: c.temporalInterpolationScale)
    }
}
