import Foundation
import Tensors

/// The arguments of one `CosmosTransformer3DModel.forward` call.
public struct CosmosInput: LatentTimestepInput, Sendable {
    /// The latent video `[B, C, F, H, W]`.
    public var hiddenStates: Tensor
    /// The timestep per sample `[B]` (or `[1]`, broadcast), on Cosmos' EDM noise scale `0.25·ln(sigma)`;
    /// or per latent frame, `[B, 1, F, 1, 1]` (needs a frame patch of 1).
    public var timestep: Tensor
    /// Text-encoder features `[B, L, text_embed_dim]` (`crossattn_proj_in_channels` wide with
    /// `use_crossattn_projection`).
    public var encoderHiddenStates: Tensor
    /// An additive bias on the cross-attention scores per text token `[B, L]` (diffusers passes a
    /// float mask to scaled-dot-product attention as a bias), or nil.
    public var attentionMask: Tensor?
    /// Frames per second: the temporal rotary positions are scaled by `24 / fps`; nil for images
    /// (unscaled positions).
    public var fps: Int?
    /// Channels concatenated to the latent before the patch embedding `[B, Cm, F, H, W]` (Video2World:
    /// one channel, 1 on the conditioning frames), or nil.
    public var conditionMask: Tensor?
    /// The padding mask `[1, 1, Hp, Wp]` (nearest-resized to the latent's H×W and concatenated as one
    /// channel) for configurations with `concat_padding_mask`; ignored otherwise, as diffusers ignores it.
    public var paddingMask: Tensor?

    /// Bundles the arguments.
    public init(hiddenStates: Tensor, timestep: Tensor, encoderHiddenStates: Tensor, attentionMask: Tensor? = nil,
                fps: Int? = nil, conditionMask: Tensor? = nil, paddingMask: Tensor? = nil) {
        self.hiddenStates = hiddenStates
        self.timestep = timestep
        self.encoderHiddenStates = encoderHiddenStates
        self.attentionMask = attentionMask
        self.fps = fps
        self.conditionMask = conditionMask
        self.paddingMask = paddingMask
    }
}

/// Everything computed before the block stack for one call, and the video tokens as they go through it.
public struct CosmosState: Sendable {
    /// The video tokens `[B, S, D]`: the patch-embedded input h_in after ``CosmosTransformer/prepare(_:)``,
    /// the block-stack output after ``CosmosTransformer/runBlocks(_:)``.
    public var tokens: Tensor
    /// What every block reads (time embeddings, text, rotary and position tables).
    public var blocks: CosmosBlockContext
    /// The latent grid `(F, H, W)` before patching.
    public var grid: (f: Int, h: Int, w: Int)
}

/// What every block of one forward call shares.
public struct CosmosBlockContext: Sendable {
    /// `temb` `[B, 1, 3D]` (or `[B, S, 3D]` with per-frame timesteps): added to every adaLN's projection.
    public var temb: Tensor
    /// `embedded_timestep` `[B, 1, D]` (or `[B, S, D]`): the RMS-normed sinusoidal features every adaLN
    /// projects.
    public var embeddedTimestep: Tensor
    /// The cross-attention context `[B, L, text_embed_dim]` (after `crossattn_proj` when the model has it).
    public var context: Tensor
    /// The additive cross-attention bias `[B, L]`, or nil.
    public var attentionMask: Tensor?
    /// Rotary cosine table `[S, head_dim]` (split-halves layout).
    public var rotaryCos: Tensor
    /// Rotary sine table `[S, head_dim]`.
    public var rotarySin: Tensor
    /// The learnable position embedding `[S, D]` added at the start of every block, or nil.
    public var extraPositions: Tensor?
}

