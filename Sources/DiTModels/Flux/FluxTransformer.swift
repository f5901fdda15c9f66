import Tensors

/// The tensor arguments of one FLUX forward call, named after diffusers' `FluxTransformer2DModel.forward`.
public struct FluxInput: LatentTimestepInput, Sendable {
    /// `hidden_states` `[B, S, in_channels]` (packed latent tokens).
    public var hiddenStates: Tensor
    /// `encoder_hidden_states` `[B, L, joint_attention_dim]`.
    public var encoderHiddenStates: Tensor
    /// `pooled_projections` `[B, pooled_projection_dim]`.
    public var pooledProjections: Tensor
    /// `timestep` `[B]` (or `[1]`, broadcast), in sigma units (the model multiplies by 1000).
    public var timestep: Tensor
    /// `img_ids` `[S, n_axes]` (a batched `[B, S, n_axes]` uses element 0, as diffusers does).
    public var imageIDs: Tensor
    /// `txt_ids` `[L, n_axes]`.
    public var textIDs: Tensor
    /// `guidance` `[B]` (or `[1]`); required exactly when the configuration has `guidance_embeds`.
    public var guidance: Tensor?

    /// The inputs of one forward call (shapes as documented on each property).
    public init(hiddenStates: Tensor, encoderHiddenStates: Tensor, pooledProjections: Tensor, timestep: Tensor,
                imageIDs: Tensor, textIDs: Tensor, guidance: Tensor? = nil) {
        self.hiddenStates = hiddenStates
        self.encoderHiddenStates = encoderHiddenStates
        self.pooledProjections = pooledProjections
        self.timestep = timestep
        self.imageIDs = imageIDs
        self.textIDs = textIDs
        self.guidance = guidance
    }
}

/// Everything FLUX's block stacks need, computed once per call by ``FluxTransformer/prepare(_:)``.
///
/// `image` and `text` are current after every block. Between single-stream blocks (which transform the
/// joint sequence, text first) the state also keeps that joint sequence, so that the next single block
/// does not concatenate the two streams again; `image` and `text` are then its two parts.
public struct FluxState: Sendable {
    /// Image tokens `[B, S, D]`: the `x_embedder` output after ``FluxTransformer/prepare(_:)``, then the
    /// output of the last block run.
    public internal(set) var image: Tensor
    /// Text tokens `[B, L, D]`: the `context_embedder` output, then the output of the last block run.
    public internal(set) var text: Tensor
    /// The conditioning `temb` `[B, D]`.
    public var temb: Tensor
    /// Rotary tables over the joint (text, image) sequence, `[L + S, headDim]` each.
    public var rope: (cos: Tensor, sin: Tensor)
    /// Between single-stream blocks: the joint sequence `[text, image]` `[B, L + S, D]` of which `text`
    /// and `image` are the parts; nil before the first and after the last single-stream block, and after
    /// `image` is replaced from outside (``streams``).
    var joint: Tensor? = nil
}

/// diffusers' `FluxTransformer2DModel` (FLUX.1, TangoFlux), float32 on the CPU.
///
/// The forward is split in the order TeaCache needs it: ``prepare(_:)`` (embeddings, rotary tables),
/// ``modulatedInput(_:)``, ``runBlocks(_:)`` (both block stacks) and ``outputHead(_:)``;
/// ``callAsFunction(_:)`` runs all but the modulated input. Build one with ``FluxFamily``'s loaders
/// (`FluxFamily.load(_:weightsAt:precision:)`, `FluxFamily.load(_:tensors:precision:)`,
/// `FluxFamily.random(_:seed:steps:precision:parameterBudget:memoryBudget:)`).
public struct FluxTransformer: Sendable {
    /// The validated configuration.
    public let configuration: FluxConfiguration
    /// The memory a forward may plan to use: ``prepare(_:)`` estimates the activations of the input shapes
    /// (``FluxConfiguration/activationBytesEstimate(batch:imageTokens:textTokens:)``) and refuses inputs
    /// beyond it with `TensorError.memoryBudgetExceeded`.
    public var memoryBudget = MemoryBudget.machineDefault
    /// `time_text_embed`.
    let timeTextEmbed: FluxTimeTextEmbedding
    /// `context_embedder`: text-encoder states → width.
    private let contextEmbedder: Linear
    /// `x_embedder`: latent tokens → width.
    let xEmbedder: Linear
    /// `transformer_blocks` (double-stream).
    private let doubleBlocks: [FluxDoubleStreamBlock]
    /// `single_transformer_blocks`.
    private let singleBlocks: [FluxSingleStreamBlock]
    /// `norm_out`.
    private let normOut: AdaLayerNormContinuous
    /// `proj_out`.
    let projOut: Linear

