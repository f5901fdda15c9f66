import Foundation
import Tensors

/// The arguments of one `CogVideoXTransformer3DModel.forward` call, by their diffusers names:
/// `hidden_states` — the latent video `[B, F, C, H, W]`, frames before channels —,
/// `encoder_hidden_states` `[B, L, text_embed_dim]`, `timestep` `[B]` or `[1]` (0…1000 scale), and `ofs`
/// `[B]` or `[1]`, required exactly when the model has an ofs embedding (the I2V pipelines pass 2.0).
///
/// The rotary table is not an argument: the model builds it from the latent size as the CogVideoX
/// pipelines do.
public struct CogVideoXInput: LatentTimestepInput, Sendable {
    /// `hidden_states`, `encoder_hidden_states`, `timestep`.
    public var hiddenStates: Tensor, encoderHiddenStates: Tensor, timestep: Tensor
    /// `ofs` (ofs models only).
    public var ofs: Tensor?

    /// Bundles the arguments.
    public init(hiddenStates: Tensor, encoderHiddenStates: Tensor, timestep: Tensor, ofs: Tensor? = nil) {
        (self.hiddenStates, self.encoderHiddenStates, self.timestep, self.ofs) = (hiddenStates, encoderHiddenStates, timestep, ofs)
    }
}

/// Everything computed before the block stack for one call, and the two token streams as they go
/// through it.
public struct CogVideoXState: Sendable {
    /// The video tokens `[B, S, D]`: after the patch embedding, then after the last block.
    public var video: Tensor
    /// The text tokens `[B, L, D]`: after the patch embedding, then after the last block.
    public var text: Tensor
    /// The time embedding `emb` `[B, time_embed_dim]` (plus the ofs embedding when the model has one).
    public var emb: Tensor
    /// The rotary tables `[S, head_dim]` of the video tokens, or nil for the sincos (2B) layout.
    public var rope: (cos: Tensor, sin: Tensor)?
    /// The latent shape `[B, F, C, H, W]` of the call.
    public var latentShape: [Int]
}

/// diffusers 0.42.1 `CogVideoXTransformer3DModel` (CogVideoX 1.0 2B/5B/5B-I2V and 1.5 T2V/I2V) on the
/// CPU in float32.
///
/// The forward is split for TeaCache: ``prepare(_:)`` (time and ofs embeddings, patch embedding with
/// its positional table, the rotary tables), ``runBlocks(_:)`` (the blocks, on the joint
/// `[text; video]` sequence), ``outputHead(_:)`` (`norm_final`, `norm_out` modulated by `emb`,
/// `proj_out`, unpatchify to `[B, F, C, H, W]`).
///
/// Precision: diffusers computes all of it in the model dtype (float32 here) except the sincos table
/// (float64, rounded) and the rotary table (float32, by the pipeline), which this port computes the
/// same way.
///
/// Differences from diffusers: `timestep_cond` is not supported (the model has no `cond_proj`, so
/// diffusers fails with it too); latent sizes not divisible by the patch sizes are rejected (diffusers
/// fails for the 1.5 layout and crops silently for 1.0); an `ofs` given to a model without an ofs
/// embedding is rejected (diffusers ignores it).
public struct CogVideoXTransformer: Sendable {
    /// The validated configuration.
    public let configuration: CogVideoXConfiguration
    /// The memory a forward may plan to use: ``prepare(_:)`` estimates the activations of the input shapes
    /// (``CogVideoXConfiguration/activationBytesEstimate(batch:videoTokens:textTokens:)``) and refuses
    /// inputs beyond it with `TensorError.memoryBudgetExceeded`.
    public var memoryBudget = MemoryBudget.machineDefault
    /// `patch_embed`.
    let patchEmbed: CogVideoXPatchEmbedding
    /// `time_proj` + `time_embedding`.
    let timeEmbedding: CogVideoXTimestepEmbedding
    /// `ofs_proj` + `ofs_embedding` (CogVideoX1.5 I2V), or nil.
    let ofsEmbedding: CogVideoXTimestepEmbedding?
    /// `transformer_blocks`.
    let blocks: [CogVideoXBlock]
    /// `norm_final` weight and bias (nil without elementwise affine).
    let normFinal: (weight: Tensor?, bias: Tensor?)
    /// `norm_out.linear` `[2D, time_embed_dim]`: (shift, scale) — shift first (`chunk_dim=1`).
    let normOutLinear: Linear
    /// `norm_out.norm` weight and bias (nil without elementwise affine).
    let normOutNorm: (weight: Tensor?, bias: Tensor?)
    /// `proj_out`.
    let projOut: Linear

