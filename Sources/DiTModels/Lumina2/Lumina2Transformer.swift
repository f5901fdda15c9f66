import Tensors

/// The arguments of one `Lumina2Transformer2DModel.forward` call.
public struct Lumina2Input: LatentTimestepInput, Sendable {
    /// The latent `[B, in_channels, H, W]` (H and W multiples of `patch_size`).
    public var hiddenStates: Tensor
    /// The timestep per sample `[B]` (or `[1]`, broadcast), Lumina's `t = 1 − sigma` (0 = noise).
    public var timestep: Tensor
    /// Caption features `[B, L, cap_feat_dim]`.
    public var encoderHiddenStates: Tensor
    /// `encoder_attention_mask` `[B, L]` of zeros and ones. As in diffusers, a sample's caption length
    /// is its number of ones and its first that many tokens enter the joint sequence (a mask is
    /// normally ones followed by padding).
    public var encoderAttentionMask: Tensor

    /// Bundles the arguments.
    public init(hiddenStates: Tensor, timestep: Tensor, encoderHiddenStates: Tensor, encoderAttentionMask: Tensor) {
        self.hiddenStates = hiddenStates
        self.timestep = timestep
        self.encoderHiddenStates = encoderHiddenStates
        self.encoderAttentionMask = encoderAttentionMask
    }
}

/// The joint sequence entering the main layers and everything they read, computed once per call by
/// ``Lumina2Transformer/prepare(_:)`` (embeddings and both refiners).
public struct Lumina2State: Sendable {
    /// The joint sequence `[B, P, D]`: each sample's refined caption tokens, then its refined image
    /// tokens, zero-padded to the longest `P`. After ``Lumina2Transformer/runBlocks(_:)``, the layers' output.
    public var joint: Tensor
    /// The conditioning `temb` `[B, min(D, 1024)]`.
    public var temb: Tensor
    /// Rotary tables over the joint sequence.
    var rope: PerSampleRotary
    /// The key mask `[B, P]` of the joint attention (1 up to each sample's length), nil when no sample
    /// is padded (diffusers passes a mask exactly when the lengths differ).
    public var keyMask: Tensor?
    /// Caption tokens per sample (its mask's ones).
    public var captionLengths: [Int]
    /// The latent height and width.
    public var grid: (h: Int, w: Int)

    /// The padded joint length `P` = `max_seq_len` (TeaCache4Lumina2's cache key).
    public var maxSequenceLength: Int { joint.shape[1] }
}

/// diffusers 0.42.1 `Lumina2Transformer2DModel` (Lumina-Image-2.0) on the CPU in float32.
///
/// The forward is split the way TeaCache needs it: ``prepare(_:)`` runs everything before the main
/// layers — the time and caption embeddings, the multi-axis rotary tables, `x_embedder`, the context
/// refiner (caption tokens, caption key mask) and the noise refiner (image tokens, modulated), and
/// builds the padded joint sequence; ``modulatedInput(_:)`` is `layers[0].norm1(joint, temb)[0]`;
/// ``runBlocks(_:)`` runs `layers`; ``outputHead(_:)`` takes each sample's image part, applies
/// `norm_out` and unpatchifies. ``callAsFunction(_:)`` chains them.
///
/// Numerics: float32 throughout. diffusers keeps the rotary tables in complex128 and rotates in double
/// before rounding back; here the tables are computed in Double, rounded to float32, and applied in
/// float32 (differences of order 1e-7 relative).
///
/// Build one with ``Lumina2Family``'s loaders.
public struct Lumina2Transformer: Sendable {
    /// The validated configuration.
    public let configuration: Lumina2Configuration
    /// `x_embedder`: `[D, p²·C]` over `(ph, pw, c)`-ordered patches.
    private let xEmbedder: Linear
    /// `time_caption_embed`.
    private let timeCaptionEmbed: Lumina2TimeCaptionEmbedding
    /// `noise_refiner`: modulated blocks over the image tokens.
    private let noiseRefiner: [Lumina2Block]
    /// `context_refiner`: blocks without modulation over the caption tokens.
    private let contextRefiner: [Lumina2Block]
    /// `layers`: the joint blocks.
    private let layers: [Lumina2Block]
    /// `norm_out`.
    let normOut: LuminaLayerNormContinuous
    /// The memory a forward may plan to use: ``prepare(_:)`` estimates the activations of the input shapes
    /// (``Lumina2Configuration/activationBytesEstimate(batch:imageTokens:textTokens:)``) and refuses inputs
    /// beyond it with `TensorError.memoryBudgetExceeded`.
    public var memoryBudget = MemoryBudget.machineDefault
    /// How TeaCache keys its cache entries (`DiffusionTransformer/cacheKey(for:branch:)`); changes nothing else.
    public var teaCacheKeying: Lumina2TeaCacheKeying = .branch