    /// Builds the model, taking every parameter from `weights` by its diffusers name (called by
    /// ``FluxFamily``'s loading functions, which check the weights afterwards).
    init(configuration c: FluxConfiguration, weights w: WeightScope) {
        configuration = c
        let d = c.innerDim
        timeTextEmbed = FluxTimeTextEmbedding(w["time_text_embed"], configuration: c)
        contextEmbedder = Linear(w["context_embedder"], in: c.jointAttentionDim, out: d)
        xEmbedder = Linear(w["x_embedder"], in: c.inChannels, out: d)
        doubleBlocks = (0..<c.numLayers).map { FluxDoubleStreamBlock(w["transformer_blocks"][$0], configuration: c) }
        singleBlocks = (0..<c.numSingleLayers).map {
            FluxSingleStreamBlock(w["single_transformer_blocks"][$0], configuration: c)
        }
        normOut = AdaLayerNormContinuous(w["norm_out"], dim: d, conditioningDim: d, eps: 1e-6)
        projOut = Linear(w["proj_out"], in: d, out: c.outputWidth)
    }

    /// The full forward (`model(**inputs, return_dict=False)[0]`).
    public func callAsFunction(_ inputs: FluxInput) throws(TensorError) -> Tensor {
        var p = try prepare(inputs)
        try runBlocks(&p)
        return try outputHead(p)
    }

    /// Embeds the inputs (after checking their shapes against the configuration).
    public func prepare(_ inputs: FluxInput) throws(TensorError) -> FluxState {
        try validate(inputs)
        let c = configuration
        let guidance = c.guidanceEmbeds ? inputs.guidance : nil
        let temb = try timeTextEmbed(timestep: inputs.timestep, guidance: guidance, pooled: inputs.pooledProjections)
        return FluxState(
            image: try xEmbedder(inputs.hiddenStates),
            text: try contextEmbedder(inputs.encoderHiddenStates),
            temb: temb,
            rope: try FluxPositionEmbedding.tables(textIDs: inputs.textIDs, imageIDs: inputs.imageIDs,
                                                   axesDims: c.axesDimsRope))
    }

    /// TeaCache's modulated input: `transformer_blocks[0].norm1(image, temb)` — `LN(h)·(1 + scale_msa) + shift_msa`,
    /// `[B, S, D]`. Requires at least one double-stream block.
    public func modulatedInput(_ p: FluxState) throws(TensorError) -> Tensor {
        guard let first = doubleBlocks.first else {
            throw .invalidArgument(operation: "FLUX modulated input",
                                   reason: "the configuration has no double-stream block (num_layers = 0)")
        }
        return try first.norm1(p.image, emb: p.temb).normalized
    }

    /// Runs every double-stream block, then every single-stream block, updating `p.image` and `p.text`.
    ///
    /// The single blocks see the joint sequence (text first), concatenated once before the first of them
    /// and split after each, which gives the same values as diffusers' per-block concatenate/split.
    public func runBlocks(_ p: inout FluxState) throws(TensorError) {
        for i in 0..<depth { try runBlock(i, &p) }
    }

    /// The number of blocks: double-stream, then single-stream.
    var depth: Int { doubleBlocks.count + singleBlocks.count }

