import Foundation
import Synchronization
import Tensors

/// The arguments of one `MochiTransformer3DModel.forward` call.
public struct MochiInput: LatentTimestepInput, Sendable {
    /// The latent video `[B, C, F, H, W]`.
    public var hiddenStates: Tensor
    /// Text-encoder features `[B, L, text_embed_dim]`.
    public var encoderHiddenStates: Tensor
    /// The timestep per sample `[B]` (or `[1]`, broadcast over the batch), on the 0…1000 scale (Mochi's
    /// scheduler inverts sigmas: `(1 − σ)·1000`).
    public var timestep: Tensor
    /// `[B, L]`: nonzero for caption tokens to attend (diffusers' `encoder_attention_mask`; the pool also
    /// weights the mean by its values).
    public var encoderAttentionMask: Tensor

    /// Bundles the arguments.
    public init(hiddenStates: Tensor, encoderHiddenStates: Tensor, timestep: Tensor, encoderAttentionMask: Tensor) {
        self.hiddenStates = hiddenStates
        self.encoderHiddenStates = encoderHiddenStates
        self.timestep = timestep
        self.encoderAttentionMask = encoderAttentionMask
    }
}

/// Everything computed before the block stack for one call, and the visual tokens as they go through it.
public struct MochiState: Sendable {
    /// The visual tokens `[B, S, D]`: the patch-embedded input h_in after ``MochiTransformer/prepare(_:)``;
    /// after ``MochiTransformer/runBlocks(_:)`` the block-stack output already passed through `norm_out`
    /// (TeaCache4Mochi's cached span ends after the final norm).
    public var tokens: Tensor
    /// The caption tokens `[B, L, P]` (`caption_proj` output), updated by the blocks.
    public var text: Tensor
    /// The conditioning `temb` `[B, D]` (time embedding + pooled caption).
    public var temb: Tensor
    /// The rotary tables `[S, H·Dh]`, shared by the batch.
    public var rotary: (cos: Tensor, sin: Tensor)
    /// The valid caption tokens of each sample.
    var mask: MochiTextMask
    /// The latent grid `(F, H, W)` before patching.
    public var grid: (f: Int, h: Int, w: Int)
}

/// diffusers 0.42.1 `MochiTransformer3DModel` on the CPU in float32.
///
/// The forward is split the way TeaCache4Mochi needs it: ``prepare(_:)`` (patch embedding, timestep +
/// pooled-caption conditioning, caption projection, rotary tables, mask), ``runBlocks(_:)`` (the blocks
/// **and** `norm_out`, since the reference's residual is `norm_out(blocks(h_in), temb) − h_in`),
/// ``outputHead(_:)`` (`proj_out` and unpatchify). ``callAsFunction(_:)`` chains them.
///
/// Precision: diffusers upcasts to float32 inside every norm and rotary step and casts back to the
/// model dtype; with float32 weights (the fixtures, and this port) each cast is the identity. The rotary
/// angles are float32 values (diffusers' float32 einsum), their cos/sin computed in Double.
public struct MochiTransformer: Sendable {
    /// The validated configuration.
    public let configuration: MochiConfiguration
    /// The memory a forward may plan to use: ``prepare(_:)`` estimates the activations of the input shapes
    /// (``MochiConfiguration/activationBytesEstimate(batch:visualTokens:textTokens:)``) and refuses inputs
    /// beyond it with `TensorError.memoryBudgetExceeded`.
    public var memoryBudget = MemoryBudget.machineDefault
    /// `patch_embed`.
    let patchEmbedding: PatchEmbedding3D
    /// `time_embed`.
    let timeEmbedding: MochiTimestepCaptionEmbedding
    /// `pos_frequencies` `[3, H, Dh/2]`.
    let positionFrequencies: Tensor
    /// `transformer_blocks`; the last one is `context_pre_only`.
    let blocks: [MochiTransformerBlock]
    /// `norm_out` (LayerNorm without affine, ε = 1e-6, modulated by `temb`).
    let normOut: AdaLayerNormContinuous
    /// `proj_out` `[p²·out_channels, D]`.
    let projOut: Linear
    /// The rotary tables of the last grid seen.
    private let rotaryCache: MochiRotaryCache