    /// Builds the model, taking every parameter from `weights` (called by ``Lumina2Family``'s loading
    /// functions, which check the weights afterwards).
    init(configuration c: Lumina2Configuration, weights w: WeightScope) {
        configuration = c
        let d = c.hiddenSize
        xEmbedder = Linear(w["x_embedder"], in: c.patchSize * c.patchSize * c.inChannels, out: d)
        timeCaptionEmbed = Lumina2TimeCaptionEmbedding(w["time_caption_embed"], configuration: c)
        noiseRefiner = (0..<c.numRefinerLayers).map { Lumina2Block(w["noise_refiner"][$0], configuration: c, modulation: true) }
        contextRefiner = (0..<c.numRefinerLayers).map {
            Lumina2Block(w["context_refiner"][$0], configuration: c, modulation: false)
        }
        layers = (0..<c.numLayers).map { Lumina2Block(w["layers"][$0], configuration: c, modulation: true) }
        normOut = LuminaLayerNormContinuous(w["norm_out"], dim: d, conditioningDim: c.conditioningDim,
                                            outDim: c.patchSize * c.patchSize * c.outChannels)
    }

    /// The full forward (`model(**inputs, return_dict=False)[0]`).
    public func callAsFunction(_ input: Lumina2Input) throws(TensorError) -> Tensor {
        var state = try prepare(input)
        try runBlocks(&state)
        return try outputHead(state)
    }

    /// Embeddings, rotary tables, both refiners and the padded joint sequence.
    /// - Throws: `TensorError` naming the argument that is wrong.
    public func prepare(_ input: Lumina2Input) throws(TensorError) -> Lumina2State {
        let c = configuration
        let (b, h, w, l, timesteps) = try validate(input)
        let (rows, cols) = (h / c.patchSize, w / c.patchSize)
        let s = rows * cols
        let mask = input.encoderAttentionMask.scalars
        let captionLengths = (0..<b).map { i in Int(mask[(i * l)..<((i + 1) * l)].reduce(0, +)) }
        let rope = try Lumina2RotaryTables(configuration: c, captionLengths: captionLengths, captionTokens: l,
                                           rows: rows, cols: cols)
        let temb = try timeCaptionEmbed.time(timesteps)
        var caption = try timeCaptionEmbed.caption(input.encoderHiddenStates)
        var image = try xEmbedder(Patches.patchify2D(input.hiddenStates, patch: c.patchSize, order: .channelsLast))
        for block in contextRefiner {
            caption = try block(caption, rope: rope.caption, keyMask: input.encoderAttentionMask, temb: nil)
        }
        for block in noiseRefiner { image = try block(image, rope: rope.image, keyMask: nil, temb: temb) }
        let lengths = captionLengths.map { $0 + s }
        let p = lengths.max() ?? s
        let joint = try Self.joint(caption: caption, image: image, captionLengths: captionLengths, length: p)
        var keyMask: Tensor? = nil
        if lengths.contains(where: { $0 < p }) {
            var m = [Float](repeating: 0, count: b * p)
            for (i, n) in lengths.enumerated() { for j in 0..<n { m[i * p + j] = 1 } }
            keyMask = try Tensor(shape: [b, p], scalars: m)
        }
        return Lumina2State(joint: joint, temb: temb, rope: rope.joint, keyMask: keyMask, captionLengths: captionLengths,
                            grid: (h, w))
    }

