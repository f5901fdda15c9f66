import Foundation
import Tensors

/// The arguments of one `LatteTransformer3DModel.forward` call.
///
/// diffusers' `encoder_attention_mask` is not taken: diffusers 0.42.1 hands it to the cross-attention
/// unrepeated over the frames, which fails for more than one frame, and `LattePipeline` passes none.
public struct LatteInput: LatentTimestepInput, Sendable {
    /// `hidden_states`: the latent video `[B, C, F, H, W]`.
    public var hiddenStates: Tensor
    /// `timestep` `[B]`, on the 0…1000 scale (one value per sample, as diffusers requires).
    public var timestep: Tensor
    /// `encoder_hidden_states`: the caption features `[B, L, caption_channels]`.
    public var encoderHiddenStates: Tensor
    /// `enable_temporal_attentions`: when false the temporal blocks (and the temporal position table) are skipped.
    public var enableTemporalAttentions: Bool

    /// The inputs of one forward call (shapes as documented on each property).
    public init(hiddenStates: Tensor, timestep: Tensor, encoderHiddenStates: Tensor, enableTemporalAttentions: Bool = true) {
        self.hiddenStates = hiddenStates
        self.timestep = timestep
        self.encoderHiddenStates = encoderHiddenStates
        self.enableTemporalAttentions = enableTemporalAttentions
    }
}

/// Everything Latte's blocks need, computed once per call by ``LatteTransformer/prepare(_:)``.
///
/// The video tokens are kept batch-major, `[B, F·T, D]` with T = tokens per frame in (frame, row,
/// column) order: the same memory as diffusers' spatial layout `[(B·F), T, D]`, so a spatial block reads
/// them as frames by a reshape, and a temporal block regroups them by token. Every per-sample tensor has
/// the batch on axis 0, so TeaCache can decide per sample.
public struct LatteState: Sendable {
    /// The video tokens `[B, F·T, D]`: the patch embedding plus the 2-D sin-cos table after
    /// ``LatteTransformer/prepare(_:)`` (h_in), the output of the last block run afterwards.
    public var tokens: Tensor
    /// adaLN-single's block modulation `[B, 6D]` (diffusers' `timestep` after `adaln_single`).
    public var modulation: Tensor
    /// adaLN-single's `embedded_timestep` `[B, D]`, read by the output modulation.
    public var embeddedTimestep: Tensor
    /// The projected caption `[B, L, D]` the spatial cross-attention reads.
    public var caption: Tensor
    /// The patched grid: frames, rows and columns of tokens.
    public var grid: (f: Int, h: Int, w: Int)
    /// Whether the temporal blocks run (`enable_temporal_attentions`).
    public var enableTemporalAttentions: Bool
}

