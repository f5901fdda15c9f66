import Foundation
import Tensors

/// The tensor arguments of one `HunyuanVideoTransformer3DModel.forward` call, named after diffusers'.
public struct HunyuanVideoInput: LatentTimestepInput, Sendable {
    /// `hidden_states` `[B, in_channels, F, H, W]`.
    public var hiddenStates: Tensor
    /// `timestep` `[B]` (or `[1]`, broadcast), on the 0…1000 scale (sigma·1000).
    public var timestep: Tensor
    /// `encoder_hidden_states` `[B, L, text_embed_dim]`.
    public var encoderHiddenStates: Tensor
    /// `encoder_attention_mask` `[B, L]`: 1 for a valid text token, 0 for padding (at least one 1 per sample).
    public var encoderAttentionMask: Tensor
    /// `pooled_projections` `[B, pooled_projection_dim]`.
    public var pooledProjections: Tensor
    /// `guidance` `[B]` (or `[1]`): the pipeline's `guidance_scale · 1000`. Required when the model embeds
    /// guidance; ignored otherwise, as diffusers ignores it (its pipeline always passes one).
    public var guidance: Tensor?

    /// The inputs of one forward call (shapes as documented on each property).
    public init(hiddenStates: Tensor, timestep: Tensor, encoderHiddenStates: Tensor, encoderAttentionMask: Tensor,
                pooledProjections: Tensor, guidance: Tensor? = nil) {
        self.hiddenStates = hiddenStates
        self.timestep = timestep
        self.encoderHiddenStates = encoderHiddenStates
        self.encoderAttentionMask = encoderAttentionMask
        self.pooledProjections = pooledProjections
        self.guidance = guidance
    }
}

/// Everything HunyuanVideo's block stacks need, computed once per call by
/// ``HunyuanVideoTransformer/prepare(_:)``, and the two token streams as they go through the blocks.
public struct HunyuanVideoState: Sendable {
    /// Image tokens `[B, S, D]`: `x_embedder` output (h_in) after `prepare`, the stack's output after `runBlocks`.
    public var image: Tensor
    /// Text tokens `[B, L, D]` (the token refiner's output, then the blocks').
    public var text: Tensor
    /// What every block reads (conditioning, rotary tables, key mask).
    var context: HunyuanVideoBlockContext
    /// The latent grid `(F, H, W)` before patching.
    public var grid: (f: Int, h: Int, w: Int)
}

/// What every block of one forward reads besides its own streams.
struct HunyuanVideoBlockContext: Sendable {
    /// The conditioning `temb` `[B, D]`.
    var temb: Tensor
    /// The first frame's conditioning `[B, D]` of token-replace models, else nil.
    var tokenReplaceEmb: Tensor?
    /// Image tokens of the first latent frame (`(H/p)·(W/p)`), the ones the token-replace conditioning modulates.
    var firstFrameTokens: Int
    /// Rotary tables over the joint (image, text) sequence `[S + L, head_dim]` (text rows leave pairs unchanged).
    var rope: (cos: Tensor, sin: Tensor)
    /// The joint key mask `[B, S + L]` (1 = attend), or nil when no key is masked.
    var keyMask: Tensor?
}

/// diffusers 0.42.1 `HunyuanVideoTransformer3DModel` (text-to-video, `latent_concat` and `token_replace`
/// image-to-video layouts), float32 on the CPU.
///
/// The forward is split in the order TeaCache needs it: ``prepare(_:)`` (rotary tables, conditioning,
/// patch embedding, token refiner, joint key mask), ``modulatedInput(_:)``, ``runBlocks(_:)`` (dual- then
/// single-stream blocks) and ``outputHead(_:)`` (`norm_out`, `proj_out`, unpatchify);
/// ``callAsFunction(_:)`` runs all four.
///
/// The text mask is honoured as diffusers does: the token refiner masks exactly the zero entries (and
/// pools over the valid tokens); the blocks' joint key mask keeps the first `S + Σ mask` keys — image
/// tokens, then as many text tokens as the mask counts, i.e. diffusers assumes the padding trails.
public struct HunyuanVideoTransformer: Sendable {
    /// The validated configuration.
    public let configuration: HunyuanVideoConfiguration
    /// The memory a forward may plan to use: ``prepare(_:)`` estimates the activations of the input shapes
    /// (``HunyuanVideoConfiguration/activationBytesEstimate(batch:imageTokens:textTokens:)``) and refuses
    /// inputs beyond it with `TensorError.memoryBudgetExceeded`, before computing anything.
    public var memoryBudget = MemoryBudget.machineDefault
    /// `x_embedder.proj`.
    let xEmbedder: PatchEmbedding3D
    /// `context_embedder`.
    let contextEmbedder: HunyuanVideoTokenRefiner
    /// `time_text_embed`.
    let timeTextEmbed: HunyuanVideoConditionEmbedding
    /// `rope`.
    let rotary: HunyuanVideoRotaryEmbedding
    /// `transformer_blocks`.
    private let doubleBlocks: [HunyuanVideoDualStreamBlock]
    /// `single_transformer_blocks`.
    private let singleBlocks: [HunyuanVideoSingleStreamBlock]
    /// `norm_out`.
    let normOut: AdaLayerNormContinuous
    /// `proj_out`.
    let projOut: Linear