    /// `[B, P, D]`: sample i's first `c_i` caption rows, then its image rows, then zeros.
    private static func joint(caption: Tensor, image: Tensor, captionLengths: [Int], length p: Int) throws(TensorError) -> Tensor {
        let (b, l, d) = (caption.shape[0], caption.shape[1], caption.shape[2])
        let s = image.shape[1]
        var out = try Tensor(zeros: [b, p, d])
        caption.withUnsafeBufferPointer { pc in
            image.withUnsafeBufferPointer { pi in
                out.withUnsafeMutableBufferPointer { po in
                    for (i, cl) in captionLengths.enumerated() {
                        let o = po.baseAddress! + i * p * d
                        if cl > 0 { o.update(from: pc.baseAddress! + i * l * d, count: cl * d) }
                        (o + cl * d).update(from: pi.baseAddress! + i * s * d, count: s * d)
                    }
                }
            }
        }
        return out
    }

    /// TeaCache's modulated input: `layers[0].norm1(joint, temb)[0]`, `[B, P, D]`. Requires at least one layer.
    public func modulatedInput(_ state: Lumina2State) throws(TensorError) -> Tensor {
        guard let norm = layers.first?.modulatedNorm else {
            throw .invalidArgument(operation: "Lumina2 modulated input", reason: "the configuration has no layer (num_layers = 0)")
        }
        return try norm(state.joint, emb: state.temb).normalized
    }

    /// Runs `layers` on the joint sequence, in place.
    public func runBlocks(_ state: inout Lumina2State) throws(TensorError) {
        for i in layers.indices { try runBlock(i, &state) }
    }

    /// The number of joint blocks (`num_layers`; the refiners run in ``prepare(_:)``).
    var depth: Int { layers.count }

    /// Runs joint block `index` (`0 ..< num_layers`, in order) on `state.joint`: the one loop body of
    /// ``runBlocks(_:)`` and of First-Block Cache.
    public func runBlock(_ index: Int, _ state: inout Lumina2State) throws(TensorError) {
        guard layers.indices.contains(index) else {
            throw .invalidArgument(operation: "Lumina2 block", reason: "block \(index) is outside 0..<\(layers.count)")
        }
        state.joint = try layers[index](state.joint, rope: state.rope, keyMask: state.keyMask, temb: state.temb)
    }

    /// Each sample's image tokens through `norm_out`, unpatchified: `[B, out_channels, H, W]`.
    ///
    /// (`norm_out` works row by row, so applying it to the image rows only gives diffusers' values.)
    public func outputHead(_ state: Lumina2State) throws(TensorError) -> Tensor {
        let (b, p, d) = (state.joint.shape[0], state.joint.shape[1], state.joint.shape[2])
        let c = configuration
        let s = (state.grid.h / c.patchSize) * (state.grid.w / c.patchSize)
        let image = state.joint.withUnsafeBufferPointer { pj in
            Tensor(uninitializedShape: [b, s, d]) { out in
                for (i, cl) in state.captionLengths.enumerated() {
                    (out.baseAddress! + i * s * d).update(from: pj.baseAddress! + (i * p + cl) * d, count: s * d)
                }
            }
        }
        let y = try normOut(image, conditioning: state.temb)
        return try Patches.unpatchify2D(y, height: state.grid.h, width: state.grid.w, patch: c.patchSize, order: .channelsLast)
    }