    /// Runs block `index` (`0 ..< num_layers + num_single_layers`, the double-stream blocks first, in
    /// order) on `p`: the one loop body of ``runBlocks(_:)`` and of First-Block Cache.
    public func runBlock(_ index: Int, _ p: inout FluxState) throws(TensorError) {
        guard (0..<depth).contains(index) else {
            throw .invalidArgument(operation: "FLUX block", reason: "block \(index) is outside 0..<\(depth)")
        }
        if index < doubleBlocks.count {
            try doubleBlocks[index](image: &p.image, text: &p.text, temb: p.temb, rope: p.rope)
            return
        }
        let j = index - doubleBlocks.count
        var joint: Tensor
        if let kept = p.joint { joint = kept } else { joint = try Tensor.concatenate([p.text, p.image], axis: 1) }
        try singleBlocks[j](&joint, temb: p.temb, rope: p.rope)
        // Views of the joint sequence for a batch of one, copies otherwise.
        let l = p.text.shape[1]
        let parts = try joint.split(sizes: [l, joint.shape[1] - l], axis: 1)
        (p.text, p.image) = (parts[0], parts[1])
        p.joint = j == singleBlocks.count - 1 ? nil : joint
    }

    /// `proj_out(norm_out(image, temb))`: `[B, S, patch² · out_channels]`.
    public func outputHead(_ p: FluxState) throws(TensorError) -> Tensor {
        try projOut(normOut(p.image, conditioning: p.temb))
    }

    private func validate(_ x: FluxInput) throws(TensorError) {
        let c = configuration
        func fail(_ reason: String) -> TensorError { .invalidArgument(operation: "FLUX forward", reason: reason) }
        let h = x.hiddenStates.shape
        guard h.count == 3, h[2] == c.inChannels, h[0] > 0, h[1] > 0 else {
            throw fail("hidden_states must be [B, S, \(c.inChannels)] with B, S > 0, got \(h)")
        }
        let (b, s) = (h[0], h[1])
        let e = x.encoderHiddenStates.shape
        guard e.count == 3, e[0] == b, e[2] == c.jointAttentionDim else {
            throw fail("encoder_hidden_states must be [\(b), L, \(c.jointAttentionDim)], got \(e)")
        }
        let l = e[1]
        try memoryBudget.check("FLUX forward of batch \(b), \(s) image + \(l) text tokens",
                               bytes: Double(c.activationBytesEstimate(batch: b, imageTokens: s, textTokens: l)))
        guard x.pooledProjections.shape == [b, c.pooledProjectionDim] else {
            throw fail("pooled_projections must be [\(b), \(c.pooledProjectionDim)], got \(x.pooledProjections.shape)")
        }
        func checkPerSample(_ t: Tensor, _ name: String) throws(TensorError) {
            guard t.rank <= 1, t.count == 1 || t.count == b else {
                throw fail("\(name) must be [\(b)] or [1], got \(t.shape)")
            }
        }
        try checkPerSample(x.timestep, "timestep")
        if c.guidanceEmbeds {
            guard let g = x.guidance else { throw fail("this model embeds guidance (guidance_embeds = true): pass guidance") }
            try checkPerSample(g, "guidance")
        } else if x.guidance != nil {
            throw fail("this model has no guidance embedder (guidance_embeds = false): do not pass guidance")
        }
        let n = c.axesDimsRope.count
        for (ids, name, tokens) in [(x.imageIDs, "img_ids", s), (x.textIDs, "txt_ids", l)] {
            let sh = ids.shape
            guard (sh.count == 2 && sh == [tokens, n]) || (sh.count == 3 && Array(sh.dropFirst()) == [tokens, n]) else {
                throw fail("\(name) must be [\(tokens), \(n)], got \(sh)")
            }
        }
        let named: [(String, Tensor?)] = [("hidden_states", x.hiddenStates), ("encoder_hidden_states", x.encoderHiddenStates),
                                          ("pooled_projections", x.pooledProjections), ("timestep", x.timestep),
                                          ("guidance", x.guidance), ("img_ids", x.imageIDs), ("txt_ids", x.textIDs)]
        for case let (name, t?) in named where !t.isFinite {
            throw fail("\(name) contains NaN or infinity")
        }
    }
}