/// diffusers 0.42.1 `CosmosTransformer3DModel` (Cosmos-1.0 Diffusion Text2World and Video2World layouts)
/// on the CPU in float32.
///
/// The forward is split the way TeaCache needs it: ``prepare(_:)`` (mask channels, patch embedding,
/// rotary and learnable positions, time embedding, text projection), ``runBlocks(_:)`` (the transformer
/// blocks), ``outputHead(_:)`` (adaLN-LoRA output norm, `proj_out`, unpatchify). ``callAsFunction(_:)``
/// chains them.
///
/// Every adaLN (three per block and the output norm) projects `silu(embedded_timestep)` through a
/// low-rank pair (`linear_1`: D → `adaln_lora_dim`, `linear_2` → k·D) and adds `temb` (its first 2D
/// values for the output norm). diffusers keeps the learnable position tables in float32 (they are
/// float32 here anyway); everything runs in float32.
///
/// Differences from diffusers: no ControlNet residuals (`block_controlnet_hidden_states`) and no
/// Cosmos 2.5 image context; a `padding_mask` must have batch 1 and one channel (what the pipelines
/// pass; diffusers' repeat would otherwise multiply the batch).
public struct CosmosTransformer: Sendable {
    /// The validated configuration.
    public let configuration: CosmosConfiguration
    /// `patch_embed.proj` (no bias): `(c, pt, ph, pw)`-flattened patches → D.
    private let patchEmbedding: Linear
    /// `learnable_pos_embed`, when `extra_pos_embed_type` is `"learnable"`.
    private let learnablePositions: CosmosLearnablePositions?
    /// `time_embed`.
    private let timeEmbedding: CosmosTimeEmbedding
    /// `crossattn_proj.0` (Linear + exact GELU), with `use_crossattn_projection`.
    private let crossattnProjection: Linear?
    /// `transformer_blocks`.
    private let blocks: [CosmosBlock]
    /// `norm_out`.
    private let normOut: CosmosAdaLayerNorm
    /// `proj_out` (no bias): D → `(ph, pw, pt, c)`-ordered patch values.
    private let projOut: Linear
    /// The memory a forward may plan to use: ``prepare(_:)`` estimates the activations of the input shapes
    /// (``CosmosConfiguration/activationBytesEstimate(batch:videoTokens:textTokens:)``) and refuses
    /// inputs beyond it with `TensorError.memoryBudgetExceeded`.
    public var memoryBudget = MemoryBudget.machineDefault

    /// Builds the model, taking every parameter from `weights` (called by ``CosmosFamily``'s loading
    /// functions, which check the weights afterwards).
    init(configuration c: CosmosConfiguration, weights w: WeightScope) {
        configuration = c
        let d = c.innerDim
        patchEmbedding = Linear(w["patch_embed.proj"], in: c.patchInChannels * c.patchSize.reduce(1, *), out: d, bias: false)
        learnablePositions = c.hasLearnablePositions ? CosmosLearnablePositions(w["learnable_pos_embed"], configuration: c) : nil
        timeEmbedding = CosmosTimeEmbedding(w["time_embed"], dim: d)
        crossattnProjection = c.useCrossattnProjection
            ? Linear(w["crossattn_proj.0"], in: c.crossattnProjInChannels, out: c.encoderHiddenStatesChannels) : nil
        blocks = (0..<c.numLayers).map { CosmosBlock(w["transformer_blocks"][$0], configuration: c) }
        normOut = CosmosAdaLayerNorm(w["norm_out"], dim: d, lora: c.adalnLoraDim, chunks: 2)
        projOut = Linear(w["proj_out"], in: d, out: c.outputTokenWidth, bias: false)
    }

    /// The full forward: `output` of diffusers' `forward(..., return_dict=False)[0]`.
    public func callAsFunction(_ input: CosmosInput) throws(TensorError) -> Tensor {
        var state = try prepare(input)
        try runBlocks(&state)
        return try outputHead(state)
    }

    /// The model width D.
    public var innerDim: Int { configuration.innerDim }