    /// Checks every argument; returns the batch, latent size, caption length and the timestep values.
    private func validate(_ x: Lumina2Input) throws(TensorError) -> (Int, Int, Int, Int, [Float]) {
        let c = configuration
        let op = "Lumina2 forward"
        let z = try LuminaInputChecks.latentAndCaption(x.hiddenStates, x.encoderHiddenStates, inChannels: c.inChannels,
                                                       patch: c.patchSize, captionWidth: (c.capFeatDim, "cap_feat_dim"),
                                                       operation: op)
        try memoryBudget.check("\(op) of batch \(z.batch), \(z.imageTokens) image + \(z.textTokens) text tokens",
                               bytes: Double(c.activationBytesEstimate(batch: z.batch, imageTokens: z.imageTokens, textTokens: z.textTokens)))
        try LuminaInputChecks.binaryMask(x.encoderAttentionMask, batch: z.batch, length: z.textTokens,
                                         name: "encoder_attention_mask", operation: op, requireToken: false)
        let t = try LuminaInputChecks.timesteps(x.timestep, batch: z.batch, operation: op)
        return (z.batch, z.height, z.width, z.textTokens, t)
    }
}

// MARK: Embeddings

/// diffusers' `Lumina2CombinedTimestepCaptionEmbedding`: `temb = MLP_t(sin(t))` `[B, min(D, 1024)]`, and
/// every caption token through `caption_embedder` = `Linear(RMSNorm(x))` `[B, L, D]`.
private struct Lumina2TimeCaptionEmbedding: Sendable {
    /// `timestep_embedder`.
    let timestepEmbedder: TimestepMLP
    /// `caption_embedder.0`.
    let captionNorm: RMSNorm
    /// `caption_embedder.1`.
    let captionProjection: Linear

    /// Takes `timestep_embedder` and `caption_embedder` of the scope.
    init(_ weights: WeightScope, configuration c: Lumina2Configuration) {
        let ch = LuminaWidths.timestepChannels, dt = c.conditioningDim
        timestepEmbedder = TimestepMLP(weights["timestep_embedder"], in: ch, hidden: dt, out: dt)
        captionNorm = RMSNorm(weights["caption_embedder.0"], dim: c.capFeatDim, eps: c.normEps)
        captionProjection = Linear(weights["caption_embedder.1"], in: c.capFeatDim, out: c.hiddenSize)
    }

    /// `temb` for one timestep per sample (256-channel sinusoid, cos first, shift 0).
    func time(_ timesteps: [Float]) throws(TensorError) -> Tensor {
        try timestepEmbedder(sinusoidalTimestepEmbedding(
            timesteps, dim: LuminaWidths.timestepChannels, flipSinToCos: true, downscaleFreqShift: 0))
    }

    /// The embedded caption `[B, L, D]`.
    func caption(_ x: Tensor) throws(TensorError) -> Tensor {
        try captionProjection(captionNorm(x))
    }
}

/// The positions and rotary tables of one Lumina2 call (diffusers' `Lumina2RotaryPosEmbed`).
///
/// Sample `i` with `c_i` caption tokens (the number of ones in its mask) and `S = (H/p)(W/p)` image tokens
/// has the joint sequence `[caption tokens 0 ..< c_i, image tokens]` of length `s_i = c_i + S`, padded to
/// `P = max s_i`. Position ids are `(j, 0, 0)` for caption token j, `(c_i, row, col)` for the image tokens
/// and `(0, 0, 0)` for padding; each axis rotates its channel pairs by `pos · θ^(−2k/d)` (θ = 10000,
/// frequencies in Double), pairs interleaved, axes one after the other. The caption refiner's table
/// keeps the first `c_i` rows and is zero beyond (diffusers zero-fills it, so padded caption queries and
/// keys vanish); the image refiner's table is the image part.
struct Lumina2RotaryTables: Sendable {
    /// cos/sin over the padded joint sequence, `[B, P, Dh]` each.
    let joint: PerSampleRotary
    /// cos/sin over the caption tokens, `[B, L, Dh]`.
    let caption: PerSampleRotary
    /// cos/sin over the image tokens, `[B, S, Dh]`.
    let image: PerSampleRotary