    /// Builds the model, taking every parameter from `weights` by its diffusers name (called by
    /// ``HunyuanVideoFamily``'s loading functions, which check the weights afterwards).
    init(configuration c: HunyuanVideoConfiguration, weights w: WeightScope) {
        configuration = c
        let d = c.innerDim
        xEmbedder = PatchEmbedding3D(w["x_embedder"]["proj"], inChannels: c.inChannels, outChannels: d, patch: c.patch)
        contextEmbedder = HunyuanVideoTokenRefiner(w["context_embedder"], configuration: c)
        timeTextEmbed = HunyuanVideoConditionEmbedding(w["time_text_embed"], configuration: c)
        rotary = HunyuanVideoRotaryEmbedding(configuration: c)
        doubleBlocks = (0..<c.numLayers).map { HunyuanVideoDualStreamBlock(w["transformer_blocks"][$0], configuration: c) }
        singleBlocks = (0..<c.numSingleLayers).map {
            HunyuanVideoSingleStreamBlock(w["single_transformer_blocks"][$0], configuration: c)
        }
        normOut = AdaLayerNormContinuous(w["norm_out"], dim: d, conditioningDim: d, eps: 1e-6)
        projOut = Linear(w["proj_out"], in: d, out: c.outputWidth)
    }

    // MARK: - Forward parts

    /// Rotary tables, conditioning, patch embedding, token refiner and the joint key mask, after checking
    /// every input against the configuration.
    /// - Throws: `TensorError` naming the argument at fault.
    public func prepare(_ input: HunyuanVideoInput) throws(TensorError) -> HunyuanVideoState {
        let v = try validate(input)
        let c = configuration
        let (b, l) = (v.batch, v.textTokens)
        let (f, h, w) = (v.grid.f / c.patchSizeT, v.grid.h / c.patchSize, v.grid.w / c.patchSize)
        let s = f * h * w
        try memoryBudget.check("HunyuanVideo forward of batch \(b), \(s) video + \(l) text tokens",
                               bytes: Double(c.activationBytesEstimate(batch: b, imageTokens: s, textTokens: l)))
        let cond = try timeTextEmbed(timesteps: v.timesteps, guidance: v.guidance, pooled: input.pooledProjections)
        let image = try xEmbedder(input.hiddenStates)
        let text = try contextEmbedder(input.encoderHiddenStates, timesteps: v.timesteps, mask: input.encoderAttentionMask)
        let context = HunyuanVideoBlockContext(
            temb: cond.temb, tokenReplaceEmb: cond.tokenReplace, firstFrameTokens: h * w,
            rope: try rotary.jointTables(frames: f, height: h, width: w, textTokens: l),
            keyMask: try Self.jointKeyMask(validText: v.validText, imageTokens: s, textTokens: l, batch: b))
        return HunyuanVideoState(image: image, text: text, context: context, grid: v.grid)
    }

    /// TeaCache's modulated input: `transformer_blocks[0].norm1(h_in, emb=temb)[0]` —
    /// `LN(h)·(1 + scale_msa) + shift_msa`, `[B, S, D]` (token-replace models modulate the first frame's
    /// tokens with their own parameters, as that block's norm does). Requires at least one dual-stream block.
    public func modulatedInput(_ state: HunyuanVideoState) throws(TensorError) -> Tensor {
        guard let first = doubleBlocks.first else {
            throw .invalidArgument(operation: "HunyuanVideo modulated input",
                                   reason: "the configuration has no dual-stream block (num_layers = 0)")
        }
        return try first.modulatedImage(state.image, state.context)
    }

    /// Runs every dual-stream block, then every single-stream block on the joint `[image; text]`
    /// sequence, updating `state.image` and `state.text`.
    ///
    /// The joint sequence is split back into the two streams once at the end, which gives the same values
    /// as diffusers' per-block concatenate/split.
    public func runBlocks(_ state: inout HunyuanVideoState) throws(TensorError) {
        try runBlocks(0..<blockCount, &state)
    }

    /// The number of blocks, dual-stream then single-stream, as one index range.
    var blockCount: Int { doubleBlocks.count + singleBlocks.count }

    /// Runs block `index` (dual-stream blocks first, then single-stream ones) on the state in place. A
    /// single-stream block joins the two streams, runs, and splits them again (as diffusers does per
    /// block), so `state.image` holds the stream after every block.
    /// - Throws: when `index` is outside `0 ..< num_layers + num_single_layers`.
    public func runBlock(_ index: Int, _ state: inout HunyuanVideoState) throws(TensorError) {
        guard index >= 0, index < blockCount else {
            throw .invalidArgument(operation: "HunyuanVideo block", reason: "block index \(index) is not in 0..<\(blockCount)")
        }
        try runBlocks(index..<(index + 1), &state)
    }