    /// Mask channels, patch embedding, positions, time embedding and text projection: everything before
    /// the first block.
    /// - Throws: `TensorError` naming the argument whose shape or value is wrong.
    public func prepare(_ input: CosmosInput) throws(TensorError) -> CosmosState {
        let c = configuration
        let op = "Cosmos forward"
        var x = input.hiddenStates
        guard x.rank == 5 else {
            throw .shapeMismatch(operation: op, shapes: [x.shape], reason: "hidden_states must be [B, C, F, H, W]")
        }
        let (b, f, h, w) = (x.shape[0], x.shape[2], x.shape[3], x.shape[4])
        let p = c.patch
        guard f % p.t == 0, h % p.h == 0, w % p.w == 0 else {
            throw .invalidArgument(operation: op, reason: "latent grid \(f)×\(h)×\(w) is not divisible by patch_size \(c.patchSize)")
        }
        let grid = (f / p.t, h / p.h, w / p.w)
        for (name, t) in [("hidden_states", x), ("encoder_hidden_states", input.encoderHiddenStates),
                          ("condition_mask", input.conditionMask),
                          ("padding_mask", input.paddingMask)] {
            if let t, !t.isFinite { throw .invalidArgument(operation: op, reason: "\(name) holds NaN or infinite values") }
        }
        if let m = input.conditionMask {
            guard m.rank == 5, m.shape[0] == b, Array(m.shape[2...]) == [f, h, w] else {
                throw .shapeMismatch(operation: op, shapes: [x.shape, m.shape],
                                     reason: "condition_mask must be [B = \(b), channels, F = \(f), H = \(h), W = \(w)]")
            }
            x = try Tensor.concatenate([x, m], axis: 1)
        }
        guard x.shape[1] == c.inChannels else {
            let what = input.conditionMask == nil ? "hidden_states" : "hidden_states + condition_mask"
            throw .shapeMismatch(operation: op, shapes: [input.hiddenStates.shape] + (input.conditionMask.map { [$0.shape] } ?? []),
                                 reason: "\(what) must have in_channels = \(c.inChannels) channels (Video2World models "
                                    + "count the condition-mask channel)")
        }
        if c.concatPaddingMask {
            guard let pm = input.paddingMask else {
                throw .invalidArgument(operation: op, reason: "this model concatenates a padding mask (concat_padding_mask): pass padding_mask [1, 1, H, W]")
            }
            x = try Tensor.concatenate([x, Self.paddingChannel(pm, batch: b, frames: f, height: h, width: w)], axis: 1)
        }
        let text = input.encoderHiddenStates
        guard text.rank == 3, text.shape[0] == b, text.shape[2] == c.encoderInputDim else {
            throw .shapeMismatch(operation: op, shapes: [x.shape, text.shape],
                                 reason: "encoder_hidden_states must be [B = \(b), L, \(c.encoderInputDim)]")
        }
        if let m = input.attentionMask, m.shape != [b, text.shape[1]] {
            throw .shapeMismatch(operation: op, shapes: [text.shape, m.shape],
                                 reason: "attention_mask must be [B, L] = [\(b), \(text.shape[1])]")
        }
        if let fps = input.fps, fps <= 0 {
            throw .invalidArgument(operation: op, reason: "fps must be positive, got \(fps)")
        }
        let s = grid.0 * grid.1 * grid.2
        try memoryBudget.check("Cosmos forward of batch \(b), \(s) video + \(text.shape[1]) text tokens",
                               bytes: Double(c.activationBytesEstimate(batch: b, videoTokens: s, textTokens: text.shape[1])))
        let maxPositions = c.patchedMaxSize.max() ?? 0
        guard max(grid.0, grid.1, grid.2) <= maxPositions else {
            throw .invalidArgument(operation: op, reason: "patched grid \(grid.0)×\(grid.1)×\(grid.2) exceeds the "
                                    + "\(maxPositions) rotary positions of max_size \(c.maxSize) / patch_size \(c.patchSize)")
        }
        let rope = try CosmosRotaryTables.tables(configuration: c, frames: grid.0, height: grid.1, width: grid.2, fps: input.fps)
        let positions = try learnablePositions?(frames: grid.0, height: grid.1, width: grid.2)
        let tokens = try patchEmbedding(Patches.patchify3D(x, patch: p, order: .channelsFirst))
        let time = try timeEmbedding(Self.timesteps(input.timestep, batch: b, frames: f, patchFrames: p.t),
                                     batch: b, tokensPerFrame: grid.1 * grid.2)
        var context = text
        if let crossattnProjection { context = try crossattnProjection(context, activation: .gelu(.none)) }
        return CosmosState(
            tokens: tokens,
            blocks: CosmosBlockContext(temb: time.temb, embeddedTimestep: time.embedded, context: context,
                                       attentionMask: input.attentionMask, rotaryCos: rope.cos, rotarySin: rope.sin,
                                       extraPositions: positions),
            grid: (f, h, w))
    }