    /// Builds the model, taking every parameter from `weights` (called by ``CogVideoXFamily``'s loading
    /// functions, which check the weights afterwards).
    init(configuration c: CogVideoXConfiguration, weights w: WeightScope) {
        configuration = c
        let d = c.innerDim
        patchEmbed = CogVideoXPatchEmbedding(w["patch_embed"], configuration: c)
        timeEmbedding = CogVideoXTimestepEmbedding(w["time_embedding"], channels: d, out: c.timeEmbedDim, configuration: c)
        ofsEmbedding = c.ofsEmbedDim.map { CogVideoXTimestepEmbedding(w["ofs_embedding"], channels: $0, out: $0, configuration: c) }
        blocks = (0..<c.numLayers).map { CogVideoXBlock(w["transformer_blocks"][$0], configuration: c) }
        func norm(_ s: WeightScope) -> (Tensor?, Tensor?) {
            c.normElementwiseAffine ? (s.tensor("weight", shape: [d]), s.tensor("bias", shape: [d])) : (nil, nil)
        }
        normFinal = norm(w["norm_final"])
        normOutLinear = Linear(w["norm_out"]["linear"], in: c.timeEmbedDim, out: 2 * d)
        normOutNorm = norm(w["norm_out"]["norm"])
        projOut = Linear(w["proj_out"], in: d, out: c.outputTokenWidth)
    }

    // MARK: - Forward parts

    /// Time (and ofs) embedding, patch embedding and rotary tables: everything before the first block.
    /// - Throws: `TensorError` naming the argument that is wrong and what it must be.
    public func prepare(_ input: CogVideoXInput) throws(TensorError) -> CogVideoXState {
        let c = configuration
        let x = input.hiddenStates, text = input.encoderHiddenStates
        try validate(input)
        let b = x.shape[0]
        let timesteps = try Self.perSample(input.timestep, batch: b, name: "timestep")
        var emb = try timeEmbedding(timesteps)
        if let ofsEmbedding, let ofs = input.ofs {
            emb = try emb + ofsEmbedding(Self.perSample(ofs, batch: b, name: "ofs"))
        }
        let (textTokens, videoTokens) = try patchEmbed(text: text, video: x)
        var rope: (cos: Tensor, sin: Tensor)? = nil
        if c.useRotaryPositionalEmbeddings {
            rope = try CogVideoXRotaryEmbedding.tables(configuration: c, frames: x.shape[1], height: x.shape[3],
                                                       width: x.shape[4])
        }
        return CogVideoXState(video: videoTokens, text: textTokens, emb: emb, rope: rope, latentShape: x.shape)
    }

    /// Runs every block on the joint `[text; video]` sequence (joined once) and splits it back into the
    /// two streams; the same numbers as ``runBlock(_:_:)`` for every index in order.
    public func runBlocks(_ state: inout CogVideoXState) throws(TensorError) {
        try runJoint(blocks.indices, &state)
    }

    /// Runs block `index` (`0 ..< configuration.numLayers`) on the state's two streams.
    /// - Throws: `TensorError` for an index outside the stack.
    public func runBlock(_ index: Int, _ state: inout CogVideoXState) throws(TensorError) {
        guard blocks.indices.contains(index) else {
            throw .invalidArgument(operation: "CogVideoX block", reason: "block \(index) is outside 0..<\(blocks.count)")
        }
        try runJoint(index..<(index + 1), &state)
    }

    /// Joins `[text; video]`, runs the blocks `range`, splits the result back into the streams.
    private func runJoint(_ range: Range<Int>, _ state: inout CogVideoXState) throws(TensorError) {
        guard !range.isEmpty else { return }
        let l = state.text.shape[1]
        var h = try Tensor.concatenate([state.text, state.video], axis: 1)
        let activated = silu(state.emb)
        for i in range { try blocks[i](&h, textLength: l, activatedEmb: activated, rope: state.rope) }
        let parts = try h.split(sizes: [l, h.shape[1] - l], axis: 1)
        state.text = parts[0]
        state.video = parts[1]
    }