    /// Builds the model, taking every parameter from `weights` (called by ``MochiFamily``'s loading
    /// functions, which check the weights afterwards).
    init(configuration c: MochiConfiguration, weights w: WeightScope) {
        configuration = c
        rotaryCache = MochiRotaryCache()
        let d = c.innerDim
        // diffusers' per-frame `PatchEmbed` Conv2d (no position embedding): a 3-D embedding with a temporal patch of 1.
        patchEmbedding = PatchEmbedding3D(w["patch_embed"]["proj"], inChannels: c.inChannels, outChannels: c.innerDim,
                                          framePatch: (c.patchSize, c.patchSize))
        timeEmbedding = MochiTimestepCaptionEmbedding(w["time_embed"], configuration: c)
        positionFrequencies = w.tensor("pos_frequencies", shape: [3, c.numAttentionHeads, c.attentionHeadDim / 2])
        blocks = (0..<c.numLayers).map {
            MochiTransformerBlock(w["transformer_blocks"][$0], configuration: c, contextPreOnly: $0 == c.numLayers - 1)
        }
        normOut = AdaLayerNormContinuous(w["norm_out"], dim: d, conditioningDim: d, eps: MochiConfiguration.outputEps)
        projOut = Linear(w["proj_out"], in: d, out: c.outputTokenWidth)
    }

    /// Patch embedding, conditioning, caption tokens, rotary tables and mask.
    /// - Throws: `TensorError` naming the argument for wrong shapes, a mask of the wrong length, or
    ///   NaN/infinite values, before anything large is allocated.
    public func prepare(_ input: MochiInput) throws(TensorError) -> MochiState {
        let (grid, timesteps) = try validate(input)
        let p = configuration.patchSize
        let (fh, fw) = (grid.h / p, grid.w / p)
        let (b, l) = (input.hiddenStates.shape[0], input.encoderHiddenStates.shape[1])
        try memoryBudget.check("Mochi forward of batch \(b), \(grid.f * fh * fw) video + \(l) text tokens",
                               bytes: Double(configuration.activationBytesEstimate(batch: b, visualTokens: grid.f * fh * fw, textTokens: l)))
        let tokens = try patchEmbedding(input.hiddenStates)
        let (temb, caption) = try timeEmbedding(timesteps: timesteps, text: input.encoderHiddenStates,
                                                mask: input.encoderAttentionMask)
        let rotary = try rotaryCache.tables(frequencies: positionFrequencies, frames: grid.f, height: fh, width: fw)
        let mask = MochiTextMask(input.encoderAttentionMask)
        return MochiState(tokens: tokens, text: caption, temb: temb, rotary: rotary, mask: mask, grid: grid)
    }

    /// TeaCache4Mochi's modulated input: `transformer_blocks[0].norm1(h_in, temb)[0]` =
    /// `RMSNorm(h_in)·(1 + scale_msa)` `[B, S, D]`.
    /// - Throws: for a configuration without blocks (`num_layers = 0`), which has no such tensor.
    public func modulatedInput(_ state: MochiState) throws(TensorError) -> Tensor {
        guard let first = blocks.first else {
            throw .invalidArgument(operation: "Mochi modulated input",
                                   reason: "the configuration has no transformer block (num_layers = 0)")
        }
        return try first.norm1(state.tokens, emb: state.temb).normalized
    }

    /// Runs every block on the visual and text streams, then `norm_out` on the visual tokens, in place.
    public func runBlocks(_ state: inout MochiState) throws(TensorError) {
        for index in blocks.indices { try runBlock(index, &state) }
        try applyOutputNorm(&state)
    }

    /// Block `index` on the visual and text streams in place: one step of ``runBlocks(_:)``, and what
    /// First-Block Cache runs block by block.
    /// - Throws: when `index` is outside `0 ..< num_layers`.
    public func runBlock(_ index: Int, _ state: inout MochiState) throws(TensorError) {
        guard blocks.indices.contains(index) else {
            throw .invalidArgument(operation: "Mochi block", reason: "block \(index) is outside 0..<\(blocks.count)")
        }
        try blocks[index](visual: &state.tokens, text: &state.text, temb: state.temb, rotary: state.rotary, mask: state.mask)
    }

    /// The full forward: `output` of diffusers' `forward(..., return_dict=False)[0]`.
    public func callAsFunction(_ input: MochiInput) throws(TensorError) -> Tensor {
        var state = try prepare(input)
        try runBlocks(&state)
        return try outputHead(state)
    }

