import Foundation
import Synchronization
import Tensors

/// The per-frame Conv2d patch embedding (diffusers `PatchEmbed` without position embedding), computed as
/// patchify + linear: every latent frame is cut into `p × p` patches independently.
///
/// The Conv2d weight `[D, C, p, p]` is read as a `[D, C·p·p]` matrix, whose column order is the
/// `(c, ph, pw)` order of ``Patches/ChannelOrder/channelsFirst`` with a temporal patch of 1. Tokens come
/// out in (frame, row, column) order, as diffusers' `unflatten(0, (B, -1)).flatten(1, 2)` arranges them.
struct MochiPatchEmbedding: Sendable {
    /// The weight as a matrix `[D, C·p·p]` and the bias `[D]`.
    let projection: Linear
    /// The spatial patch extent.
    let patch: Int

    /// Takes `proj.weight` `[D, C, p, p]` and `proj.bias` of the scope (`patch_embed`).
    init(_ weights: WeightScope, configuration c: MochiConfiguration) {
        let p = c.patchSize
        let w = weights["proj"].tensor("weight", shape: [c.innerDim, c.inChannels, p, p])
        let b = weights["proj"].tensor("bias", shape: [c.innerDim])
        let flat = (try? w.reshaped([c.innerDim, c.inChannels * p * p])) ?? w
        projection = Linear(weight: flat, bias: b)
        patch = p
    }

    /// `[B, C, F, H, W]` → tokens `[B, F·(H/p)·(W/p), D]`.
    func callAsFunction(_ x: Tensor) throws(TensorError) -> Tensor {
        try projection(Patches.patchify3D(x, patch: (1, patch, patch), order: .channelsFirst))
    }
}

/// diffusers' `MochiAttentionPool`: the mask-weighted mean of the text tokens is the single query of a
/// multi-head attention over `[mean; tokens]`, projected to the visual width.
///
///     mean = Σₗ xₗ · mₗ / max(Σₗ mₗ, 1)        (the mask values as weights)
///     q = to_q(mean), [k | v] = to_kv([mean; x])
///     out = to_out(attention(q, k, v))          keys: the mean, then the tokens with mₗ ≠ 0
///
/// The key mask is the mask's truth value (nonzero = attend); the mean always attends, so a sample
/// whose mask is all zero pools its (zero) mean token alone, as diffusers does.
struct MochiAttentionPool: Sendable {
    /// `to_kv` `[2·E, E]`, `to_q` `[E, E]`, `to_out` `[out, E]`.
    let toKV: Linear
    let toQ: Linear
    let toOut: Linear
    /// Attention heads (diffusers: 8).
    let heads: Int

    /// Takes `to_kv`, `to_q` and `to_out` of the scope (`time_embed.pooler`).
    init(_ weights: WeightScope, embedDim e: Int, outputDim: Int, heads: Int) {
        toKV = Linear(weights["to_kv"], in: e, out: 2 * e)
        toQ = Linear(weights["to_q"], in: e, out: e)
        toOut = Linear(weights["to_out"], in: e, out: outputDim)
        self.heads = heads
    }

    /// Pools `x` `[B, L, E]` with the mask `[B, L]` into `[B, out]`.
    func callAsFunction(_ x: Tensor, mask: Tensor) throws(TensorError) -> Tensor {
        let (b, l, e) = (x.shape[0], x.shape[1], x.shape[2])
        let m = mask.scalars
        let xs = x.scalars
        // The weighted mean, as diffusers computes it: weights m / clamp(Σ m, 1), then Σ x · weight.
        var mean = [Float](repeating: 0, count: b * e)
        for bi in 0..<b {
            var total: Float = 0
            for j in 0..<l { total += m[bi * l + j] }
            let denominator = max(total, 1)
            for j in 0..<l {
                let weight = m[bi * l + j] / denominator
                let row = (bi * l + j) * e
                for c in 0..<e { mean[bi * e + c] += xs[row + c] * weight }
            }
        }
        let meanToken = try Tensor(shape: [b, 1, e], scalars: mean)
        let joined = try Tensor.concatenate([meanToken, x], axis: 1)  // [B, 1+L, E]
        let kv = try toKV(joined).split(sizes: [e, e], axis: -1)
        let q = try toQ(meanToken)
        var keyMask = [Float](repeating: 1, count: b * (l + 1))
        for bi in 0..<b { for j in 0..<l where m[bi * l + j] == 0 { keyMask[bi * (l + 1) + 1 + j] = 0 } }
        let pooled = try attention(query: q, key: kv[0], value: kv[1], heads: heads,
                                   mask: .keys(Tensor(shape: [b, l + 1], scalars: keyMask)))
        return try toOut(pooled.reshaped([b, e]))
    }
}