    /// The blocks `range` of the one index range (dual-stream first): the dual-stream blocks on the two
    /// streams, then the single-stream blocks on the joint sequence, joined before the first and split
    /// after the last of them.
    private func runBlocks(_ range: Range<Int>, _ state: inout HunyuanVideoState) throws(TensorError) {
        for i in range.clamped(to: doubleBlocks.indices) {
            try doubleBlocks[i](image: &state.image, text: &state.text, context: state.context)
        }
        let single = range.clamped(to: doubleBlocks.count..<blockCount)
        guard !single.isEmpty else { return }
        let s = state.image.shape[1]
        var joint = try Tensor.concatenate([state.image, state.text], axis: 1)
        for i in single { try singleBlocks[i - doubleBlocks.count](&joint, context: state.context) }
        let parts = try joint.split(sizes: [s, joint.shape[1] - s], axis: 1)
        state.image = parts[0]
        state.text = parts[1]
    }

    /// The full forward (`model(**inputs, return_dict=False)[0]`).
    public func callAsFunction(_ input: HunyuanVideoInput) throws(TensorError) -> Tensor {
        var state = try prepare(input)
        try runBlocks(&state)
        return try outputHead(state)
    }

    // MARK: - Masks and validation

    /// The blocks' key mask `[B, S + L]`: key j is attended when `j < S + validText[b]` (diffusers builds
    /// it from the mask's sum, so trailing padding is assumed); nil when every key is attended.
    static func jointKeyMask(validText: [Int], imageTokens s: Int, textTokens l: Int, batch b: Int) throws(TensorError) -> Tensor? {
        guard validText.contains(where: { $0 < l }) else { return nil }
        var m = [Float](repeating: 0, count: b * (s + l))
        for (bi, valid) in validText.enumerated() {
            for j in 0..<(s + valid) { m[bi * (s + l) + j] = 1 }
        }
        return try Tensor(shape: [b, s + l], scalars: m)
    }

    /// The checked sizes and per-sample values of one input.
    private struct CheckedInput {
        var batch: Int
        var textTokens: Int
        var grid: (f: Int, h: Int, w: Int)
        var timesteps: [Float]
        var guidance: [Float]?
        var validText: [Int]
    }

    /// Checks every argument against the configuration, before anything large is allocated.
    private func validate(_ x: HunyuanVideoInput) throws(TensorError) -> CheckedInput {
        let c = configuration
        func fail(_ reason: String) -> TensorError { .invalidArgument(operation: "HunyuanVideo forward", reason: reason) }
        let hs = x.hiddenStates.shape
        guard hs.count == 5, hs[1] == c.inChannels, hs[0] > 0 else {
            throw fail("hidden_states must be [B, in_channels = \(c.inChannels), F, H, W] with B > 0, got \(hs)")
        }
        let (b, f, h, w) = (hs[0], hs[2], hs[3], hs[4])
        guard f > 0, h > 0, w > 0, f % c.patchSizeT == 0, h % c.patchSize == 0, w % c.patchSize == 0 else {
            throw fail("the latent grid \(f)×\(h)×\(w) must be non-empty and divisible by (patch_size_t, patch_size, patch_size) "
                       + "= (\(c.patchSizeT), \(c.patchSize), \(c.patchSize))")
        }
        let e = x.encoderHiddenStates.shape
        guard e.count == 3, e[0] == b, e[2] == c.textEmbedDim, e[1] > 0 else {
            throw fail("encoder_hidden_states must be [\(b), L, text_embed_dim = \(c.textEmbedDim)] with L > 0, got \(e)")
        }
        let l = e[1]
        guard x.encoderAttentionMask.shape == [b, l] else {
            throw fail("encoder_attention_mask must be [\(b), \(l)] (one entry per text token), got \(x.encoderAttentionMask.shape)")
        }
        guard x.pooledProjections.shape == [b, c.pooledProjectionDim] else {
            throw fail("pooled_projections must be [\(b), \(c.pooledProjectionDim)], got \(x.pooledProjections.shape)")
        }
        func perSample(_ t: Tensor, _ name: String) throws(TensorError) -> [Float] {
            guard t.rank <= 1, t.count == 1 || t.count == b else {
                throw fail("\(name) must be [\(b)] or [1], got \(t.shape)")
            }
            let v = t.scalars
            return v.count == b ? v : Array(repeating: v[0], count: b)
        }
        let timesteps = try perSample(x.timestep, "timestep")
        var guidance: [Float]? = nil
        if c.guidanceEmbeds {
            guard let g = x.guidance else {
                throw fail("this model embeds guidance (guidance_embeds = true): pass guidance (guidance_scale · 1000)")
            }
            guidance = try perSample(g, "guidance")
        }
        let named: [(String, Tensor?)] = [
            ("hidden_states", x.hiddenStates), ("encoder_hidden_states", x.encoderHiddenStates),
            ("pooled_projections", x.pooledProjections), ("timestep", x.timestep),
            ("guidance", c.guidanceEmbeds ? x.guidance : nil)]
        for case let (name, t?) in named where !t.isFinite {
            throw fail("\(name) contains NaN or infinity")
        }
        let mask = x.encoderAttentionMask.scalars
        guard mask.allSatisfy({ $0 == 0 || $0 == 1 }) else {
            throw fail("encoder_attention_mask must hold only 0 (padding) and 1 (valid token)")
        }
        var valid = [Int]()
        for bi in 0..<b {
            let n = mask[(bi * l)..<((bi + 1) * l)].reduce(0) { $0 + Int($1) }
            guard n > 0 else {
                throw fail("encoder_attention_mask of sample \(bi) has no valid token (diffusers would divide by zero when pooling)")
            }
            valid.append(n)
        }
        return CheckedInput(batch: b, textTokens: l, grid: (f, h, w), timesteps: timesteps, guidance: guidance, validText: valid)
    }
}