    /// The rotary base.
    static let theta: Double = 10000

    /// Tables for `captionLengths` (per sample), a caption of `captionTokens` tokens and a `rows × cols`
    /// patch grid.
    /// - Throws: `invalidArgument` when a position falls outside `axes_lens` (diffusers' tables end there).
    init(configuration c: Lumina2Configuration, captionLengths: [Int], captionTokens l: Int,
                rows: Int, cols: Int) throws(TensorError) {
        let n = c.axesDimRope.count
        let s = rows * cols
        let lengths = captionLengths.map { $0 + s }
        let p = lengths.max() ?? s
        let maxCaption = captionLengths.max() ?? 0
        let limits = [maxCaption + 1, rows, cols]
        for a in 0..<n where limits[a] > c.axesLens[a] {
            let what = ["caption length + 1 (the image tokens' caption position)", "patch rows", "patch columns"][a]
            throw .invalidArgument(operation: "Lumina2 rotary embedding",
                                   reason: "\(what) = \(limits[a]) exceeds axes_lens[\(a)] = \(c.axesLens[a])")
        }
        let b = captionLengths.count
        var positions = [Float](repeating: 0, count: b * p * n)
        for (i, cl) in captionLengths.enumerated() {
            for j in 0..<cl { positions[(i * p + j) * n] = Float(j) }
            for r in 0..<rows {
                for col in 0..<cols {
                    let base = (i * p + cl + r * cols + col) * n
                    let ids = [Float(cl), Float(r), Float(col)]
                    for a in 0..<n { positions[base + a] = ids[a] }
                }
            }
        }
        let t = try RotaryEmbedding.tables(positions: Tensor(shape: [b * p, n], scalars: positions),
                                           axesDims: c.axesDimRope, theta: Self.theta, layout: .interleaved)
        let dh = c.headDim
        let uniform = Set(captionLengths).count <= 1
        joint = PerSampleRotary(cos: try t.cos.reshaped([b, p, dh]), sin: try t.sin.reshaped([b, p, dh]), uniform: uniform)
        /// `[B, length, Dh]`: sample i's joint rows `ranges[i]`, then zeros.
        func pick(_ table: Tensor, _ ranges: [Range<Int>], length: Int) throws(TensorError) -> Tensor {
            let src = table.scalars
            var out = [Float](repeating: 0, count: b * length * dh)
            for (i, r) in ranges.enumerated() {
                for (k, j) in r.enumerated() {
                    for x in 0..<dh { out[(i * length + k) * dh + x] = src[(i * p + j) * dh + x] }
                }
            }
            return try Tensor(shape: [b, length, dh], scalars: out)
        }
        let captionRows = captionLengths.map { 0..<min($0, l) }
        let imageRows = captionLengths.map { $0..<($0 + s) }
        caption = PerSampleRotary(cos: try pick(t.cos, captionRows, length: l), sin: try pick(t.sin, captionRows, length: l),
                                  uniform: uniform)
        image = PerSampleRotary(cos: try pick(t.cos, imageRows, length: s), sin: try pick(t.sin, imageRows, length: s),
                                uniform: uniform)
    }
}

/// Rotary tables that may differ per sample: cos and sin `[B, T, Dh]`.
struct PerSampleRotary: Sendable {
    /// `[B, T, Dh]`.
    var cos: Tensor
    /// `[B, T, Dh]`.
    var sin: Tensor
    /// True when every sample's tables are the same (then sample 0's serve the batch).
    var uniform: Bool