    /// Runs every transformer block on `state.tokens` `[B, S, D]`, in place.
    public func runBlocks(_ state: inout CosmosState) throws(TensorError) {
        for i in blocks.indices { try runBlock(i, &state) }
    }

    /// The number of transformer blocks (`num_layers`).
    var depth: Int { blocks.count }

    /// Runs block `index` (`0 ..< num_layers`, in order) on `state.tokens`: the one loop body of
    /// ``runBlocks(_:)`` and of First-Block Cache.
    public func runBlock(_ index: Int, _ state: inout CosmosState) throws(TensorError) {
        guard blocks.indices.contains(index) else {
            throw .invalidArgument(operation: "Cosmos block", reason: "block \(index) is outside 0..<\(blocks.count)")
        }
        state.tokens = try blocks[index](state.tokens, state.blocks)
    }

    /// TeaCache's modulated input: block 0's self-attention adaLN applied to h_in *before* the learnable
    /// position embedding is added (TeaCache4Cosmos), `LayerNorm(h_in)·(1 + scale) + shift`; with no
    /// blocks, h_in itself.
    func firstBlockModulation(_ state: CosmosState) throws(TensorError) -> Tensor {
        guard let first = blocks.first else { return state.tokens }
        return try first.norm1(state.tokens, state.blocks).normalized
    }

    /// adaLN-LoRA output norm, `proj_out`, and unpatchify to `[B, out_channels, F, H, W]`.
    public func outputHead(_ state: CosmosState) throws(TensorError) -> Tensor {
        let c = configuration
        let normed = try normOut(state.tokens, state.blocks).normalized
        let out = try projOut(normed)
        // Each token's values are ordered (ph, pw, pt, c); diffusers' permutation puts them back.
        let (f, h, w) = state.grid, p = c.patch, b = out.shape[0]
        return try out.reshaped([b, f / p.t, h / p.h, w / p.w, p.h, p.w, p.t, c.outChannels])
            .permuted([0, 7, 1, 6, 2, 4, 3, 5])
            .reshaped([b, c.outChannels, f, h, w])
    }

    /// The timestep values: one per sample (`[B]`, or `[1]` repeated), or one per sample and latent
    /// frame (`[B, 1, F, 1, 1]`, frame-major within a sample).
    static func timesteps(_ t: Tensor, batch b: Int, frames f: Int, patchFrames pt: Int) throws(TensorError) -> CosmosTimesteps {
        let v = t.scalars
        guard v.allSatisfy(\.isFinite) else {
            throw .invalidArgument(operation: "Cosmos forward", reason: "timestep holds NaN or infinite values")
        }
        if t.rank == 1, t.shape[0] == b || t.shape[0] == 1 {
            return .perSample(v.count == b ? v : Array(repeating: v[0], count: b))
        }
        if t.shape == [b, 1, f, 1, 1] {
            guard pt == 1 else {
                throw .invalidArgument(operation: "Cosmos forward",
                                       reason: "per-frame timesteps [B, 1, F, 1, 1] need patch_size[0] = 1 (diffusers assumes it)")
            }
            return .perFrame(v, frames: f)
        }
        throw .shapeMismatch(operation: "Cosmos forward", shapes: [t.shape],
                             reason: "timestep must be [B = \(b)], [1] or [B, 1, F = \(f), 1, 1]")
    }

    /// The padding-mask channel `[B, 1, F, H, W]`: `mask` `[1, 1, Hp, Wp]` resized to H×W by nearest
    /// neighbour (PyTorch's rule: source index `⌊dst · Hp/H⌋` in float32, clamped), repeated over the
    /// batch and the frames.
    static func paddingChannel(_ mask: Tensor, batch b: Int, frames f: Int, height h: Int, width w: Int) throws(TensorError) -> Tensor {
        guard mask.rank == 4, mask.shape[0] == 1, mask.shape[1] == 1, mask.shape[2] > 0, mask.shape[3] > 0 else {
            throw .shapeMismatch(operation: "Cosmos forward", shapes: [mask.shape], reason: "padding_mask must be [1, 1, H, W]")
        }
        let (hp, wp) = (mask.shape[2], mask.shape[3])
        func source(_ dst: Int, _ input: Int, _ output: Int) -> Int {
            if input == output { return dst }
            let scale = Float(input) / Float(output)
            return min(Int((Float(dst) * scale).rounded(.down)), input - 1)
        }
        let m = mask.scalars
        var plane = [Float](repeating: 0, count: h * w)
        for i in 0..<h {
            let si = source(i, hp, h)
            for j in 0..<w { plane[i * w + j] = m[si * wp + source(j, wp, w)] }
        }
        var all = [Float]()
        all.reserveCapacity(b * f * h * w)
        for _ in 0..<(b * f) { all += plane }
        return try Tensor(shape: [b, 1, f, h, w], scalars: all)
    }
}