// MARK: - Embeddings

/// The 256-channel sinusoidal features diffusers' `Timesteps(256, flip_sin_to_cos=True,
/// downscale_freq_shift=0)` gives HunyuanVideo's timestep and guidance values (cos first, no scaling).
private func hunyuanVideoSinusoid(_ values: [Float]) throws(TensorError) -> Tensor {
    try sinusoidalTimestepEmbedding(values, dim: HunyuanVideoConfiguration.timestepChannels, flipSinToCos: true,
                                    downscaleFreqShift: 0)
}

/// diffusers' `HunyuanVideoTokenRefiner` (the model's `context_embedder`): the text tokens are pooled by
/// their mask, embedded with the timestep into their own conditioning
/// (`CombinedTimestepTextProjEmbeddings`), projected to the model width (`proj_in`) and refined by
/// self-attention blocks that honour the mask.
struct HunyuanVideoTokenRefiner: Sendable {
    /// `time_text_embed.timestep_embedder`.
    let timestepEmbedder: TimestepMLP
    /// `time_text_embed.text_embedder` (PixArt-α projection with SiLU) of the pooled text.
    let textEmbedder: PixArtAlphaTextProjection
    /// `proj_in`.
    let projIn: Linear
    /// `token_refiner.refiner_blocks`.
    private let blocks: [HunyuanVideoRefinerBlock]

    /// Takes the `context_embedder` scope.
    init(_ w: WeightScope, configuration c: HunyuanVideoConfiguration) {
        let d = c.innerDim, ch = HunyuanVideoConfiguration.timestepChannels
        timestepEmbedder = TimestepMLP(w["time_text_embed"]["timestep_embedder"], in: ch, hidden: d, out: d)
        textEmbedder = PixArtAlphaTextProjection(w["time_text_embed"]["text_embedder"], in: c.textEmbedDim, hidden: d, activation: .silu)
        projIn = Linear(w["proj_in"], in: c.textEmbedDim, out: d)
        blocks = (0..<c.numRefinerLayers).map { HunyuanVideoRefinerBlock(w["token_refiner"]["refiner_blocks"][$0], configuration: c) }
    }

    /// The refined text tokens `[B, L, D]`.
    ///
    /// - Parameters:
    ///   - text: `encoder_hidden_states` `[B, L, text_embed_dim]`.
    ///   - timesteps: one value per sample.
    ///   - mask: `encoder_attention_mask` `[B, L]` of 0/1 with at least one 1 per sample (checked by the caller).
    func callAsFunction(_ text: Tensor, timesteps: [Float], mask: Tensor) throws(TensorError) -> Tensor {
        let temb = try timestepEmbedder(hunyuanVideoSinusoid(timesteps)) + textEmbedder(Self.maskedMean(text, mask: mask))
        var h = try projIn(text)
        guard !blocks.isEmpty else { return h }
        let attnMask = try SelfAttentionMask(mask)
        for block in blocks { h = try block(h, temb: temb, mask: attnMask) }
        return h
    }

    /// `Σₗ mask·x / Σₗ mask` over the tokens `[B, L, E]` → `[B, E]`, summed in float32 in token order as
    /// torch's `sum(dim=1)` does for these sizes.
    static func maskedMean(_ x: Tensor, mask: Tensor) throws(TensorError) -> Tensor {
        let (b, l, e) = (x.shape[0], x.shape[1], x.shape[2])
        let m = mask.scalars, v = x.scalars
        var out = [Float](repeating: 0, count: b * e)
        for bi in 0..<b {
            var count: Float = 0
            for t in 0..<l { count += m[bi * l + t] }
            for j in 0..<e {
                var s: Float = 0
                for t in 0..<l { s += v[(bi * l + t) * e + j] * m[bi * l + t] }
                out[bi * e + j] = s / count
            }
        }
        return try Tensor(shape: [b, e], scalars: out)
    }