    /// The full forward: `output` of diffusers' `forward(..., return_dict=False)[0]`.
    public func callAsFunction(_ input: CogVideoXInput) throws(TensorError) -> Tensor {
        var state = try prepare(input)
        try runBlocks(&state)
        return try outputHead(state)
    }

    // MARK: - Input checks

    private func validate(_ input: CogVideoXInput) throws(TensorError) {
        let c = configuration
        let x = input.hiddenStates, text = input.encoderHiddenStates
        func fail(_ reason: String) -> TensorError { .invalidArgument(operation: "CogVideoX forward", reason: reason) }
        guard x.rank == 5, x.shape[2] == c.inChannels, x.shape[0] > 0, x.shape[1] > 0, x.shape[3] > 0, x.shape[4] > 0 else {
            throw .shapeMismatch(operation: "CogVideoX forward", shapes: [x.shape],
                                 reason: "hidden_states must be [B, F, in_channels = \(c.inChannels), H, W] (frames before channels)")
        }
        let (b, f, h, w) = (x.shape[0], x.shape[1], x.shape[3], x.shape[4])
        guard f % c.temporalPatch == 0, h % c.patchSize == 0, w % c.patchSize == 0 else {
            throw fail("latent \(f)×\(h)×\(w) (frames × height × width) is not divisible by the patch "
                       + "\(c.temporalPatch)×\(c.patchSize)×\(c.patchSize) (patch_size_t × patch_size²)")
        }
        guard text.rank == 3, text.shape[0] == b, text.shape[2] == c.textEmbedDim else {
            throw .shapeMismatch(operation: "CogVideoX forward", shapes: [x.shape, text.shape],
                                 reason: "encoder_hidden_states must be [B = \(b), L, text_embed_dim = \(c.textEmbedDim)]")
        }
        if c.usesPositionalTable, text.shape[1] != c.maxTextSeqLength {
            throw fail("this model adds a joint positional table of max_text_seq_length = \(c.maxTextSeqLength) text rows: "
                       + "pass exactly that many text tokens (got \(text.shape[1]))")
        }
        let tokens = (f / c.temporalPatch) * (h / c.patchSize) * (w / c.patchSize)
        try memoryBudget.check("CogVideoX forward of batch \(b), \(tokens) video + \(text.shape[1]) text tokens",
                               bytes: c.activationBytes(batch: b, videoTokens: tokens, textTokens: text.shape[1]))
        if c.useLearnedPositionalEmbeddings, h != c.sampleHeight || w != c.sampleWidth {
            throw fail("learned positional embeddings only cover the configured latent size "
                       + "\(c.sampleHeight)×\(c.sampleWidth) (sample_height × sample_width), got \(h)×\(w)")
        }
        switch (ofsEmbedding != nil, input.ofs != nil) {
        case (true, false): throw fail("this model embeds ofs (ofs_embed_dim = \(c.ofsEmbedDim ?? 0)): pass ofs (the I2V pipelines use 2.0)")
        case (false, true): throw fail("this model has no ofs embedding (ofs_embed_dim is null): do not pass ofs")
        default: break
        }
        for (name, t) in [("hidden_states", x), ("encoder_hidden_states", text)] where !t.isFinite {
            throw fail("\(name) holds NaN or infinite values")
        }
    }

    /// The values of a per-sample argument: `[B]`, or `[1]` repeated over the batch (diffusers broadcasts it).
    private static func perSample(_ t: Tensor, batch b: Int, name: String) throws(TensorError) -> [Float] {
        guard t.rank == 1, t.shape[0] == b || t.shape[0] == 1 else {
            throw .shapeMismatch(operation: "CogVideoX forward", shapes: [t.shape], reason: "\(name) must be [B = \(b)] or [1]")
        }
        let v = t.scalars
        guard v.allSatisfy(\.isFinite) else {
            throw .invalidArgument(operation: "CogVideoX forward", reason: "\(name) holds NaN or infinite values: \(v)")
        }
        return v.count == b ? v : Array(repeating: v[0], count: b)
    }
}