/// diffusers 0.42.1 `LatteTransformer3DModel` (Latte-1, text-to-video) on the CPU in float32.
///
/// Spatial blocks (self-attention within each frame, cross-attention to the caption) and temporal blocks
/// (self-attention across the frames of each token position) alternate, all modulated by adaLN-single;
/// the output head is a LayerNorm modulated by `scale_shift_table + embedded_timestep`, `proj_out` and
/// unpatchify to `[B, out_channels, F, H, W]` (Latte-1 learns sigma: 2C channels, the first C are the
/// prediction).
///
/// The forward is split in the order TeaCache needs it: ``prepare(_:)`` (patch and position embeddings,
/// adaLN-single, caption projection), ``modulatedInput(_:)``, ``runBlocks(_:)`` (every spatial/temporal
/// pair, the temporal position table included) and ``outputHead(_:)``. Build one with ``LatteFamily``'s
/// loaders (`LatteFamily.load(_:weightsAt:precision:)`, `LatteFamily.load(_:tensors:precision:)`,
/// `LatteFamily.random(_:seed:steps:precision:parameterBudget:memoryBudget:)`).
///
/// Layout: diffusers repeats the per-sample modulation and caption over frames and tokens; here the
/// per-sample tensors broadcast over `[B, F·T, D]`, and the cross-attention runs every frame's queries
/// against their sample's caption at once — the same values, as each query attends independently.
public struct LatteTransformer: Sendable {
    /// The validated configuration.
    public let configuration: LatteConfiguration
    /// The memory a forward may plan to use: ``prepare(_:)`` estimates the activations of the input shapes
    /// (``LatteConfiguration/activationBytesEstimate(batch:frames:tokensPerFrame:textTokens:)``) and refuses
    /// inputs beyond it with `TensorError.memoryBudgetExceeded`.
    public var memoryBudget = MemoryBudget.machineDefault
    /// `pos_embed.proj`: the per-frame Conv2d patch projection.
    private let patchEmbedding: PatchEmbedding3D
    /// `adaln_single`.
    private let adalnSingle: AdaLayerNormSingle
    /// `caption_projection` (GELU-tanh).
    private let captionProjection: PixArtAlphaTextProjection
    /// `transformer_blocks`: the spatial blocks.
    private let spatialBlocks: [LatteBlock]
    /// `temporal_transformer_blocks`.
    private let temporalBlocks: [LatteBlock]
    /// `temp_pos_embed`: the temporal sin-cos table `[video_length, D]` (a buffer, not a stored weight).
    private let temporalPositions: Tensor
    /// `scale_shift_table` `[2, D]`: the output modulation's (shift, scale) offsets.
    private let scaleShiftTable: Tensor
    /// `proj_out`.
    private let projOut: Linear

    /// Builds the model, taking every parameter from `weights` by its diffusers name (called by
    /// ``LatteFamily``'s loading functions, which check the weights afterwards).
    init(configuration c: LatteConfiguration, weights w: WeightScope) throws(ModelLoadError) {
        configuration = c
        let d = c.innerDim
        patchEmbedding = PatchEmbedding3D(w["pos_embed"]["proj"], inChannels: c.latentChannels, outChannels: d,
                                          framePatch: (c.patch, c.patch))
        adalnSingle = AdaLayerNormSingle(w["adaln_single"], dim: d)
        captionProjection = PixArtAlphaTextProjection(w["caption_projection"], in: c.captionWidth, hidden: d)
        spatialBlocks = (0..<c.numLayers).map { LatteBlock(w["transformer_blocks"][$0], configuration: c, crossAttention: true) }
        temporalBlocks = (0..<c.numLayers).map {
            LatteBlock(w["temporal_transformer_blocks"][$0], configuration: c, crossAttention: false)
        }
        do {
            temporalPositions = try LattePositionTable.rows((0..<c.videoLength).map(Float.init), dim: d)
        } catch {
            throw .tensor(error)
        }
        scaleShiftTable = w["scale_shift_table"].tensor(shape: [2, d])
        projOut = Linear(w["proj_out"], in: d, out: c.outputTokenWidth)
    }

    /// The full forward (`model(**inputs, return_dict=False)[0]`): `[B, out_channels, F, H, W]`.
    public func callAsFunction(_ input: LatteInput) throws(TensorError) -> Tensor {
        var state = try prepare(input)
        try runBlocks(&state)
        return try outputHead(state)
    }

    /// Patch embedding with the 2-D sin-cos table, adaLN-single and the caption projection: everything
    /// before the first block (after checking the inputs against the configuration).
    public func prepare(_ input: LatteInput) throws(TensorError) -> LatteState {
        let grid = try validate(input)
        let b = input.hiddenStates.shape[0], d = configuration.innerDim
        let timesteps = input.timestep.scalars
        let (modulation, embedded) = try adalnSingle(timesteps)
        var tokens = try patchEmbedding(input.hiddenStates)  // [B, F·T, D], tokens in (f, h, w) order
        let positions = try LattePositionTable.grid(height: grid.h, width: grid.w, dim: d, baseSize: configuration.baseGridSize,
                                             interpolationScale: configuration.positionInterpolationScale)
        tokens = try (tokens.reshaped([b * grid.f, grid.h * grid.w, d]) + positions).reshaped([b, grid.f * grid.h * grid.w, d])
        return LatteState(tokens: tokens, modulation: modulation, embeddedTimestep: embedded,
                          caption: try captionProjection(input.encoderHiddenStates), grid: grid,
                          enableTemporalAttentions: input.enableTemporalAttentions)
    }