/// diffusers' `MochiCombinedTimestepCaptionEmbedding`: `temb = timestep_embedder(sinusoid(t)) +
/// pooler(text, mask)` (visual width) and the caption tokens `caption_proj(text)` (text-stream width).
///
/// The sinusoid has `time_embed_dim` features, cosines first, frequency shift 0.
struct MochiTimestepCaptionEmbedding: Sendable {
    /// Sinusoidal timestep features.
    let timeEmbedDim: Int
    /// `timestep_embedder` (SiLU MLP to the visual width).
    let timestepEmbedder: TimestepMLP
    /// `pooler`.
    let pooler: MochiAttentionPool
    /// `caption_proj` `[pooled_projection_dim, text_embed_dim]`.
    let captionProjection: Linear

    /// Takes every parameter of the `time_embed` scope.
    init(_ w: WeightScope, configuration c: MochiConfiguration) {
        timeEmbedDim = c.timeEmbedDim
        timestepEmbedder = TimestepMLP(w["timestep_embedder"], in: c.timeEmbedDim, hidden: c.innerDim, out: c.innerDim)
        pooler = MochiAttentionPool(w["pooler"], embedDim: c.textEmbedDim, outputDim: c.innerDim,
                                    heads: MochiConfiguration.poolHeads)
        captionProjection = Linear(w["caption_proj"], in: c.textEmbedDim, out: c.pooledProjectionDim)
    }

    /// `temb` `[B, D]` and the caption tokens `[B, L, P]` for per-sample timesteps (one value is
    /// broadcast over the batch, as diffusers' addition broadcasts it).
    func callAsFunction(
        timesteps: [Float], text: Tensor, mask: Tensor
    ) throws(TensorError) -> (temb: Tensor, caption: Tensor) {
        let features = try sinusoidalTimestepEmbedding(timesteps, dim: timeEmbedDim, flipSinToCos: true, downscaleFreqShift: 0)
        var time = try timestepEmbedder(features)
        let b = text.shape[0]
        if time.shape[0] != b { time = try time.gatheringRows(Array(repeating: 0, count: b)) }
        let temb = try time + pooler(text, mask: mask)
        return (temb, try captionProjection(text))
    }
}

/// diffusers' `MochiRoPE` with the learned `pos_frequencies` `[3, H, Dh/2]`: every visual token has a
/// 3-D position (frame index; row and column centres scaled so the grid covers the area of a 192 × 192
/// base grid), and its angle for head h and frequency f is `Σ_d pos_d · freq[d, h, f]`.
///
/// The tables returned are laid out for ``RotaryEmbedding/apply(_:cos:sin:heads:layout:)`` with one
/// "head" spanning the whole width `H·Dh` (interleaved pairs, each angle written twice), which applies
/// diffusers' rotation `(x₀ cos − x₁ sin, x₀ sin + x₁ cos)` to every pair of every head.
enum MochiRotaryEmbedding {
    /// The base grid area (`base_height · base_width` = 192 · 192).
    static let targetArea = 192.0 * 192.0