/// The timestep values of one call.
enum CosmosTimesteps {
    /// One value per sample.
    case perSample([Float])
    /// One value per sample and latent frame, sample-major.
    case perFrame([Float], frames: Int)
}

// MARK: Embeddings

/// diffusers' `CosmosRotaryPosEmbed`: the head dimension is split into frame, height and width parts
/// (`Dh − 4⌊Dh/6⌋`, `2⌊Dh/6⌋`, `2⌊Dh/6⌋`); each axis has its own base `10000 · scale^(dim/(dim−2))`
/// (NTK), frequencies `base^(−2i/dim)` in float32, and the frame positions are scaled by `24 / fps`
/// for videos. The table is `[t ‖ h ‖ w, t ‖ h ‖ w]` per token: the split-halves layout.
enum CosmosRotaryTables {
    /// The base frame rate of the temporal positions.
    static let baseFPS: Float = 24

    /// cos/sin tables `[f·h·w, Dh]`, tokens in (frame, row, column) order.
    static func tables(configuration c: CosmosConfiguration, frames f: Int, height h: Int, width w: Int,
                       fps: Int?) throws(TensorError) -> (cos: Tensor, sin: Tensor) {
        let dims = c.rotaryAxesDims
        let freqs: [[Float]] = dims.enumerated().map { axis, dim in
            let theta = Float(10000.0 * Foundation.pow(c.ropeScale[axis], Double(dim) / Double(dim - 2)))
            return (0..<(dim / 2)).map { i in 1 / Foundation.powf(theta, Float(2 * i) / Float(dim)) }
        }
        let framePositions: [Float] = (0..<f).map { i in fps.map { Float(i) / Float($0) * baseFPS } ?? Float(i) }
        let dh = c.attentionHeadDim, half = dh / 2
        var cosT = [Float](repeating: 0, count: f * h * w * dh), sinT = cosT
        func angles(_ position: Float, _ axis: Int) -> [(Float, Float)] {
            freqs[axis].map { fr in
                let a = Double(position * fr)
                return (Float(Foundation.cos(a)), Float(Foundation.sin(a)))
            }
        }
        let tAngles = framePositions.map { angles($0, 0) }
        let hAngles = (0..<h).map { angles(Float($0), 1) }
        let wAngles = (0..<w).map { angles(Float($0), 2) }
        var token = 0
        for i in 0..<f { for j in 0..<h { for k in 0..<w {
            let row = tAngles[i] + hAngles[j] + wAngles[k]
            for (col, (cv, sv)) in row.enumerated() {
                cosT[token * dh + col] = cv; cosT[token * dh + half + col] = cv
                sinT[token * dh + col] = sv; sinT[token * dh + half + col] = sv
            }
            token += 1
        } } }
        return (try Tensor(shape: [f * h * w, dh], scalars: cosT), try Tensor(shape: [f * h * w, dh], scalars: sinT))
    }
}

/// diffusers' `CosmosLearnablePositionalEmbed`: per token `e = pos_emb_t[f] + pos_emb_h[h] + pos_emb_w[w]`,
/// divided by `ε + ‖e‖₂/√D` (ε = 1e-6) — an RMS normalisation with ε outside the root.
struct CosmosLearnablePositions: Sendable {
    /// `pos_emb_t` `[T, D]`.
    let frames: Tensor
    /// `pos_emb_h` `[H, D]`.
    let rows: Tensor
    /// `pos_emb_w` `[W, D]`.
    let columns: Tensor
    /// The normalisation epsilon.
    static let eps: Float = 1e-6