    /// The refiner's self-attention rule, after diffusers: query i may attend key j when both tokens are
    /// valid, and every query may attend key 0 (diffusers sets that column to true, so a padded query still
    /// has one key).
    ///
    /// Rather than the `[B, 1, L, L]` boolean mask diffusers builds, this is a key mask `[B, L]` (valid keys
    /// and key 0) for the valid queries plus the list of padded queries per sample: a padded query's only
    /// key is key 0, so its softmax weight is exactly 1 and its output is exactly `v₀`.
    struct SelfAttentionMask: Sendable {
        /// `[B, L]`: 1 for a valid key or key 0, else 0.
        let keys: Tensor
        /// The padded query positions of each sample.
        let paddedQueries: [[Int]]

        /// The rule for `encoder_attention_mask` `[B, L]` (nonzero = valid).
        init(_ mask: Tensor) throws(TensorError) {
            let (b, l) = (mask.shape[0], mask.shape[1])
            let m = mask.scalars
            var k = [Float](repeating: 0, count: b * l)
            var padded = [[Int]](repeating: [], count: b)
            for bi in 0..<b {
                for j in 0..<l {
                    let valid = m[bi * l + j] != 0
                    k[bi * l + j] = valid || j == 0 ? 1 : 0
                    if !valid { padded[bi].append(j) }
                }
            }
            keys = try Tensor(shape: [b, l], scalars: k)
            paddedQueries = padded
        }

        /// Attention of `q`, `k`, `v` `[B, L, H·Dh]` under this rule.
        func attend(_ q: Tensor, _ k: Tensor, _ v: Tensor, heads: Int, precision: WeightPrecision) throws(TensorError) -> Tensor {
            var out = try attention(query: q, key: k, value: v, heads: heads, mask: .keys(keys), precision: precision)
            guard paddedQueries.contains(where: { !$0.isEmpty }) else { return out }
            let (l, width) = (v.shape[1], v.shape[2])
            v.withUnsafeBufferPointer { pv in
                out.withUnsafeMutableBufferPointer { po in
                    for (bi, rows) in paddedQueries.enumerated() {
                        let v0 = pv.baseAddress! + bi * l * width
                        for i in rows { (po.baseAddress! + (bi * l + i) * width).update(from: v0, count: width) }
                    }
                }
            }
            return out
        }
    }
}

/// One block of diffusers' `HunyuanVideoIndividualTokenRefiner` (`HunyuanVideoIndividualTokenRefinerBlock`):
///
///     (gate_msa, gate_mlp) = chunk₂(norm_out.linear(silu(temb)))
///     h = h + attn(norm1(h), mask) · gate_msa
///     h = h + ff(norm2(h)) · gate_mlp
///
/// `norm1`/`norm2` are affine LayerNorms (ε = 1e-6), `attn` a plain self-attention with biased
/// projections and no q/k norm, `ff` a `"linear-silu"` feed-forward of width `4·D`.
private struct HunyuanVideoRefinerBlock: Sendable {
    /// `norm1`, `norm2`.
    let norm1: AffineLayerNorm
    let norm2: AffineLayerNorm
    /// `attn.to_q`, `attn.to_k`, `attn.to_v` as one product.
    let qkv: FusedLinear
    /// `attn.to_out.0`.
    let toOut: Linear
    /// `ff`.
    let ff: FeedForward
    /// `norm_out.linear`: `temb` → the two gates.
    let gates: Linear
    /// Attention heads.
    let heads: Int

    /// Takes one block's scope (`context_embedder.token_refiner.refiner_blocks.<i>`).
    init(_ w: WeightScope, configuration c: HunyuanVideoConfiguration) {
        let d = c.innerDim
        norm1 = AffineLayerNorm(w["norm1"], dim: d, eps: 1e-6)
        norm2 = AffineLayerNorm(w["norm2"], dim: d, eps: 1e-6)
        qkv = FusedLinear([w["attn"]["to_q"], w["attn"]["to_k"], w["attn"]["to_v"]], in: d, out: [d, d, d])
        toOut = Linear(w["attn"]["to_out.0"], in: d, out: d)
        ff = FeedForward(w["ff"], dim: d, inner: c.refinerMLPHiddenDim, activation: .silu)
        gates = Linear(w["norm_out"]["linear"], in: d, out: 2 * d)
        heads = c.numAttentionHeads
    }