    /// Checks every argument; returns the latent grid and the per-sample timesteps.
    private func validate(_ x: MochiInput) throws(TensorError) -> (grid: (f: Int, h: Int, w: Int), timesteps: [Float]) {
        let c = configuration
        func fail(_ reason: String) -> TensorError { .invalidArgument(operation: "Mochi forward", reason: reason) }
        let h = x.hiddenStates.shape
        guard h.count == 5, h[1] == c.inChannels, h[0] > 0, h[2] > 0, h[3] > 0, h[4] > 0 else {
            throw fail("hidden_states must be [B, \(c.inChannels), F, H, W] with every extent > 0, got \(h)")
        }
        let (b, f, hh, ww) = (h[0], h[2], h[3], h[4])
        guard hh % c.patchSize == 0, ww % c.patchSize == 0 else {
            throw fail("latent height and width \(hh)×\(ww) must be divisible by patch_size \(c.patchSize)")
        }
        let e = x.encoderHiddenStates.shape
        guard e.count == 3, e[0] == b, e[1] > 0, e[2] == c.textEmbedDim else {
            throw fail("encoder_hidden_states must be [B = \(b), L > 0, text_embed_dim = \(c.textEmbedDim)], got \(e)")
        }
        let l = e[1]
        guard x.encoderAttentionMask.shape == [b, l] else {
            throw fail("encoder_attention_mask must be [B, L] = [\(b), \(l)] (one entry per caption token), "
                       + "got \(x.encoderAttentionMask.shape)")
        }
        let t = x.timestep
        guard t.rank == 1, t.count == b || t.count == 1 else {
            throw fail("timestep must be [B = \(b)] or [1], got \(t.shape)")
        }
        for (name, tensor) in [("hidden_states", x.hiddenStates), ("encoder_hidden_states", x.encoderHiddenStates),
                               ("timestep", t), ("encoder_attention_mask", x.encoderAttentionMask)]
            where !tensor.isFinite {
            throw fail("\(name) holds NaN or infinite values")
        }
        return ((f, hh, ww), t.scalars)
    }
}

// MARK: - Embeddings

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
private final class MochiRotaryCache: Sendable {
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

// MARK: - Transformer block

/// diffusers' `MochiRMSNormZero`: `linear(silu(temb))` → (scale_msa, gate_msa, scale_mlp, gate_mlp), each
/// `[B, W]`, and `x̂ = RMSNorm(x) · (1 + scale_msa)` (no weight, no shift, ε = 1e-6). W is the width of
/// the stream it normalises (D for the visual stream, P for the text stream); the conditioning is `temb`
/// (width D) for both.
private struct MochiRMSNormZero: Sendable {
    /// `linear` `[4W, D]`.
    let linear: Linear

    /// The modulated input and the remaining modulation parameters.
    struct Output: Sendable {
        /// `RMSNorm(x)·(1 + scale_msa)`, `[B, S, W]`.
        let normalized: Tensor
        /// Gate of the attention update (tanh applied by the block).
        let gateMSA: Tensor
        /// Scale of the feed-forward input norm.
        let scaleMLP: Tensor
        /// Gate of the feed-forward update.
        let gateMLP: Tensor
    }

    /// Takes `linear` of the scope (`norm1` or `norm1_context`).
    init(_ weights: WeightScope, conditioningDim: Int, width: Int) {
        linear = Linear(weights["linear"], in: conditioningDim, out: 4 * width)
    }

    /// Applies the norm to `x` `[B, S, W]` with `temb` `[B, D]`.
    func callAsFunction(_ x: Tensor, emb: Tensor) throws(TensorError) -> Output {
        let c = try linear(silu(emb)).chunked(4, axis: 1)
        let n = try rmsNormModulated(x, eps: MochiConfiguration.blockEps, scale: c[0], shift: nil)
        return Output(normalized: n, gateMSA: c[1], scaleMLP: c[2], gateMLP: c[3])
    }
}

/// diffusers' `MochiTransformerBlock` (float32 throughout). Visual stream `h` `[B, S, D]`, text stream
/// `c` `[B, L, P]`:
///
///     (scale, gate, scale_mlp, gate_mlp) = norm1(temb)             (and the text stream's own norm1_context)
///     a_h, a_c = attn1(RMS(h)·(1 + scale), RMS(c)·(1 + c_scale))
///     h = h + RMS(a_h)·tanh(gate)
///     h = h + RMS(ff(RMS(h)·(1 + scale_mlp)))·tanh(gate_mlp)
///     c likewise with its own modulation and ff_context
///
/// RMS has no weight and ε = 1e-6. In the last block (`context_pre_only`) the text stream is only
/// normalised — `norm1_context` is then `MochiLayerNormContinuous`: `RMS(c)·(1 + linear_1(silu(temb)))`
/// — to serve as keys and values; it is not updated (there is no `to_add_out`, no `ff_context`).
struct MochiTransformerBlock: Sendable {
    /// `norm1` (visual modulation `[4D, D]`).
    fileprivate let norm1: MochiRMSNormZero
    /// `norm1_context` of a full block (`[4P, D]`), nil in the `context_pre_only` block.
    private let norm1Context: MochiRMSNormZero?
    /// `norm1_context.linear_1` `[P, D]` of the `context_pre_only` block (its scale), else nil.
    private let contextScale: Linear?
    /// `attn1`.
    private let attention: MochiAttention
    /// `ff` (visual) and `ff_context` (text, nil in the `context_pre_only` block); no biases.
    let ff: FeedForward
    let ffContext: FeedForward?
    /// Whether this is the last block.
    let contextPreOnly: Bool