    /// Takes `pos_emb_t`, `pos_emb_h`, `pos_emb_w` of the scope.
    init(_ w: WeightScope, configuration c: CosmosConfiguration) {
        let m = c.patchedMaxSize, d = c.innerDim
        frames = w.tensor("pos_emb_t", shape: [m[0], d])
        rows = w.tensor("pos_emb_h", shape: [m[1], d])
        columns = w.tensor("pos_emb_w", shape: [m[2], d])
    }

    /// The three tables `[T, D]`, `[H, D]`, `[W, D]` themselves.
    init(frames: Tensor, rows: Tensor, columns: Tensor) {
        self.frames = frames
        self.rows = rows
        self.columns = columns
    }

    /// The embedding `[f·h·w, D]` of a patched grid.
    func callAsFunction(frames f: Int, height h: Int, width w: Int) throws(TensorError) -> Tensor {
        for (name, n, table) in [("frames", f, frames), ("height", h, rows), ("width", w, columns)] where n > table.shape[0] {
            throw .invalidArgument(operation: "Cosmos learnable position embedding",
                                   reason: "patched \(name) \(n) exceeds the \(table.shape[0]) positions of max_size / patch_size")
        }
        let d = frames.shape[1]
        let (pt, ph, pw) = (frames.scalars, rows.scalars, columns.scalars)
        let alpha = Float((1.0 / Double(d)).squareRoot())
        var out = [Float](repeating: 0, count: f * h * w * d)
        var token = 0
        for i in 0..<f { for j in 0..<h { for k in 0..<w {
            let o = token * d
            var sq: Float = 0
            for c in 0..<d {
                let e = pt[i * d + c] + ph[j * d + c] + pw[k * d + c]
                out[o + c] = e
                sq += e * e
            }
            let denominator = Self.eps + alpha * sq.squareRoot()
            for c in 0..<d { out[o + c] /= denominator }
            token += 1
        } } }
        return try Tensor(shape: [f * h * w, d], scalars: out)
    }
}

/// diffusers' `CosmosEmbedding`: sinusoidal features of the timestep (cos first, shift 0, D of them);
/// `t_embedder` (`linear_1` D → D, SiLU, `linear_2` D → 3D, no biases) gives `temb`, and an RMSNorm
/// (ε = 1e-6, learned scale) of the features gives `embedded_timestep`.
private struct CosmosTimeEmbedding: Sendable {
    /// `t_embedder.linear_1`.
    let linear1: Linear
    /// `t_embedder.linear_2`.
    let linear2: Linear
    /// `norm`.
    let norm: RMSNorm
    /// The model width D.
    let dim: Int

    /// Takes `t_embedder.linear_1`, `t_embedder.linear_2` and `norm` of the scope.
    init(_ w: WeightScope, dim d: Int) {
        linear1 = Linear(w["t_embedder.linear_1"], in: d, out: d, bias: false)
        linear2 = Linear(w["t_embedder.linear_2"], in: d, out: 3 * d, bias: false)
        norm = RMSNorm(w["norm"], dim: d, eps: 1e-6)
        dim = d
    }

    /// `temb` `[B, R, 3D]` and `embedded_timestep` `[B, R, D]`, with R = 1 (per sample) or the token
    /// count (per frame, each frame's values repeated over its `tokensPerFrame` tokens).
    func callAsFunction(_ t: CosmosTimesteps, batch b: Int, tokensPerFrame hw: Int) throws(TensorError) -> (temb: Tensor, embedded: Tensor) {
        let values: [Float]
        switch t {
        case .perSample(let v): values = v
        case .perFrame(let v, _): values = v
        }
        let features = try sinusoidalTimestepEmbedding(values, dim: dim, flipSinToCos: true, downscaleFreqShift: 0)
        let temb = try linear2(linear1(features, activation: .silu))
        let embedded = try norm(features)
        switch t {
        case .perSample:
            return (try temb.reshaped([b, 1, 3 * dim]), try embedded.reshaped([b, 1, dim]))
        case .perFrame(_, let f):
            func spread(_ x: Tensor, _ k: Int) throws(TensorError) -> Tensor {
                try (x.reshaped([b, f, 1, k]) + Tensor(shape: [b, f, hw, k], repeating: 0)).reshaped([b, f * hw, k])
            }
            return (try spread(temb, 3 * dim), try spread(embedded, dim))
        }
    }
}