    /// TeaCache's modulated input (the reference's Latte rule): spatial block 0's
    /// `norm1(h_in)·(1 + scale_msa) + shift_msa`, `[B, F·T, D]` (diffusers' `[(B·F), T, D]` reshaped).
    /// Requires at least one layer.
    public func modulatedInput(_ state: LatteState) throws(TensorError) -> Tensor {
        guard let first = spatialBlocks.first else {
            throw .invalidArgument(operation: "Latte modulated input", reason: "the configuration has no block (num_layers = 0)")
        }
        return try first.modulatedNorm1(state.tokens, first.modulation(state.modulation))
    }

    /// Runs every spatial/temporal pair on `state.tokens`, in place.
    public func runBlocks(_ state: inout LatteState) throws(TensorError) {
        for i in 0..<depth { try runBlock(i, &state) }
    }

    /// The number of blocks: one spatial/temporal pair per layer (`num_layers`).
    var depth: Int { spatialBlocks.count }

    /// Runs pair `index` (`0 ..< num_layers`, in order): spatial block `index`, then — with temporal
    /// attention enabled — the temporal position table (before the first temporal block, when there is more
    /// than one frame) and temporal block `index`. The one loop body of ``runBlocks(_:)`` and of
    /// First-Block Cache.
    public func runBlock(_ index: Int, _ state: inout LatteState) throws(TensorError) {
        guard (0..<depth).contains(index) else {
            throw .invalidArgument(operation: "Latte block", reason: "block \(index) is outside 0..<\(depth)")
        }
        let g = state.grid
        state.tokens = try spatialBlocks[index](state.tokens, modulation: state.modulation,
                                                sequences: .frames(g.f, g.h * g.w), caption: state.caption)
        guard state.enableTemporalAttentions else { return }
        if index == 0 && g.f > 1 {
            let b = state.tokens.shape[0], d = configuration.innerDim
            let rows = try temporalPositions.reshaped([1, temporalPositions.shape[0], 1, d])  // [1, F or 1, 1, D]
            state.tokens = try (state.tokens.reshaped([b, g.f, g.h * g.w, d]) + rows).reshaped([b, g.f * g.h * g.w, d])
        }
        state.tokens = try temporalBlocks[index](state.tokens, modulation: state.modulation,
                                                 sequences: .positions(g.f, g.h * g.w), caption: nil)
    }

    /// `proj_out(LN(h)·(1 + scale) + shift)` with (shift, scale) = `scale_shift_table + embedded_timestep`,
    /// unpatchified to `[B, out_channels, F, H, W]`.
    public func outputHead(_ state: LatteState) throws(TensorError) -> Tensor {
        let ss = try (scaleShiftTable.unsqueezed(0) + state.embeddedTimestep.unsqueezed(1)).chunked(2, axis: 1)  // [B, 1, D] each
        let normed = try layerNormModulated(state.tokens, eps: LatteConfiguration.outputNormEps, scale: ss[1], shift: ss[0])
        let p = configuration.patch
        let g = state.grid
        return try Patches.unpatchify3D(projOut(normed), grid: (g.f, g.h * p, g.w * p), patch: (1, p, p), order: .channelsLast)
    }