// MARK: Embeddings

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
private enum FluxPositionEmbedding {
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

// MARK: Blocks

/// A FLUX double-stream block (`FluxTransformerBlock`): separate adaLN-Zero modulation, projections and
/// feed-forwards for the image and text streams, joint attention across both.
private struct FluxDoubleStreamBlock: Sendable {
    /// `norm1`: the image stream's adaLN-Zero.
    let norm1: AdaLayerNormZero
    /// `norm1_context`: the text stream's adaLN-Zero.
    let norm1Context: AdaLayerNormZero
    /// `attn`.
    let attention: FluxJointAttention
    /// `ff`: the image stream's feed-forward (GELU-tanh, 4× width).
    let ff: FeedForward
    /// `ff_context`: the text stream's feed-forward (GELU-tanh, 4× width).
    let ffContext: FeedForward
    /// Epsilon of the non-affine LayerNorms `norm2` / `norm2_context`.
    static let eps: Float = 1e-6

    /// Takes the parameters of one block's scope (e.g. `transformer_blocks.0`).
    init(_ weights: WeightScope, configuration c: FluxConfiguration) {
        let d = c.innerDim
        norm1 = AdaLayerNormZero(weights["norm1"], dim: d)
        norm1Context = AdaLayerNormZero(weights["norm1_context"], dim: d)
        attention = FluxJointAttention(weights["attn"], dim: d, heads: c.numAttentionHeads, headDim: c.attentionHeadDim)
        ff = FeedForward(weights["ff"], dim: d, inner: c.mlpHiddenDim, activation: .gelu(.tanh))
        ffContext = FeedForward(weights["ff_context"], dim: d, inner: c.mlpHiddenDim, activation: .gelu(.tanh))
    }

    /// Updates `image` `[B, S, D]` and `text` `[B, L, D]` with conditioning `temb` `[B, D]`.
    func callAsFunction(
        image: inout Tensor, text: inout Tensor, temb: Tensor, rope: (cos: Tensor, sin: Tensor)
    ) throws(TensorError) {
        let m = try norm1(image, emb: temb)
        let mc = try norm1Context(text, emb: temb)
        let (attnImage, attnText) = try attention(image: m.normalized, text: mc.normalized, rope: rope)
        image = try Self.feedForwardUpdate(addingGated(image, attnImage, gate: m.gateMSA), ff, m)
        text = try Self.feedForwardUpdate(addingGated(text, attnText, gate: mc.gateMSA), ffContext, mc)
    }

    /// `h + gate_mlp · ff(LN(h)·(1 + scale_mlp) + shift_mlp)`.
    private static func feedForwardUpdate(
        _ h: Tensor, _ ff: FeedForward, _ m: AdaLayerNormZero.Output
    ) throws(TensorError) -> Tensor {
        let n = try layerNormModulated(h, eps: eps, scale: m.scaleMLP, shift: m.shiftMLP)
        return try addingGated(h, ff(n), gate: m.gateMLP)
    }
}

/// The joint attention of a double-stream block (`FluxAttention` with `added_kv_proj_dim`): text and
/// image streams are projected separately, attended jointly (text tokens first), and projected out
/// separately (`to_out.0` for the image, `to_add_out` for the text).
private struct FluxJointAttention: Sendable {
    /// Image-stream projections (`to_q`, `to_k`, `to_v`, `norm_q`, `norm_k`).
    let image: FluxQKVProjection
    /// Text-stream projections (`add_q_proj`, …, `norm_added_q`, `norm_added_k`).
    let text: FluxQKVProjection
    /// `to_out.0`.
    let toOut: Linear
    /// `to_add_out`.
    let toAddOut: Linear