    /// Rotates every head of `x` `[B, T, heads·Dh]` (interleaved pairs) by each sample's tables.
    func apply(_ x: Tensor, heads: Int) throws(TensorError) -> Tensor {
        let (b, t, dh) = (cos.shape[0], cos.shape[1], cos.shape[2])
        guard x.rank == 3, x.shape[0] == b, x.shape[1] == t else {
            throw .shapeMismatch(operation: "Lumina2 rotary", shapes: [x.shape, cos.shape], reason: "tables and tokens disagree")
        }
        if uniform || b == 1 {
            return try RotaryEmbedding.apply(x, cos: cos.slice(axis: 0, 0..<1).reshaped([t, dh]),
                                             sin: sin.slice(axis: 0, 0..<1).reshaped([t, dh]), heads: heads)
        }
        var parts: [Tensor] = []
        for i in 0..<b {
            parts.append(try RotaryEmbedding.apply(x.slice(axis: 0, i..<(i + 1)),
                                                   cos: cos.slice(axis: 0, i..<(i + 1)).reshaped([t, dh]),
                                                   sin: sin.slice(axis: 0, i..<(i + 1)).reshaped([t, dh]), heads: heads))
        }
        return try Tensor.concatenate(parts, axis: 0)
    }

    /// The tables of the samples `indices`.
    func selecting(_ indices: [Int]) throws(TensorError) -> PerSampleRotary {
        PerSampleRotary(cos: try cos.gatheringRows(indices), sin: try sin.gatheringRows(indices), uniform: uniform)
    }
}

// MARK: Blocks

/// diffusers' `Lumina2TransformerBlock`. With modulation (the noise refiner and the joint layers):
///
///     (x̂, g_msa, s_mlp, g_mlp) = norm1(h, temb)                   x̂ = RMSNorm(h)·(1 + s_msa)
///     h = h + tanh(g_msa)·norm2(attn(x̂))
///     h = h + tanh(g_mlp)·ffn_norm2(ff(ffn_norm1(h)·(1 + s_mlp)))
///
/// without (the context refiner): `norm1` is a plain RMSNorm, `h = h + norm2(attn(norm1(h)))`,
/// `h = h + ffn_norm2(ff(ffn_norm1(h)))`.
private struct Lumina2Block: Sendable {
    /// `norm1` with modulation.
    let modulatedNorm: LuminaRMSNormZero?
    /// `norm1` without modulation.
    let plainNorm: RMSNorm?
    /// `attn`.
    let attention: Lumina2Attention
    /// `norm2`: the attention output's RMSNorm.
    let norm2: RMSNorm
    /// `ffn_norm1`: the feed-forward input's RMSNorm.
    let ffnNorm1: RMSNorm
    /// `ffn_norm2`: the feed-forward output's RMSNorm.
    let ffnNorm2: RMSNorm
    /// `feed_forward`.
    let feedForward: LuminaFeedForward

    /// Takes every parameter of one block's scope (`layers.<i>`, `noise_refiner.<i>`, `context_refiner.<i>`).
    init(_ w: WeightScope, configuration c: Lumina2Configuration, modulation: Bool) {
        let d = c.hiddenSize
        modulatedNorm = modulation ? LuminaRMSNormZero(w["norm1"], dim: d, eps: c.normEps) : nil
        plainNorm = modulation ? nil : RMSNorm(w["norm1"], dim: d, eps: c.normEps)
        attention = Lumina2Attention(w["attn"], dim: d, layout: c.heads)
        norm2 = RMSNorm(w["norm2"], dim: d, eps: c.normEps)
        ffnNorm1 = RMSNorm(w["ffn_norm1"], dim: d, eps: c.normEps)
        ffnNorm2 = RMSNorm(w["ffn_norm2"], dim: d, eps: c.normEps)
        feedForward = LuminaFeedForward(w["feed_forward"], dim: d, inner: c.ffnInnerDim)
    }