    /// Takes every parameter of one block's scope (`transformer_blocks.<i>`).
    init(_ w: WeightScope, configuration c: MochiConfiguration, contextPreOnly: Bool) {
        let d = c.innerDim, p = c.pooledProjectionDim
        self.contextPreOnly = contextPreOnly
        norm1 = MochiRMSNormZero(w["norm1"], conditioningDim: d, width: d)
        if contextPreOnly {
            norm1Context = nil
            contextScale = Linear(w["norm1_context"]["linear_1"], in: d, out: p)
        } else {
            norm1Context = MochiRMSNormZero(w["norm1_context"], conditioningDim: d, width: p)
            contextScale = nil
        }
        attention = MochiAttention(w["attn1"], dim: d, heads: c.numAttentionHeads, headDim: c.attentionHeadDim,
                                   textDim: p, contextPreOnly: contextPreOnly)
        let act = c.feedForwardActivation
        ff = FeedForward(w["ff"], dim: d, inner: c.feedForwardInnerDim, activation: act, bias: false)
        ffContext = contextPreOnly ? nil
            : FeedForward(w["ff_context"], dim: p, inner: c.contextFeedForwardInnerDim, activation: act, bias: false)
    }

    /// Updates `visual` `[B, S, D]` and (unless `context_pre_only`) `text` `[B, L, P]`.
    func callAsFunction(
        visual h: inout Tensor, text c: inout Tensor, temb: Tensor, rotary: (cos: Tensor, sin: Tensor), mask: MochiTextMask
    ) throws(TensorError) {
        let m = try norm1(h, emb: temb)
        let eps = MochiConfiguration.blockEps
        var mc: MochiRMSNormZero.Output? = nil
        let normalizedText: Tensor
        if let norm1Context {
            let o = try norm1Context(c, emb: temb)
            mc = o
            normalizedText = o.normalized
        } else if let contextScale {
            normalizedText = try rmsNormModulated(c, eps: eps, scale: contextScale(silu(temb)), shift: nil)
        } else {
            throw .invalidArgument(operation: "Mochi block", reason: "the text-stream norm is missing")
        }
        let (attnVisual, attnText) = try attention(visual: m.normalized, text: normalizedText, rotary: rotary, mask: mask)
        h = try mochiGatedRMSResidual(h, attnVisual, gate: m.gateMSA)
        h = try mochiGatedRMSResidual(h, ff(rmsNormModulated(h, eps: eps, scale: m.scaleMLP, shift: nil)), gate: m.gateMLP)
        guard let mc, let attnText, let ffContext else { return }
        c = try mochiGatedRMSResidual(c, attnText, gate: mc.gateMSA)
        c = try mochiGatedRMSResidual(c, ffContext(rmsNormModulated(c, eps: eps, scale: mc.scaleMLP, shift: nil)),
                                      gate: mc.gateMLP)
    }
}

/// Several bias-free linear layers reading the same input as one sgemm over their stacked weights
/// (diffusers' `to_q`/`to_k`/`to_v` and `add_q_proj`/`add_k_proj`/`add_v_proj` of Mochi have no bias).
private struct MochiStackedProjection: Sendable {
    /// The stacked `[Σ outᵢ, in]` weight.
    let stacked: Linear
    /// The output width of each part.
    let widths: [Int]

    /// Takes `weight` `[out, in]` of every scope (no bias), in order.
    init(_ scopes: [WeightScope], in inFeatures: Int, out: Int) {
        stacked = Linear.stacking(scopes.map { Linear($0, in: inFeatures, out: out, bias: false) })
        widths = Array(repeating: out, count: scopes.count)
    }