    /// Checks every input against the configuration and the memory budget; returns the patched grid.
    private func validate(_ x: LatteInput) throws(TensorError) -> (f: Int, h: Int, w: Int) {
        let c = configuration
        func fail(_ reason: String) -> TensorError { .invalidArgument(operation: "Latte forward", reason: reason) }
        let s = x.hiddenStates.shape
        guard s.count == 5, s[1] == c.latentChannels, s[0] > 0, s[2] > 0 else {
            throw fail("hidden_states must be [B, in_channels = \(c.latentChannels), F, H, W] with B, F > 0, got \(s)")
        }
        let (b, f, h, w, p) = (s[0], s[2], s[3], s[4], c.patch)
        guard h >= p, w >= p, h % p == 0, w % p == 0 else {
            throw fail("the latent height and width \(h)×\(w) must be positive multiples of patch_size = \(p)")
        }
        let e = x.encoderHiddenStates.shape
        guard e.count == 3, e[0] == b, e[1] > 0, e[2] == c.captionWidth else {
            throw fail("encoder_hidden_states must be [B = \(b), L > 0, caption_channels = \(c.captionWidth)], got \(e)")
        }
        guard x.timestep.shape == [b] else {
            throw fail("timestep must be [B = \(b)] (one value per sample, as diffusers requires), got \(x.timestep.shape)")
        }
        let t = (h / p) * (w / p)
        try memoryBudget.check("Latte forward of batch \(b), \(f) frames × \(t) tokens + \(e[1]) caption tokens",
                               bytes: Double(c.activationBytesEstimate(batch: b, frames: f, tokensPerFrame: t, textTokens: e[1])))
        if x.enableTemporalAttentions, c.numLayers > 0, f > 1, c.videoLength != f, c.videoLength != 1 {
            throw fail("\(f) latent frames, but the temporal position table has video_length = \(c.videoLength) rows "
                       + "(it is added whole: use \(f) frames, or a configuration with video_length \(f) or 1)")
        }
        for (name, tensor) in [("hidden_states", x.hiddenStates), ("timestep", x.timestep),
                               ("encoder_hidden_states", x.encoderHiddenStates)] where !tensor.isFinite {
            throw fail("\(name) contains NaN or infinity")
        }
        return (f, h / p, w / p)
    }
}

// MARK: Embeddings

/// diffusers' sin-cos position tables (`get_1d_sincos_pos_embed_from_grid` and `get_2d_sincos_pos_embed`),
/// computed in Double from float32 positions and rounded to float32, as diffusers does (internal for its
/// layer test).
enum LattePositionTable {
    /// `[positions.count, dim]`: `[sin(p·ω_i), cos(p·ω_i)]` with `ω_i = 10000^(−i/(dim/2))`, i < dim/2.
    static func rows(_ positions: [Float], dim: Int) throws(TensorError) -> Tensor {
        try Tensor(shape: [positions.count, dim], scalars: positions.flatMap { halves(Double($0), dim: dim) })
    }

    /// One position's `[sin, cos]` row of width `dim` (even).
    private static func halves(_ p: Double, dim: Int) -> [Float] {
        let half = dim / 2
        let angles = (0..<half).map { i in p * (1 / Foundation.pow(10000, Double(i) / Double(half))) }
        return angles.map { Float(Foundation.sin($0)) } + angles.map { Float(Foundation.cos($0)) }
    }

    /// `PatchEmbed`'s table for a `height × width` token grid, `[height·width, dim]` in row-major order:
    /// the first `dim/2` channels encode the column, the last `dim/2` the row, each position measured as
    /// `index / (side / baseSize) / interpolationScale` in float32.
    static func grid(height: Int, width: Int, dim: Int, baseSize: Int, interpolationScale: Int) throws(TensorError) -> Tensor {
        func axis(_ n: Int) -> [[Float]] {
            let ratio = Float(Double(n) / Double(baseSize)), scale = Float(interpolationScale)
            return (0..<n).map { halves(Double(Float(Float($0) / ratio) / scale), dim: dim / 2) }
        }
        let columns = axis(width), rows = axis(height)
        var out = [Float]()
        out.reserveCapacity(height * width * dim)
        for r in 0..<height { for c in 0..<width { out += columns[c]; out += rows[r] } }
        return try Tensor(shape: [height * width, dim], scalars: out)
    }
}

// MARK: Blocks

/// How a block's self-attention groups the `[B, F·T, D]` tokens into sequences.
private enum LatteSequences {
    /// Spatial: each frame's `T` tokens, `[(B·F), T, D]` (a reshape).
    case frames(Int, Int)
    /// Temporal: each token position's `F` frames — rows `f·T + t` of `[B, F·T, D]`, read in place as `T`
    /// interleaved sequences (no transpose of frames and tokens).
    case positions(Int, Int)