    /// Refines `h` `[B, L, D]` with the refiner's conditioning `temb` `[B, D]` and the self-attention rule
    /// of the text mask.
    func callAsFunction(
        _ h: Tensor, temb: Tensor, mask: HunyuanVideoTokenRefiner.SelfAttentionMask
    ) throws(TensorError) -> Tensor {
        let p = try qkv(norm1(h))
        let a = try toOut(mask.attend(p[0], p[1], p[2], heads: heads, precision: toOut.weight.precision))
        let g = try modulationChunks(gates, temb, count: 2)
        let h1 = try addingGated(h, a, gate: g[0])
        return try addingGated(h1, ff(norm2(h1)), gate: g[1])
    }
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

// MARK: - Transformer blocks

/// The adaLN modulation parameters of one block for one call: each `[B, D]` (per sample) or, in
/// token-replace models, `[B, T, D]` (per token: the first-frame tokens take the parameters of the
/// timestep-0 conditioning, the other tokens those of `temb`).
struct HunyuanVideoModulation {
    /// The parameters in the order of the projection's rows (shift, scale, gate, …).
    let parameters: [Tensor]

    /// `chunk(linear(silu(temb)))`; for a token-replace context each parameter laid out per token over
    /// `tokens` tokens, the first `firstFrameTokens` of which take the chunks of the first frame's conditioning.
    init(_ linear: Linear, count: Int, context c: HunyuanVideoBlockContext, tokens: Int) throws(TensorError) {
        let regular = try modulationChunks(linear, c.temb, count: count)
        guard let tr = c.tokenReplaceEmb else { parameters = regular; return }
        let replaced = try modulationChunks(linear, tr, count: count)
        parameters = try zip(replaced, regular).map { (r, p) throws(TensorError) in
            try Self.perToken(first: r, rest: p, firstTokens: c.firstFrameTokens, tokens: tokens)
        }
    }

    /// `[B, T, D]` whose token rows `< firstTokens` are `first[b]` and the others `rest[b]` (both `[B, D]`).
    static func perToken(first: Tensor, rest: Tensor, firstTokens n: Int, tokens t: Int) throws(TensorError) -> Tensor {
        let (b, d) = (rest.shape[0], rest.shape[1])
        return first.withUnsafeBufferPointer { pf in
            rest.withUnsafeBufferPointer { pr in
                Tensor(uninitializedShape: [b, t, d]) { out in
                    for bi in 0..<b {
                        for ti in 0..<t {
                            let src = (ti < n ? pf : pr).baseAddress! + bi * d
                            (out.baseAddress! + (bi * t + ti) * d).update(from: src, count: d)
                        }
                    }
                }
            }
        }
    }

    /// `LN(x)·(1 + scale) + shift` with parameters `scale`, `shift` of this set (LayerNorm without affine, ε 1e-6).
    func modulatedNorm(_ x: Tensor, shift: Int, scale: Int) throws(TensorError) -> Tensor {
        try layerNormModulated(x, eps: 1e-6, scale: parameters[scale], shift: parameters[shift])
    }

    /// `residual += x · gate` with the gate `gate` of this set (diffusers' order: multiply, then add).
    func addGated(_ residual: inout Tensor, _ x: Tensor, gate: Int) throws(TensorError) {
        let g = parameters[gate]
        try Tensors.addGated(&residual, x, gate: g.rank == 3 ? .perToken(g) : .perSample(g))
    }
}

/// diffusers' `HunyuanVideoTransformerBlock` (and, with a token-replace context,
/// `HunyuanVideoTokenReplaceTransformerBlock`): a dual-stream block.
///
///     (shift, scale, gate, shift₂, scale₂, gate₂) = chunk₆(norm1.linear(silu(temb)))   (likewise norm1_context)
///     attn_img, attn_txt = joint attention of (LN(img)·(1+scale)+shift, LN(txt)·(1+c_scale)+c_shift)
///     img = img + attn_img·gate;   img = img + gate₂·ff(LN(img)·(1+scale₂)+shift₂)        (txt alike)
///
/// The joint sequence is image tokens first, then text; only the image queries/keys are rotated, and keys
/// beyond the valid text tokens are masked.
private struct HunyuanVideoDualStreamBlock: Sendable {
    /// `norm1` (image) and `norm1_context` (text): their `linear` projections `[6D, D]`.
    let norm1: AdaLayerNormZero
    let norm1Context: AdaLayerNormZero
    /// `attn.to_q/k/v` with `norm_q/k`, and `attn.add_q/k/v_proj` with `norm_added_q/k`.
    let image: HunyuanVideoQKV
    let text: HunyuanVideoQKV
    /// `attn.to_out.0` and `attn.to_add_out`.
    let toOut: Linear
    let toAddOut: Linear
    /// `ff` and `ff_context` (tanh-GELU, `int(D·mlp_ratio)` wide).
    let ff: FeedForward
    let ffContext: FeedForward
    /// Attention heads.
    let heads: Int