/// diffusers' `CosmosAdaLayerNorm` / `CosmosAdaLayerNormZero`: `silu(embedded_timestep)` → `linear_1`
/// (D → lora) → `linear_2` (lora → k·D), plus `temb` (its first k·D values), chunked into
/// (shift, scale[, gate]); the tokens go through a LayerNorm without affine parameters (ε = 1e-6) and
/// `·(1 + scale) + shift`.
private struct CosmosAdaLayerNorm: Sendable {
    /// `linear_1`.
    let linear1: Linear
    /// `linear_2`.
    let linear2: Linear
    /// 2 (shift, scale: the output norm) or 3 (shift, scale, gate: the block norms).
    let chunks: Int
    /// The LayerNorm epsilon.
    static let eps: Float = 1e-6

    /// Takes `linear_1` and `linear_2` of the scope.
    init(_ w: WeightScope, dim d: Int, lora: Int, chunks: Int) {
        linear1 = Linear(w["linear_1"], in: d, out: lora, bias: false)
        linear2 = Linear(w["linear_2"], in: lora, out: chunks * d, bias: false)
        self.chunks = chunks
    }

    /// The modulated tokens `LayerNorm(x)·(1 + scale) + shift` and the modulation chunks
    /// (shift, scale[, gate]), each `[B, 1, D]` (or `[B, S, D]`).
    func callAsFunction(_ x: Tensor, _ ctx: CosmosBlockContext) throws(TensorError) -> (normalized: Tensor, chunks: [Tensor]) {
        var emb = try linear2(linear1(silu(ctx.embeddedTimestep)))
        let width = emb.shape[2]
        let temb = width == ctx.temb.shape[2] ? ctx.temb : try ctx.temb.slice(axis: 2, 0..<width)
        emb = try emb + temb
        let m = try emb.chunked(chunks, axis: 2)
        return (try layerNormModulated(x, eps: Self.eps, scale: m[1], shift: m[0]), m)
    }
}

// MARK: Blocks

/// diffusers' `CosmosTransformerBlock`:
///
///     h = h + extra_pos_emb                                   (learnable positions, when present)
///     h = h + gate₁ · attn1(adaLN₁(h))                        self-attention with rotary embedding
///     h = h + gate₂ · attn2(adaLN₂(h), text)                  cross-attention
///     h = h + gate₃ · ff(adaLN₃(h))                           GELU feed-forward, no biases
private struct CosmosBlock: Sendable {
    /// `norm1`.
    let norm1: CosmosAdaLayerNorm
    /// `attn1`.
    let attn1: CosmosAttention
    /// `norm2`.
    let norm2: CosmosAdaLayerNorm
    /// `attn2`.
    let attn2: CosmosAttention
    /// `norm3`.
    let norm3: CosmosAdaLayerNorm
    /// `ff`.
    let ff: FeedForward

    /// Takes every parameter of one block's scope (`transformer_blocks.<i>`).
    init(_ w: WeightScope, configuration c: CosmosConfiguration) {
        let d = c.innerDim
        norm1 = CosmosAdaLayerNorm(w["norm1"], dim: d, lora: c.adalnLoraDim, chunks: 3)
        attn1 = CosmosAttention(w["attn1"], dim: d, contextDim: d, heads: c.numAttentionHeads, headDim: c.attentionHeadDim)
        norm2 = CosmosAdaLayerNorm(w["norm2"], dim: d, lora: c.adalnLoraDim, chunks: 3)
        attn2 = CosmosAttention(w["attn2"], dim: d, contextDim: c.textEmbedDim, heads: c.numAttentionHeads,
                                headDim: c.attentionHeadDim)
        norm3 = CosmosAdaLayerNorm(w["norm3"], dim: d, lora: c.adalnLoraDim, chunks: 3)
        ff = FeedForward(w["ff"], dim: d, inner: c.ffnDim, activation: .gelu(.none), bias: false)
    }