    /// Takes the scope's parameters in diffusers' order.
    init(_ weights: WeightScope, dim: Int, heads: Int, headDim: Int, eps: Float = 1e-6) {
        let inner = heads * headDim
        image = FluxQKVProjection(weights, names: ("to_q", "to_k", "to_v", "norm_q", "norm_k"),
                                  inDim: dim, heads: heads, headDim: headDim, eps: eps)
        toOut = Linear(weights["to_out.0"], in: inner, out: dim)
        text = FluxQKVProjection(weights, names: ("add_q_proj", "add_k_proj", "add_v_proj", "norm_added_q",
                                                  "norm_added_k"),
                                 inDim: dim, heads: heads, headDim: headDim, eps: eps)
        toAddOut = Linear(weights["to_add_out"], in: inner, out: dim)
    }

    /// Attends `image` `[B, S, D]` and `text` `[B, L, D]` jointly; returns the projected outputs.
    func callAsFunction(
        image x: Tensor, text c: Tensor, rope: (cos: Tensor, sin: Tensor)
    ) throws(TensorError) -> (image: Tensor, text: Tensor) {
        let (pi, pt) = (try image.project(x), try text.project(c))
        // The joint sequence (text first) is assembled while q and k are normalised and rotated.
        let o = try fluxRotaryAttention(queries: [text.query(pt), image.query(pi)], keys: [text.key(pt), image.key(pi)],
                                        values: [text.value(pt), image.value(pi)], rope: rope, projection: image,
                                        precision: toAddOut.weight.precision)
        let l = c.shape[1]
        let parts = try o.split(sizes: [l, o.shape[1] - l], axis: 1)
        return (try toOut(parts[1]), try toAddOut(parts[0]))
    }
}

/// A FLUX single-stream block (`FluxSingleTransformerBlock`) on the joint sequence (text tokens first):
/// `x + gate · proj_out([attention(x̂), gelu_tanh(proj_mlp(x̂))])` with `x̂` the adaLN-Zero-single output.
///
/// `proj_mlp` shares one sgemm with the q/k/v projections (they read the same `x̂`), and `proj_out`
/// is applied to the two halves without building their concatenation.
private struct FluxSingleStreamBlock: Sendable {
    /// `norm`.
    let norm: AdaLayerNormZeroSingle
    /// `proj_out` `[D, D + 4D]` over the concatenated attention and MLP outputs.
    let projOut: Linear
    /// `attn` (no output projection: `pre_only`), fused with `proj_mlp` `[4D, D]`.
    let attention: FluxQKVProjection

    /// Takes the parameters of one block's scope (e.g. `single_transformer_blocks.0`).
    init(_ weights: WeightScope, configuration c: FluxConfiguration) {
        let d = c.innerDim
        norm = AdaLayerNormZeroSingle(weights["norm"], dim: d)
        projOut = Linear(weights["proj_out"], in: d + c.mlpHiddenDim, out: d)
        attention = FluxQKVProjection(weights["attn"], names: ("to_q", "to_k", "to_v", "norm_q", "norm_k"),
                                      inDim: d, heads: c.numAttentionHeads, headDim: c.attentionHeadDim, eps: 1e-6,
                                      extra: [(weights["proj_mlp"], c.mlpHiddenDim)])
    }