    /// Takes one block's scope (`transformer_blocks.<i>`).
    init(_ w: WeightScope, configuration c: HunyuanVideoConfiguration) {
        let d = c.innerDim
        norm1 = AdaLayerNormZero(w["norm1"], dim: d)
        norm1Context = AdaLayerNormZero(w["norm1_context"], dim: d)
        image = HunyuanVideoQKV(w["attn"], names: ("to_q", "to_k", "to_v", "norm_q", "norm_k"), configuration: c)
        text = HunyuanVideoQKV(w["attn"], names: ("add_q_proj", "add_k_proj", "add_v_proj", "norm_added_q", "norm_added_k"),
                               configuration: c)
        toOut = Linear(w["attn"]["to_out.0"], in: d, out: d)
        toAddOut = Linear(w["attn"]["to_add_out"], in: d, out: d)
        ff = FeedForward(w["ff"], dim: d, inner: c.mlpHiddenDim, activation: .gelu(.tanh))
        ffContext = FeedForward(w["ff_context"], dim: d, inner: c.mlpHiddenDim, activation: .gelu(.tanh))
        heads = c.numAttentionHeads
    }

    /// The image stream's modulation (token-replace aware) for `tokens` image tokens.
    func imageModulation(_ c: HunyuanVideoBlockContext, tokens: Int) throws(TensorError) -> HunyuanVideoModulation {
        try HunyuanVideoModulation(norm1.linear, count: 6, context: c, tokens: tokens)
    }

    /// `norm1(image, temb)[0]`: TeaCache's modulated input when this is the first block.
    func modulatedImage(_ image: Tensor, _ c: HunyuanVideoBlockContext) throws(TensorError) -> Tensor {
        try imageModulation(c, tokens: image.shape[1]).modulatedNorm(image, shift: 0, scale: 1)
    }

    /// Updates `image` `[B, S, D]` and `text` `[B, L, D]`.
    func callAsFunction(image x: inout Tensor, text y: inout Tensor, context c: HunyuanVideoBlockContext) throws(TensorError) {
        let s = x.shape[1]
        let mi = try imageModulation(c, tokens: s)
        var textContext = c
        textContext.tokenReplaceEmb = nil  // the text stream always uses temb
        let mt = try HunyuanVideoModulation(norm1Context.linear, count: 6, context: textContext, tokens: y.shape[1])
        let pi = try image.project(mi.modulatedNorm(x, shift: 0, scale: 1))
        let pt = try text.project(mt.modulatedNorm(y, shift: 0, scale: 1))
        let o = try hunyuanVideoJointAttention(
            [image.source(pi, rows: 0..<s), text.source(pt, rows: 0..<y.shape[1])],
            context: c, heads: heads, precision: norm1Context.linear.weight.precision)
        let parts = try o.split(sizes: [s, o.shape[1] - s], axis: 1)
        try mi.addGated(&x, toOut(parts[0]), gate: 2)
        try mt.addGated(&y, toAddOut(parts[1]), gate: 2)
        try mi.addGated(&x, ff(mi.modulatedNorm(x, shift: 3, scale: 4)), gate: 5)
        try mt.addGated(&y, ffContext(mt.modulatedNorm(y, shift: 3, scale: 4)), gate: 5)
    }
}

/// diffusers' `HunyuanVideoSingleTransformerBlock` (and `HunyuanVideoTokenReplaceSingleTransformerBlock`)
/// on the joint sequence `[image; text]`:
///
///     (shift, scale, gate) = chunk₃(norm.linear(silu(temb)));  x̂ = LN(x)·(1+scale)+shift
///     x = x + gate · proj_out([attention(x̂), gelu_tanh(proj_mlp(x̂))])
///
/// The tanh-GELU is applied in place on `proj_mlp`'s output, and `proj_out` is applied to the two halves
/// without building their concatenation.
private struct HunyuanVideoSingleStreamBlock: Sendable {
    /// `norm.linear` `[3D, D]`.
    let norm: AdaLayerNormZeroSingle
    /// `attn.to_q/k/v` and `norm_q/k`.
    let attention: HunyuanVideoQKV
    /// `proj_mlp` `[mlp, D]`.
    let projMLP: Linear
    /// `proj_out` `[D, D + mlp]`.
    let projOut: Linear
    /// Attention heads.
    let heads: Int

    /// Takes one block's scope (`single_transformer_blocks.<i>`).
    init(_ w: WeightScope, configuration c: HunyuanVideoConfiguration) {
        let d = c.innerDim
        norm = AdaLayerNormZeroSingle(w["norm"], dim: d)
        attention = HunyuanVideoQKV(w["attn"], names: ("to_q", "to_k", "to_v", "norm_q", "norm_k"), configuration: c)
        projMLP = Linear(w["proj_mlp"], in: d, out: c.mlpHiddenDim)
        projOut = Linear(w["proj_out"], in: d + c.mlpHiddenDim, out: d)
        heads = c.numAttentionHeads
    }