    /// Runs the block on `h` `[B, T, D]` (`temb` `[B, min(D, 1024)]` is required with modulation).
    func callAsFunction(
        _ h: Tensor, rope: PerSampleRotary, keyMask: Tensor?, temb: Tensor?
    ) throws(TensorError) -> Tensor {
        if let modulatedNorm {
            guard let temb else {
                throw .invalidArgument(operation: "Lumina2 block", reason: "a modulated block needs the conditioning")
            }
            let n = try modulatedNorm(h, emb: temb)
            let a = try attention(n.normalized, rope: rope, keyMask: keyMask)
            var out = try LuminaKernels.addingGatedRMSNorm(h, a, weight: norm2.weight, eps: norm2.eps, gate: n.gateMSA)
            let mlp = try feedForward(LuminaKernels.rmsNormScaled(out, weight: ffnNorm1.weight, eps: ffnNorm1.eps, scale: n.scaleMLP))
            out = try LuminaKernels.addingGatedRMSNorm(out, mlp, weight: ffnNorm2.weight, eps: ffnNorm2.eps, gate: n.gateMLP)
            return out
        }
        guard let plainNorm else { throw .invalidArgument(operation: "Lumina2 block", reason: "the block has no norm1") }
        let a = try attention(plainNorm(h), rope: rope, keyMask: keyMask)
        let out = try LuminaKernels.addingGatedRMSNorm(h, a, weight: norm2.weight, eps: norm2.eps, gate: nil)
        let mlp = try feedForward(ffnNorm1(out))
        return try LuminaKernels.addingGatedRMSNorm(out, mlp, weight: ffnNorm2.weight, eps: ffnNorm2.eps, gate: nil)
    }
}

/// diffusers' `Attention` with `Lumina2AttnProcessor2_0`: bias-free q/k/v projections, RMS
/// norms of every query and key head (`qk_norm="rms_norm"`, learned `[Dh]` scales, ε 1e-5), rotary q and
/// k, grouped-query attention with scale `1/√Dh` and an optional key mask, `to_out.0` without bias.
private struct Lumina2Attention: Sendable {
    /// `to_q`.
    let toQ: Linear
    /// `to_k`.
    let toK: Linear
    /// `to_v`.
    let toV: Linear
    /// `norm_q.weight` `[Dh]`.
    let normQ: Tensor
    /// `norm_k.weight` `[Dh]`.
    let normK: Tensor
    /// `to_out.0`.
    let toOut: Linear
    /// The head layout.
    let layout: LuminaHeads

    /// The epsilon of the query/key norms (fixed in diffusers).
    static let qkEps: Float = 1e-5

    /// Takes `to_q`, `to_k`, `to_v`, `norm_q`, `norm_k`, `to_out.0` of the scope.
    init(_ w: WeightScope, dim: Int, layout l: LuminaHeads) {
        layout = l
        toQ = Linear(w["to_q"], in: dim, out: l.queryWidth, bias: false)
        toK = Linear(w["to_k"], in: dim, out: l.kvWidth, bias: false)
        toV = Linear(w["to_v"], in: dim, out: l.kvWidth, bias: false)
        normQ = w["norm_q"].tensor("weight", shape: [l.headDim])
        normK = w["norm_k"].tensor("weight", shape: [l.headDim])
        toOut = Linear(w["to_out.0"], in: l.queryWidth, out: dim, bias: false)
    }

    /// Self-attention of `x` `[B, T, D]` with per-sample rotary tables over its T tokens and an optional
    /// key mask `[B, T]`.
    func callAsFunction(_ x: Tensor, rope: PerSampleRotary, keyMask: Tensor?) throws(TensorError) -> Tensor {
        let q = try rope.apply(headNorm(toQ(x), normQ, heads: layout.heads), heads: layout.heads)
        let k = try rope.apply(headNorm(toK(x), normK, heads: layout.kvHeads), heads: layout.kvHeads)
        return try toOut(luminaAttention(q: q, k: k, v: toV(x), layout: layout, keyMask: keyMask, scale: nil,
                                          precision: toOut.weight.precision))
    }

    private func headNorm(_ t: Tensor, _ w: Tensor, heads: Int) throws(TensorError) -> Tensor {
        let shape = t.shape
        return try rmsNorm(t.reshaped(Array(shape.dropLast()) + [heads, layout.headDim]), weight: w, eps: Self.qkEps)
            .reshaped(shape)
    }
}