    /// Each part's output `[..., out]`.
    func callAsFunction(_ x: Tensor) throws(TensorError) -> [Tensor] {
        try stacked(x).split(sizes: widths, axis: -1)
    }
}

/// The text mask as the joint attention uses it: which caption tokens of each sample are valid
/// (`encoder_attention_mask ≠ 0`).
///
/// diffusers' processor attends each sample separately over `[visual tokens; its valid caption tokens]`
/// and writes the caption outputs of the valid tokens *in order to the first rows*, zero-padded to L.
/// This port does the same: ``validRows(_:sample:)`` selects the valid rows (a view for the usual mask of
/// ones then trailing zeros), ``padded(_:length:)`` lays the outputs out as diffusers' `F.pad` does. A
/// mask with holes therefore moves rows forward exactly as in diffusers.
struct MochiTextMask: Sendable {
    /// The valid caption-token indices of each sample, ascending.
    let validTokens: [[Int]]
    /// Caption tokens per sample (L).
    let textLength: Int

    /// The mask of `mask` `[B, L]`.
    init(_ mask: Tensor) {
        let (b, l) = (mask.shape[0], mask.shape[1])
        let m = mask.scalars
        validTokens = (0..<b).map { bi in (0..<l).filter { m[bi * l + $0] != 0 } }
        textLength = l
    }

    private init(validTokens: [[Int]], textLength: Int) {
        self.validTokens = validTokens
        self.textLength = textLength
    }

    /// The rows of the selected batch elements.
    func selecting(batch indices: [Int]) -> MochiTextMask {
        MochiTextMask(validTokens: indices.map { validTokens[$0] }, textLength: textLength)
    }

    /// The valid caption rows of sample `b` of `t` `[B, L, W]`, as `[1, n, W]`.
    func validRows(_ t: Tensor, sample b: Int) throws(TensorError) -> Tensor {
        let valid = validTokens[b]
        let one = try t.slice(axis: 0, b..<(b + 1))
        if valid.last.map({ $0 + 1 == valid.count }) ?? true { return try one.slice(axis: 1, 0..<valid.count) }
        let w = t.shape[2]
        return one.withUnsafeBufferPointer { src in
            Tensor(uninitializedShape: [1, valid.count, w]) { dst in
                for (j, token) in valid.enumerated() {
                    (dst.baseAddress! + j * w).update(from: src.baseAddress! + token * w, count: w)
                }
            }
        }
    }

    /// `[1, n, W]` outputs zero-padded to `[1, length, W]`.
    static func padded(_ t: Tensor?, length: Int, width: Int) throws(TensorError) -> Tensor {
        guard let t, t.shape[1] > 0 else { return try Tensor(zeros: [1, length, width]) }
        if t.shape[1] == length { return t }
        return try Tensor.concatenate([t, Tensor(zeros: [1, length - t.shape[1], width])], axis: 1)
    }
}

/// diffusers' `MochiAttention` with `MochiAttnProcessor2_0`: asymmetric joint attention.
///
/// The visual stream (width D) is projected by `to_q`/`to_k`/`to_v`, the text stream (width P) by
/// `add_q_proj`/`add_k_proj`/`add_v_proj`, both to D = H·Dh without bias; each head's queries and keys are
/// RMS-normalised (`norm_q`, `norm_k`, `norm_added_q`, `norm_added_k`, ε = 1e-5, learned scale); the visual
/// queries and keys are rotated by the learned 3-D rotary tables. Each sample attends over
/// `[visual tokens; its valid caption tokens]`. The visual output goes through `to_out.0` (with bias, back
/// to D); the caption output (laid out as ``MochiTextMask`` describes) through `to_add_out` (with bias, to P),
/// except in the `context_pre_only` block, which has no `to_add_out` and whose caption output nobody reads
/// (only the visual queries are computed there).
private struct MochiAttention: Sendable {
    /// `to_q`, `to_k`, `to_v` stacked.
    let visual: MochiStackedProjection
    /// `add_q_proj`, `add_k_proj`, `add_v_proj` stacked.
    let text: MochiStackedProjection
    /// `[Dh]` per-head RMS norm scales.
    let normQ: Tensor
    let normK: Tensor
    let normAddedQ: Tensor
    let normAddedK: Tensor
    /// `to_out.0` `[D, D]` with bias.
    let toOut: Linear
    /// `to_add_out` `[P, D]` with bias; nil in the `context_pre_only` block.
    let toAddOut: Linear?
    let heads: Int
    let headDim: Int