    /// Updates the joint sequence `x` `[B, L+S, D]`.
    func callAsFunction(_ x: inout Tensor, temb: Tensor, rope: (cos: Tensor, sin: Tensor)) throws(TensorError) {
        let (n, gate) = try norm(x, emb: temb)
        let p = try attention.project(n)
        let inner = attention.heads * attention.headDim
        let mlp = try activated(p, column: 3 * inner, width: p.shape[2] - 3 * inner, .gelu(.tanh))
        let a = try fluxRotaryAttention(queries: [attention.query(p)], keys: [attention.key(p)],
                                        values: [attention.value(p)], rope: rope, projection: attention,
                                        precision: projOut.weight.precision)
        let out = try linear(concatenating: [a, mlp], weight: projOut.weight, bias: projOut.bias)
        x = try addingGated(x, out, gate: gate)
    }
}

// MARK: Attention shared by both block kinds

/// Query/key/value projections of one token stream with FLUX's per-head RMS norms on queries and keys.
///
/// The three projections (and, for single-stream blocks, the MLP input projection that reads the same
/// normalised tokens) run as one ``FusedLinear``.
private struct FluxQKVProjection: Sendable {
    /// q, k, v (and optional extra) projections stacked into one sgemm.
    let projection: FusedLinear
    /// RMSNorm scale `[headDim]` of the queries.
    let normQ: Tensor
    /// RMSNorm scale `[headDim]` of the keys.
    let normK: Tensor
    /// Number of attention heads.
    let heads: Int
    /// Width of one head.
    let headDim: Int
    /// RMSNorm epsilon.
    let eps: Float

    /// Takes `<normQ>.weight`, `<normK>.weight` and `<q>`, `<k>`, `<v>` (weights `[H·Dh, in]` with
    /// bias) of the scope, then any `extra` layers (their scopes with their output widths) that read the
    /// same input.
    init(_ weights: WeightScope, names: (q: String, k: String, v: String, normQ: String, normK: String),
         inDim: Int, heads: Int, headDim: Int, eps: Float, extra: [(weights: WeightScope, width: Int)] = []) {
        let inner = heads * headDim
        normQ = weights[names.normQ].tensor("weight", shape: [headDim])
        normK = weights[names.normK].tensor("weight", shape: [headDim])
        projection = FusedLinear([names.q, names.k, names.v].map { weights[$0] } + extra.map(\.weights),
                                 in: inDim, out: [inner, inner, inner] + extra.map(\.width))
        self.heads = heads
        self.headDim = headDim
        self.eps = eps
    }

    /// The stacked projection `[B, S, 3·H·Dh + extra widths]`: q, k, v, then the extra outputs.
    func project(_ x: Tensor) throws(TensorError) -> Tensor {
        try projection.stacked(x)
    }

    /// The queries of a stacked projection, RMS-normalised per head.
    func query(_ p: Tensor) -> HeadSegment {
        HeadSegment(p, column: 0, norm: HeadNormalisation(.rms, weight: normQ, eps: eps))
    }

    /// The keys of a stacked projection, RMS-normalised per head.
    func key(_ p: Tensor) -> HeadSegment {
        HeadSegment(p, column: heads * headDim, norm: HeadNormalisation(.rms, weight: normK, eps: eps))
    }

    /// The values of a stacked projection.
    func value(_ p: Tensor) -> HeadSegment {
        HeadSegment(p, column: 2 * heads * headDim)
    }
}

/// Scaled-dot-product attention over the rotary-embedded joint sequence: the query, key and value
/// segments (text first, then image, or one segment) joined, q and k RMS-normalised per head and rotated
/// with the tables `[L+S, Dh]` in the same pass (``preparedHeads(_:width:heads:rope:rotatedFrom:)``). A single value
/// segment is read in place. Returns `[B, L+S, H·Dh]`.
private func fluxRotaryAttention(
    queries: [HeadSegment], keys: [HeadSegment], values: [HeadSegment], rope: (cos: Tensor, sin: Tensor),
    projection: FluxQKVProjection, precision: WeightPrecision
) throws(TensorError) -> Tensor {
    let (heads, width) = (projection.heads, projection.heads * projection.headDim)
    let tables = (cos: rope.cos, sin: rope.sin, layout: RotaryEmbedding.Layout.interleaved)
    let q = try preparedHeads(queries, width: width, heads: heads, rope: tables)
    let k = try preparedHeads(keys, width: width, heads: heads, rope: tables)
    let v = try AttentionOperand(joining: values, width: width, heads: heads)
    return try attention(query: AttentionOperand(q), key: AttentionOperand(k), value: v, width: width, heads: heads,
                         precision: precision)
}