    /// The rows `x` `[B, F·T, C]` as attention's batch and sequence layout: frames reshaped to `[(B·F), T, C]`
    /// (contiguous), positions left in place (`T` interleaved sequences).
    func layout(_ x: Tensor) throws(TensorError) -> (Tensor, AttentionSequences) {
        let (b, c) = (x.shape[0], x.shape[2])
        switch self {
        case let .frames(f, t): return (try x.reshaped([b * f, t, c]), .contiguous)
        case let .positions(_, t): return (x, .interleaved(t))
        }
    }
}

/// diffusers' `BasicTransformerBlock` with `norm_type = "ada_norm_single"` (Latte's spatial and temporal
/// blocks):
///
///     (shift, scale, gate, shift_mlp, scale_mlp, gate_mlp) = chunk₆(scale_shift_table + modulation)
///     h = h + gate · attn1(norm1(h)·(1 + scale) + shift)
///     h = h + attn2(h, caption)                                spatial blocks with cross-attention only
///     h = h + gate_mlp · ff(norm2(h)·(1 + scale_mlp) + shift_mlp)
///
/// `norm1`/`norm2` are LayerNorms (affine with `norm_elementwise_affine`); the cross-attention reads `h`
/// unnormalised, as PixArt-α's block does.
private struct LatteBlock: Sendable {
    /// `norm1` / `norm2` scale and bias, with `norm_elementwise_affine`.
    let norm1: AffineLayerNorm?
    let norm2: AffineLayerNorm?
    /// `attn1`: self-attention.
    let attn1: LatteAttention
    /// `attn2`: cross-attention to the caption (spatial blocks with `cross_attention_dim`).
    let attn2: LatteAttention?
    /// `ff`.
    let ff: FeedForward
    /// `scale_shift_table` `[6, D]`.
    let scaleShiftTable: Tensor
    /// `norm_eps`.
    let eps: Float

    /// Takes every parameter of one block's scope; `crossAttention` for a spatial block (it has `attn2`
    /// when the configuration has `cross_attention_dim`).
    init(_ w: WeightScope, configuration c: LatteConfiguration, crossAttention: Bool) {
        let d = c.innerDim
        norm1 = c.normElementwiseAffine ? AffineLayerNorm(w["norm1"], dim: d, eps: c.normEps) : nil
        norm2 = c.normElementwiseAffine ? AffineLayerNorm(w["norm2"], dim: d, eps: c.normEps) : nil
        attn1 = LatteAttention(w["attn1"], dim: d, heads: c.numAttentionHeads, bias: c.attentionBias, cross: false)
        attn2 = crossAttention && c.hasCrossAttention
            ? LatteAttention(w["attn2"], dim: d, heads: c.numAttentionHeads, bias: c.attentionBias, cross: true) : nil
        ff = FeedForward(w["ff"], dim: d, inner: c.feedForwardDim, activation: c.feedForwardActivation)
        scaleShiftTable = w["scale_shift_table"].tensor(shape: [6, d])
        eps = c.normEps
    }

    /// The six modulation chunks `[B, 1, D]` of `scale_shift_table + modulation` (`modulation` `[B, 6D]`).
    func modulation(_ modulation: Tensor) throws(TensorError) -> [Tensor] {
        let b = modulation.shape[0]
        return try (scaleShiftTable.unsqueezed(0) + modulation.reshaped([b, 6, scaleShiftTable.shape[1]])).chunked(6, axis: 1)
    }

    /// `norm1(h)·(1 + scale_msa) + shift_msa` (the block's attention input and TeaCache's modulated input).
    func modulatedNorm1(_ h: Tensor, _ m: [Tensor]) throws(TensorError) -> Tensor {
        try Self.modulatedNorm(h, norm1, eps: eps, scale: m[1], shift: m[0])
    }