    /// Updates the joint sequence `x` `[B, S + L, D]` (image tokens first).
    func callAsFunction(_ x: inout Tensor, context c: HunyuanVideoBlockContext) throws(TensorError) {
        let m = try HunyuanVideoModulation(norm.linear, count: 3, context: c, tokens: x.shape[1])
        let n = try m.modulatedNorm(x, shift: 0, scale: 1)
        let p = try attention.project(n)
        let mlp = try linear(n, weight: projMLP.weight, bias: projMLP.bias, activation: .gelu(.tanh))
        let a = try hunyuanVideoJointAttention([attention.source(p, rows: 0..<x.shape[1])], context: c, heads: heads,
                                               precision: projOut.weight.precision)
        try m.addGated(&x, linear(concatenating: [a, mlp], weight: projOut.weight, bias: projOut.bias), gate: 2)
    }
}

/// One head-wise query or key normalisation of diffusers' `Attention` (`norm_q`, `norm_k`, `norm_added_q`,
/// `norm_added_k`) for the configuration's `qk_norm`, applied to each head's `attention_head_dim` channels
/// with ε = 1e-6.
struct HunyuanVideoHeadNorm: Sendable {
    /// The normalisation.
    let kind: HunyuanVideoQKNorm
    /// The learned scale (`rms_norm`, `layer_norm`).
    let weight: Tensor?
    /// The learned bias (`layer_norm`).
    let bias: Tensor?
    /// Channels per head.
    let headDim: Int
    /// The epsilon diffusers passes to the blocks' attention.
    static let eps: Float = 1e-6

    /// Takes `weight` (and for `layer_norm` `bias`) `[head_dim]` of the scope when the kind has parameters.
    init(_ w: WeightScope, kind: HunyuanVideoQKNorm, headDim: Int) {
        self.kind = kind
        self.headDim = headDim
        weight = kind == .rms || kind == .layer ? w.tensor("weight", shape: [headDim]) : nil
        bias = kind == .layer ? w.tensor("bias", shape: [headDim]) : nil
    }
}

/// The query/key/value projections of one token stream, run as one ``FusedLinear``, and the head norms
/// of its queries and keys (applied while the joint sequence is assembled).
private struct HunyuanVideoQKV: Sendable {
    /// q, k, v stacked.
    let projection: FusedLinear
    /// The query and key norms.
    let normQ: HunyuanVideoHeadNorm
    let normK: HunyuanVideoHeadNorm

    /// Takes the projections `names.q`, `names.k`, `names.v` (`[D, D]` with bias) and the norms of the scope.
    init(_ w: WeightScope, names: (q: String, k: String, v: String, normQ: String, normK: String),
         configuration c: HunyuanVideoConfiguration) {
        let d = c.innerDim
        let kind = c.queryKeyNorm ?? .identity
        projection = FusedLinear([names.q, names.k, names.v].map { w[$0] }, in: d, out: [d, d, d])
        normQ = HunyuanVideoHeadNorm(w[names.normQ], kind: kind, headDim: c.attentionHeadDim)
        normK = HunyuanVideoHeadNorm(w[names.normK], kind: kind, headDim: c.attentionHeadDim)
    }
    /// The stacked projection `[B, n, 3D]` (q | k | v columns) of `x` `[B, n, D]`.
    func project(_ x: Tensor) throws(TensorError) -> Tensor { try projection.stacked(x) }

    /// This stream's rows `rows` as a source of the joint q/k/v.
    func source(_ projected: Tensor, rows: Range<Int>) -> HunyuanVideoQKVSource {
        HunyuanVideoQKVSource(projection: projected, rows: rows, normQ: normQ, normK: normK)
    }
}

/// Scaled-dot-product attention over the joint (image, text) sequence: q and k rotated by the joint
/// tables (whose text rows leave the text tokens unchanged, as diffusers rotates only the image tokens),
/// keys masked by the text mask.
private func hunyuanVideoJointAttention(
    _ sources: [HunyuanVideoQKVSource], context c: HunyuanVideoBlockContext, heads: Int, precision: WeightPrecision
) throws(TensorError) -> Tensor {
    let (q, k, v) = try HunyuanVideoKernels.jointQKV(sources, heads: heads, rope: c.rope)
    return try attention(query: q, key: k, value: v, heads: heads, mask: c.keyMask.map { .keys($0) }, precision: precision)
}

// MARK: - Output head

extension HunyuanVideoTransformer {
    /// `proj_out(norm_out(image, temb))` unpatchified to `[B, out_channels, F, H, W]` (each token holds
    /// `(c, pt, ph, pw)`, channel outermost, as diffusers' reshape reads it).
    public func outputHead(_ state: HunyuanVideoState) throws(TensorError) -> Tensor {
        let tokens = try projOut(normOut(state.image, conditioning: state.context.temb))
        return try Patches.unpatchify3D(tokens, grid: state.grid, patch: configuration.patch, order: .channelsFirst)
    }
}