    /// Takes the parameters of the scope (`transformer_blocks.<i>.attn1`).
    init(_ w: WeightScope, dim: Int, heads: Int, headDim: Int, textDim: Int, contextPreOnly: Bool) {
        let inner = heads * headDim
        normQ = w["norm_q"].tensor("weight", shape: [headDim])
        normK = w["norm_k"].tensor("weight", shape: [headDim])
        normAddedQ = w["norm_added_q"].tensor("weight", shape: [headDim])
        normAddedK = w["norm_added_k"].tensor("weight", shape: [headDim])
        visual = MochiStackedProjection([w["to_q"], w["to_k"], w["to_v"]], in: dim, out: inner)
        text = MochiStackedProjection([w["add_q_proj"], w["add_k_proj"], w["add_v_proj"]], in: textDim, out: inner)
        toOut = Linear(w["to_out.0"], in: inner, out: dim)
        toAddOut = contextPreOnly ? nil : Linear(w["to_add_out"], in: inner, out: textDim)
        self.heads = heads
        self.headDim = headDim
    }

    /// Per-head RMS norm of `[B, S, H·Dh]`.
    private func headNorm(_ t: Tensor, _ weight: Tensor) throws(TensorError) -> Tensor {
        let shape = t.shape
        return try rmsNorm(t.reshaped([shape[0], shape[1], heads, headDim]), weight: weight, eps: MochiConfiguration.qkEps)
            .reshaped(shape)
    }

    /// Attends the normalised visual tokens `x` `[B, S, D]` and caption tokens `c` `[B, L, P]` jointly, each
    /// sample over its visual and valid caption tokens. Returns the visual output `[B, S, D]` and, unless
    /// `context_pre_only`, the caption output `[B, L, P]`.
    func callAsFunction(
        visual x: Tensor, text c: Tensor, rotary: (cos: Tensor, sin: Tensor), mask: MochiTextMask
    ) throws(TensorError) -> (visual: Tensor, text: Tensor?) {
        let (qv, kv, vv) = try mochiNormRotateSplit(visual.stacked(x), heads: heads, headDim: headDim, normQ: normQ,
                                                    normK: normK, cos: rotary.cos, sin: rotary.sin)
        let pt = try text(c)
        let kt = try headNorm(pt[1], normAddedK)
        let qt = toAddOut == nil ? nil : try headNorm(pt[0], normAddedQ)
        let (b, l, width) = (x.shape[0], c.shape[1], qv.shape[2])
        var visualOut: [Tensor] = [], textOut: [Tensor] = []
        for i in 0..<b {
            // diffusers' per-sample attention over [visual; valid caption tokens]: no key mask needed.
            let keys = try Tensor.concatenate([kv.slice(axis: 0, i..<(i + 1)), mask.validRows(kt, sample: i)], axis: 1)
            let values = try Tensor.concatenate([vv.slice(axis: 0, i..<(i + 1)), mask.validRows(pt[2], sample: i)], axis: 1)
            visualOut.append(try attention(query: qv.slice(axis: 0, i..<(i + 1)), key: keys, value: values, heads: heads,
                                           precision: toOut.weight.precision))
            if let qt {
                let q = try mask.validRows(qt, sample: i)
                let o = q.shape[1] == 0 ? nil : try attention(query: q, key: keys, value: values, heads: heads,
                                                                        precision: toOut.weight.precision)
                textOut.append(try MochiTextMask.padded(o, length: l, width: width))
            }
        }
        let v = try toOut(b == 1 ? visualOut[0] : Tensor.concatenate(visualOut, axis: 0))
        guard let toAddOut else { return (v, nil) }
        return (v, try toAddOut(b == 1 ? textOut[0] : Tensor.concatenate(textOut, axis: 0)))
    }
}

// MARK: - Output head

extension MochiTransformer {
    /// `norm_out` on the visual tokens: the end of the span TeaCache caches.
    func applyOutputNorm(_ state: inout MochiState) throws(TensorError) {
        state.tokens = try normOut(state.tokens, conditioning: state.temb)
    }

    /// `proj_out` and unpatchify to `[B, out_channels, F, H, W]`.
    public func outputHead(_ state: MochiState) throws(TensorError) -> Tensor {
        let p = configuration.patchSize
        return try Patches.unpatchify3D(projOut(state.tokens), grid: state.grid, patch: (1, p, p), order: .channelsLast)
    }
}