    /// Runs the block on `h` `[B, F·T, D]`, its self-attention over `sequences`.
    func callAsFunction(_ h: Tensor, modulation: Tensor, sequences: LatteSequences, caption: Tensor?) throws(TensorError) -> Tensor {
        let m = try self.modulation(modulation)
        let b = h.shape[0]
        var h = h
        let attnOut = try attn1.selfAttention(modulatedNorm1(h, m), sequences: sequences)
        h = try addingGated(h, attnOut.reshaped([b, h.shape[1], h.shape[2]]), gate: .perSample(m[2]))
        if let attn2, let caption { h = try h + attn2(h, context: caption) }
        let ffIn = try Self.modulatedNorm(h, norm2, eps: eps, scale: m[4], shift: m[3])
        return try addingGated(h, ff(ffIn), gate: .perSample(m[5]))
    }

    /// `LN(h)·(1 + scale) + shift`, with the LayerNorm's own scale and bias first when it has them.
    private static func modulatedNorm(_ h: Tensor, _ norm: AffineLayerNorm?, eps: Float, scale: Tensor,
                                      shift: Tensor) throws(TensorError) -> Tensor {
        guard let norm else { return try layerNormModulated(h, eps: eps, scale: scale, shift: shift) }
        return try modulate(norm(h), scale: scale, shift: shift)
    }
}

/// diffusers' `Attention` with `AttnProcessor2_0` as Latte's blocks build it: q/k/v projections (with
/// biases when `attention_bias`), scaled-dot-product attention over `heads`, `to_out.0` with bias. The
/// projections that read the same input run as one stacked product (q, k, v for self-attention; k, v of
/// the caption for cross-attention).
private struct LatteAttention: Sendable {
    /// `to_q` of a cross-attention (nil: self-attention, whose `to_q` is stacked with `to_k`, `to_v`).
    let toQ: Linear?
    /// `to_q`, `to_k`, `to_v` stacked (self-attention), or `to_k`, `to_v` (cross-attention).
    let stacked: Linear
    /// `to_out.0`.
    let toOut: Linear
    /// The model width.
    let dim: Int
    /// Number of heads.
    let heads: Int

    /// Takes `to_q`, `to_k`, `to_v` and `to_out.0` of the scope.
    init(_ w: WeightScope, dim: Int, heads: Int, bias: Bool, cross: Bool) {
        func projection(_ name: String) -> Linear { Linear(w[name], in: dim, out: dim, bias: bias) }
        toQ = cross ? projection("to_q") : nil
        stacked = Linear.stacking((cross ? ["to_k", "to_v"] : ["to_q", "to_k", "to_v"]).map(projection))
        toOut = Linear(w["to_out.0"], in: dim, out: dim)
        self.dim = dim
        self.heads = heads
    }

    /// Self-attention of `x` `[B, F·T, D]` over `sequences`; the result in `x`'s rows (`[(B·F), T, D]` for
    /// frames). q, k and v are read in place from the stacked projection.
    func selfAttention(_ x: Tensor, sequences: LatteSequences) throws(TensorError) -> Tensor {
        let (p, layout) = try sequences.layout(stacked(x))
        return try toOut(attention(query: AttentionOperand(p), key: AttentionOperand(p, column: dim),
                                   value: AttentionOperand(p, column: 2 * dim), width: dim, heads: heads,
                                   sequences: layout, precision: toOut.weight.precision))
    }

    /// Cross-attention (with `to_q` separate) of `x` `[B, S, D]` to `context` `[B, L, D]`; k and v read in
    /// place from their stacked projection.
    func callAsFunction(_ x: Tensor, context: Tensor) throws(TensorError) -> Tensor {
        guard let toQ else {
            throw .invalidArgument(operation: "Latte attention", reason: "a self-attention layer has no separate to_q for a context")
        }
        let kv = try stacked(context)
        return try toOut(attention(query: AttentionOperand(toQ(x)), key: AttentionOperand(kv),
                                   value: AttentionOperand(kv, column: dim), width: dim, heads: heads,
                                   precision: toOut.weight.precision))
    }
}