// MARK: - Embeddings

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
    func callAsFunction(_ x: Tensor) throws(TensorError) -> Tensor {
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
            return try Tensor(shape: x.shape, scalars: v)
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
            // Only a loader's placeholder for a missing or mis-shaped weight fails to reshape; the load reports it.
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

/// The 3-D rotary table of the CogVideoX pipelines (`get_3d_rotary_pos_embed` as
/// `CogVideoXPipeline._prepare_rotary_positional_embeddings` calls it), computed from the latent sizes.
///
/// The head dimension D is split into frame, row and column parts of `D//4`, `D//8·3`, `D//8·3`
/// channels; each part rotates by its axis position with frequencies `1 / 10000^(2i/dim)`, each
/// frequency repeated for an interleaved pair (the layout of `RotaryEmbedding.Layout.interleaved`).
/// Positions depend on the layout:
/// - CogVideoX 1.0 (`patch_size_t` null): the crop region of the grid inside the
///   `sample_height/p × sample_width/p` base (`get_resize_crop_region_for_grid`, Python's
///   round-half-to-even), rows and columns `linspace(start, stop·(n−1)/n, n)`, frames `0 … F−1`;
/// - CogVideoX 1.5: grid type `"slice"`: integer positions `0 … n−1`, the grid no larger than the base
///   (`max_size`), frames `0 … ⌈F/p_t⌉−1`.
///
/// Everything is float32, as the pipeline computes it (`freqs_dtype` float32): the frequencies, the
/// position·frequency products and their cosines and sines, so the table matches the pipeline's to a
/// few float32 ulps (torch's vectorised `linspace`/`pow` may round a last bit differently).
enum CogVideoXRotaryEmbedding {
    /// `get_resize_crop_region_for_grid((h, w), base_width, base_height)`: the region `(top, left)` to
    /// `(bottom, right)` a `h × w` grid resized to fit the base occupies, centred.
    static func resizeCropRegion(
        grid: (h: Int, w: Int), baseWidth tw: Int, baseHeight th: Int
    ) -> (top: Int, left: Int, bottom: Int, right: Int) {
        let r = Double(grid.h) / Double(grid.w)
        let resizeHeight: Int, resizeWidth: Int
        if r > Double(th) / Double(tw) {
            resizeHeight = th
            resizeWidth = Int((Double(th) / Double(grid.h) * Double(grid.w)).rounded(.toNearestOrEven))
        } else {
            resizeWidth = tw
            resizeHeight = Int((Double(tw) / Double(grid.w) * Double(grid.h)).rounded(.toNearestOrEven))
        }
        let top = Int((Double(th - resizeHeight) / 2).rounded(.toNearestOrEven))
        let left = Int((Double(tw - resizeWidth) / 2).rounded(.toNearestOrEven))
        return (top, left, top + resizeHeight, left + resizeWidth)
    }

    /// `torch.linspace(start, end, steps, dtype=float32)`: step `(end − start)/(steps − 1)` in float32,
    /// the first half counted up from `start`, the second half down from `end`.
    static func linspace(start: Float, end: Float, steps: Int) -> [Float] {
        guard steps > 1 else { return steps == 1 ? [start] : [] }
        let step = (end - start) / Float(steps - 1)
        let halfway = steps / 2
        return (0..<steps).map { i in i < halfway ? start + step * Float(i) : end - step * Float(steps - i - 1) }
    }

    /// The positions of each axis for a latent grid of `frames × height × width` (before patching).
    /// - Throws: ``TensorError/invalidArgument(operation:reason:)`` when a 1.5 grid exceeds the base.
    static func positions(
        configuration c: CogVideoXConfiguration, frames: Int, height: Int, width: Int
    ) throws(TensorError) -> (frames: [Float], rows: [Float], columns: [Float]) {
        let p = c.patchSize
        let (gh, gw) = (height / p, width / p)
        let (baseW, baseH) = (c.sampleWidth / p, c.sampleHeight / p)
        if let pt = c.patchSizeT {
            guard gh <= baseH, gw <= baseW else {
                throw .invalidArgument(operation: "CogVideoX rotary table",
                                       reason: "the patched grid \(gh)×\(gw) exceeds the rotary base sample_height/patch_size × "
                                        + "sample_width/patch_size = \(baseH)×\(baseW) (the pipelines' slice grid)")
            }
            let t = (frames + pt - 1) / pt
            return ((0..<t).map(Float.init), (0..<gh).map(Float.init), (0..<gw).map(Float.init))
        }
        let crop = resizeCropRegion(grid: (gh, gw), baseWidth: baseW, baseHeight: baseH)
        let rows = linspace(start: Float(crop.top), end: Float(Double(crop.bottom * (gh - 1)) / Double(gh)), steps: gh)
        let columns = linspace(start: Float(crop.left), end: Float(Double(crop.right * (gw - 1)) / Double(gw)), steps: gw)
        let t = linspace(start: 0, end: Float(Double(frames * (frames - 1)) / Double(frames)), steps: frames)
        return (t, rows, columns)
    }

    /// The cos/sin tables `[t·h·w, D]` of the given axis positions, tokens in (frame, row, column) order.
    static func tables(
        headDim d: Int, frames: [Float], rows: [Float], columns: [Float]
    ) throws(TensorError) -> (cos: Tensor, sin: Tensor) {
        let dims = [d / 4, d / 8 * 3, d / 8 * 3]
        guard dims.allSatisfy({ $0 > 0 && $0 % 2 == 0 }), dims.reduce(0, +) == d else {
            throw .invalidArgument(operation: "CogVideoX rotary table",
                                   reason: "head dimension \(d) must be a multiple of 16 (split \(dims))")
        }
        let axes = [frames, rows, columns].enumerated().map { a, positions in axisTable(positions, dim: dims[a]) }
        let n = frames.count * rows.count * columns.count
        var cosT = [Float](repeating: 0, count: n * d), sinT = [Float](repeating: 0, count: n * d)
        var token = 0
        for f in 0..<frames.count {
            for r in 0..<rows.count {
                for col in 0..<columns.count {
                    var offset = token * d
                    for (a, index) in [f, r, col].enumerated() {
                        let dim = dims[a], (c, s) = axes[a]
                        for j in 0..<dim {
                            cosT[offset + j] = c[index * dim + j]
                            sinT[offset + j] = s[index * dim + j]
                        }
                        offset += dim
                    }
                    token += 1
                }
            }
        }
        return (try Tensor(shape: [n, d], scalars: cosT), try Tensor(shape: [n, d], scalars: sinT))
    }

    /// The pipeline's tables for a latent `[B, F, C, H, W]` of `frames × height × width`.
    static func tables(
        configuration c: CogVideoXConfiguration, frames: Int, height: Int, width: Int
    ) throws(TensorError) -> (cos: Tensor, sin: Tensor) {
        let p = try positions(configuration: c, frames: frames, height: height, width: width)
        return try tables(headDim: c.attentionHeadDim, frames: p.frames, rows: p.rows, columns: p.columns)
    }

    /// `get_1d_rotary_pos_embed(dim, positions, use_real=True)` in float32: `[count, dim]` cos and sin,
    /// each frequency repeated twice.
    static func axisTable(_ positions: [Float], dim: Int) -> (cos: [Float], sin: [Float]) {
        let freqs: [Float] = (0..<(dim / 2)).map { i in
            let e = Float(2 * i) / Float(dim)
            return 1 / Float(Foundation.pow(10000.0, Double(e)))
        }
        var c = [Float](repeating: 0, count: positions.count * dim), s = c
        for (k, p) in positions.enumerated() {
            for (i, f) in freqs.enumerated() {
                let angle = Double(p * f)
                let (cv, sv) = (Float(Foundation.cos(angle)), Float(Foundation.sin(angle)))
                c[k * dim + 2 * i] = cv; c[k * dim + 2 * i + 1] = cv
                s[k * dim + 2 * i] = sv; s[k * dim + 2 * i + 1] = sv
            }
        }
        return (c, s)
    }
}

// MARK: - Transformer block

/// diffusers' `CogVideoXLayerNormZero`: `linear(silu(temb))` → (shift, scale, gate, enc_shift,
/// enc_scale, enc_gate), one LayerNorm (affine when `norm_elementwise_affine`) for both streams,
/// `x̂ = LN(x)·(1 + scale) + shift` for the video tokens and the `enc_*` version for the text tokens.
private struct CogVideoXLayerNormZero: Sendable {
    /// `linear` `[6D, time_embed_dim]` (with bias).
    let linear: Linear
    /// `norm.weight` `[D]`, or nil without elementwise affine.
    let weight: Tensor?
    /// `norm.bias` `[D]`, or nil without elementwise affine.
    let bias: Tensor?
    /// The LayerNorm epsilon (`norm_eps`).
    let eps: Float

    /// Chunk indices of the projection: video (shift 0, scale 1, gate 2), text (3, 4, 5).
    static let video = CogVideoXKernels.Chunks(shift: 0, scale: 1), text = CogVideoXKernels.Chunks(shift: 3, scale: 4)
    static let videoGate = 2, textGate = 5

    /// Takes `linear` and `norm` of the scope (`norm1`, `norm2`).
    init(_ w: WeightScope, conditioningDim: Int, dim: Int, affine: Bool, eps: Float) {
        linear = Linear(w["linear"], in: conditioningDim, out: 6 * dim)
        weight = affine ? w["norm"].tensor("weight", shape: [dim]) : nil
        bias = affine ? w["norm"].tensor("bias", shape: [dim]) : nil
        self.eps = eps
    }

    /// The six modulation vectors `[B, 6D]` for the activated conditioning `silu(temb)` `[B, T]`
    /// (matrix-vector products: one row per sample).
    func modulation(_ activatedEmb: Tensor) throws(TensorError) -> Tensor { try linear.fewRows(activatedEmb) }

    /// The modulated norm of the joint sequence `[B, L + S, D]` (text rows first).
    func normalized(_ x: Tensor, textLength l: Int, modulation m: Tensor) throws(TensorError) -> Tensor {
        try CogVideoXKernels.layerNormModulated(x, leadingRows: l, eps: eps, weight: weight, bias: bias,
                                                modulation: m, leading: Self.text, trailing: Self.video)
    }

    /// `x += gate · y` with the video gate on the video rows and the text gate on the text rows.
    func addGated(_ x: inout Tensor, _ y: Tensor, textLength l: Int, modulation m: Tensor) throws(TensorError) {
        try Tensors.addGated(&x, y, gate: .chunks(of: m, leadingRows: l, leading: Self.textGate, trailing: Self.videoGate))
    }
}

/// diffusers' `CogVideoXBlock` on the joint sequence `h = [text; video]` `[B, L + S, D]`:
///
///     h = h + gate₁ ⊙ attn1(norm1(h))        (text rows: enc_gate₁; rotary on the video rows)
///     h = h + gate₂ ⊙ ff(norm2(h))           (one feed-forward for both streams)
///
/// diffusers keeps the two streams apart and concatenates them for the attention and the feed-forward;
/// every row gets the same values either way, so the stack runs on the joint tensor throughout.
struct CogVideoXBlock: Sendable {
    /// The adaptive norms of the attention and the feed-forward branch.
    private let norm1: CogVideoXLayerNormZero, norm2: CogVideoXLayerNormZero
    /// The joint attention, and the feed-forward shared by both streams.
    private let attn1: CogVideoXAttention, ff: FeedForward

    /// Takes every parameter of one block's scope (`transformer_blocks.<i>`).
    init(_ w: WeightScope, configuration c: CogVideoXConfiguration) {
        let d = c.innerDim
        norm1 = CogVideoXLayerNormZero(w["norm1"], conditioningDim: c.timeEmbedDim, dim: d,
                                       affine: c.normElementwiseAffine, eps: c.normEps)
        attn1 = CogVideoXAttention(w["attn1"], dim: d, heads: c.numAttentionHeads, headDim: c.attentionHeadDim,
                                   bias: c.attentionBias)
        norm2 = CogVideoXLayerNormZero(w["norm2"], conditioningDim: c.timeEmbedDim, dim: d,
                                       affine: c.normElementwiseAffine, eps: c.normEps)
        ff = FeedForward(w["ff"], dim: d, inner: 4 * d, activation: c.feedForwardActivation ?? .gelu(.tanh))
    }

    /// Runs the block on the joint sequence `h` with `silu(emb)` `[B, time_embed_dim]`.
    func callAsFunction(
        _ h: inout Tensor, textLength l: Int, activatedEmb: Tensor, rope: (cos: Tensor, sin: Tensor)?
    ) throws(TensorError) {
        let m1 = try norm1.modulation(activatedEmb)
        let a = try attn1(norm1.normalized(h, textLength: l, modulation: m1), textLength: l, rope: rope)
        try norm1.addGated(&h, a, textLength: l, modulation: m1)
        let m2 = try norm2.modulation(activatedEmb)
        let f = try ff(norm2.normalized(h, textLength: l, modulation: m2))
        try norm2.addGated(&h, f, textLength: l, modulation: m2)
    }
}

/// diffusers' `Attention` with `CogVideoXAttnProcessor2_0` on the joint `[text; video]` sequence: one
/// set of q/k/v projections for both streams (run as one sgemm), a LayerNorm over each head of q and k
/// (learned scale and bias, ε = 1e-6), the rotary embedding on the video rows of q and k only,
/// scaled-dot-product attention over all tokens, and `to_out.0`.
private struct CogVideoXAttention: Sendable {
    /// `to_q`, `to_k`, `to_v` stacked into one `[3D, D]` projection (biases when `attention_bias`).
    let qkv: Linear
    /// `to_out.0` (always with a bias).
    let toOut: Linear
    /// `norm_q` weight and bias `[Dh]`.
    let normQ: (weight: Tensor, bias: Tensor)
    /// `norm_k` weight and bias `[Dh]`.
    let normK: (weight: Tensor, bias: Tensor)
    /// Attention heads.
    let heads: Int
    /// The q/k LayerNorm epsilon (fixed by `CogVideoXBlock`).
    static let eps: Float = 1e-6

    /// Takes `to_q`, `to_k`, `to_v`, `to_out.0`, `norm_q`, `norm_k` of the scope (`attn1`).
    init(_ w: WeightScope, dim: Int, heads: Int, headDim: Int, bias: Bool) {
        qkv = Linear.stacking(["to_q", "to_k", "to_v"].map { Linear(w[$0], in: dim, out: dim, bias: bias) })
        toOut = Linear(w["to_out.0"], in: dim, out: dim)
        normQ = (w["norm_q"].tensor("weight", shape: [headDim]), w["norm_q"].tensor("bias", shape: [headDim]))
        normK = (w["norm_k"].tensor("weight", shape: [headDim]), w["norm_k"].tensor("bias", shape: [headDim]))
        self.heads = heads
    }

    /// Attends the joint sequence `x` `[B, L + S, D]` (text first, `textLength` = L) with the video
    /// rotary tables `[S, Dh]` (or none); returns `[B, L + S, D]` after `to_out.0`.
    func callAsFunction(
        _ x: Tensor, textLength: Int, rope: (cos: Tensor, sin: Tensor)?
    ) throws(TensorError) -> Tensor {
        let (q, k, v) = try CogVideoXKernels.splitQKV(qkv(x), heads: heads, leadingRows: textLength,
                                                       normQ: normQ, normK: normK, eps: Self.eps, rope: rope)
        return try toOut(attention(query: AttentionOperand(q), key: AttentionOperand(k), value: v, width: q.shape[2],
                                   heads: heads, precision: toOut.weight.precision))
    }
}

// MARK: - Output head

extension CogVideoXTransformer {
    /// `norm_final`, `norm_out` (LayerNorm modulated by `emb`), `proj_out`, and unpatchify to
    /// `[B, F, out_channels, H, W]`.
    public func outputHead(_ state: CogVideoXState) throws(TensorError) -> Tensor {
        let c = configuration
        let v = try layerNorm(state.video, weight: normFinal.weight, bias: normFinal.bias, eps: c.normEps)
        let m = try normOutLinear.fewRows(silu(state.emb))
        let chunks = CogVideoXKernels.Chunks(shift: 0, scale: 1)
        let n = try CogVideoXKernels.layerNormModulated(v, leadingRows: 0, eps: c.normEps, weight: normOutNorm.weight,
                                                        bias: normOutNorm.bias, modulation: m, leading: chunks, trailing: chunks)
        let s = state.latentShape
        let out = try Patches.unpatchify3D(projOut(n), grid: (s[1], s[3], s[4]),
                                           patch: (c.temporalPatch, c.patchSize, c.patchSize), order: .channelsFirst)
        return try out.permuted([0, 2, 1, 3, 4])
    }
}