    /// Runs the block on `h` `[B, S, D]`.
    func callAsFunction(_ h: Tensor, _ ctx: CosmosBlockContext) throws(TensorError) -> Tensor {
        var h = h
        if let positions = ctx.extraPositions { h = try h + positions }
        let a = try norm1(h, ctx)  // chunks: shift, scale, gate
        h = try Self.gated(h, attn1(a.normalized, context: a.normalized, rotary: (ctx.rotaryCos, ctx.rotarySin), mask: nil),
                           a.chunks[2])
        let x = try norm2(h, ctx)
        h = try Self.gated(h, attn2(x.normalized, context: ctx.context, rotary: nil, mask: ctx.attentionMask), x.chunks[2])
        let f = try norm3(h, ctx)
        return try Self.gated(h, ff(f.normalized), f.chunks[2])
    }

    /// `h + gate · y` in one pass (``addingGated(_:_:gate:)``, the product rounded before the sum as in
    /// diffusers), the gate `[B, 1, D]` per sample or `[B, S, D]` per token.
    private static func gated(_ h: Tensor, _ y: Tensor, _ gate: Tensor) throws(TensorError) -> Tensor {
        try addingGated(h, y, gate: gate.rank == 3 && gate.shape[1] == h.shape[1] ? .perToken(gate) : .perSample(gate))
    }
}

/// diffusers' `Attention` with `CosmosAttnProcessor2_0`: q/k/v projections without bias, per-head
/// RMSNorm of q and k (learned `[head_dim]` scale, ε = 1e-5), split-halves rotary embedding of q and k
/// (self-attention), scaled-dot-product attention (with an additive key bias for the cross-attention
/// mask), `to_out.0` without bias.
private struct CosmosAttention: Sendable {
    /// `to_q`.
    let toQ: Linear
    /// `to_k`.
    let toK: Linear
    /// `to_v`.
    let toV: Linear
    /// `to_out.0`.
    let toOut: Linear
    /// `norm_q`.
    let normQ: RMSNorm
    /// `norm_k`.
    let normK: RMSNorm
    /// Heads.
    let heads: Int
    /// Channels per head.
    let headDim: Int

    /// Takes `to_q`, `to_k`, `to_v`, `to_out.0`, `norm_q`, `norm_k` of the scope.
    init(_ w: WeightScope, dim: Int, contextDim: Int, heads: Int, headDim: Int) {
        toQ = Linear(w["to_q"], in: dim, out: dim, bias: false)
        toK = Linear(w["to_k"], in: contextDim, out: dim, bias: false)
        toV = Linear(w["to_v"], in: contextDim, out: dim, bias: false)
        toOut = Linear(w["to_out.0"], in: dim, out: dim, bias: false)
        normQ = RMSNorm(w["norm_q"], dim: headDim, eps: 1e-5)
        normK = RMSNorm(w["norm_k"], dim: headDim, eps: 1e-5)
        self.heads = heads
        self.headDim = headDim
    }

    /// `norm` applied to each head.
    private func headNormalisation(_ norm: RMSNorm) -> HeadNormalisation {
        HeadNormalisation(.rms, weight: norm.weight, eps: norm.eps)
    }

    /// Attention of `x` `[B, S, D]` to `context` `[B, L, E]` (`x` itself for self-attention).
    func callAsFunction(_ x: Tensor, context: Tensor, rotary: (cos: Tensor, sin: Tensor)?, mask: Tensor?) throws(TensorError) -> Tensor {
        // Per-head RMS norm and rotary embedding in one pass per row.
        let tables = rotary.map { (cos: $0.cos, sin: $0.sin, layout: RotaryEmbedding.Layout.splitHalves) }
        let width = heads * headDim
        let q = try preparedHeads([HeadSegment(toQ(x), norm: headNormalisation(normQ))], width: width, heads: heads, rope: tables)
        let k = try preparedHeads([HeadSegment(toK(context), norm: headNormalisation(normK))], width: width, heads: heads,
                                  rope: tables)
        let v = try toV(context)
        let bias = try mask.map { m throws(TensorError) in AttentionMask.additive(try m.reshaped([m.shape[0], 1, 1, m.shape[1]])) }
        return try toOut(attention(query: q, key: k, value: v, heads: heads, mask: bias, precision: toOut.weight.precision))
    }
}