    /// Positions `[F·h·w, 3]` (frame, row, column) of a patched grid, in token order. Rows and columns
    /// are the centres of `n` equal cells spanning `±n·scale/2`, `scale = √(192²/(h·w))`.
    static func positions(frames f: Int, height h: Int, width w: Int) -> [(Double, Double, Double)] {
        let scale = (targetArea / (Double(h) * Double(w))).squareRoot()
        func centres(_ n: Int) -> [Double] {
            // torch.linspace in float32 from ±n·scale/2, then the mean of neighbouring edges.
            let start = Float(-Double(n) * scale / 2), stop = Float(Double(n) * scale / 2)
            let step = (stop - start) / Float(n)
            let edges = (0...n).map { i -> Float in
                i < (n + 1) / 2 ? start + step * Float(i) : stop - step * Float(n - i)
            }
            return (0..<n).map { Double((edges[$0] + edges[$0 + 1]) / 2) }
        }
        let rows = centres(h), cols = centres(w)
        var out: [(Double, Double, Double)] = []
        out.reserveCapacity(f * h * w)
        for t in 0..<f { for r in rows { for c in cols { out.append((Double(t), r, c)) } } }
        return out
    }

    /// cos/sin tables `[F·h·w, H·Dh]` for `pos_frequencies` `[3, H, Dh/2]`.
    static func tables(
        frequencies: Tensor, frames f: Int, height h: Int, width w: Int
    ) throws(TensorError) -> (cos: Tensor, sin: Tensor) {
        guard frequencies.rank == 3, frequencies.shape[0] == 3 else {
            throw .shapeMismatch(operation: "Mochi rotary tables", shapes: [frequencies.shape], reason: "pos_frequencies must be [3, H, Dh/2]")
        }
        let pairs = frequencies.shape[1] * frequencies.shape[2]  // H · Dh/2
        let freq = frequencies.scalars.map(Double.init)
        let pos = positions(frames: f, height: h, width: w)
        let n = pos.count
        let width = 2 * pairs
        var cosT = [Float](repeating: 0, count: n * width)
        var sinT = [Float](repeating: 0, count: n * width)
        cosT.withUnsafeMutableBufferPointer { pc in
            sinT.withUnsafeMutableBufferPointer { ps in
                let c = pc.baseAddress!, s = ps.baseAddress!
                Parallelism.forEachChunk(n, costPerItem: 60 * pairs) { tokens in
                    for t in tokens {
                        let (p0, p1, p2) = pos[t]
                        for k in 0..<pairs {
                            // float32 einsum result, then cos/sin of that float32 angle.
                            let angle = Double(Float(p0 * freq[k] + p1 * freq[pairs + k] + p2 * freq[2 * pairs + k]))
                            let cv = Float(Foundation.cos(angle)), sv = Float(Foundation.sin(angle))
                            let o = t * width + 2 * k
                            c[o] = cv; c[o + 1] = cv
                            s[o] = sv; s[o + 1] = sv
                        }
                    }
                }
            }
        }
        return (try Tensor(shape: [n, width], scalars: cosT), try Tensor(shape: [n, width], scalars: sinT))
    }
}

/// The rotary tables of the most recent grid, kept by a model: they depend only on `pos_frequencies`
/// (fixed per model) and the patched grid, so a sampling loop computes them once instead of on every
/// call (the values are the same either way).
final class MochiRotaryCache: Sendable {
    private struct Entry { let grid: [Int]; let cos: Tensor; let sin: Tensor }
    private let last = Mutex<Entry?>(nil)

    /// The tables for the patched grid `f × h × w`, computed on a miss.
    func tables(frequencies: Tensor, frames f: Int, height h: Int, width w: Int) throws(TensorError) -> (cos: Tensor, sin: Tensor) {
        let key = [f, h, w]
        if let e = last.withLock({ $0 }), e.grid == key { return (e.cos, e.sin) }
        let t = try MochiRotaryEmbedding.tables(frequencies: frequencies, frames: f, height: h, width: w)
        last.withLock { $0 = Entry(grid: key, cos: t.cos, sin: t.sin) }
        return t
    }
}
