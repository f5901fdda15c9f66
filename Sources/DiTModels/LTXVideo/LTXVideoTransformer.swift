import Foundation
import Tensors

/// The arguments of one `LTXVideoTransformer3DModel.forward` call.
public struct LTXVideoInput: LatentTimestepInput, Sendable {
    /// Packed latent tokens `[B, S, in_channels]` (S = F·H·W of the patched latent).
    public var hiddenStates: Tensor
    /// Text-encoder features `[B, L, caption_channels]`.
    public var encoderHiddenStates: Tensor
    /// The timestep on the 0…1000 scale: one per sample (`[B]`, `[B, 1]`) or one per token (`[B, S]`,
    /// as LTX-Video 0.9.5+ conditioning passes; any shape with B·S values, which diffusers flattens).
    public var timestep: Tensor
    /// The caption mask `[B, L]` (1 = attend, 0 = padding; diffusers turns it into the additive bias
    /// `(1 − mask)·−10000`), a ready additive bias `[B, 1, L]` or `[B, S, L]`, or nil for none.
    public var encoderAttentionMask: Tensor?
    /// The latent grid (frames, height, width) of the rotary embedding; required without ``videoCoords``.
    public var numFrames: Int?
    public var height: Int?
    public var width: Int?
    /// `rope_interpolation_scale` (frames, height, width), or nil for unscaled grid indices.
    public var ropeInterpolationScale: [Float]?
    /// Explicit rotary coordinates `[B, 3, S]` (or `[1, 3, S]`), which replace the grid when given.
    public var videoCoords: Tensor?

    /// Bundles the arguments (shapes as documented on each property).
    public init(hiddenStates: Tensor, encoderHiddenStates: Tensor, timestep: Tensor, encoderAttentionMask: Tensor?,
                numFrames: Int? = nil, height: Int? = nil, width: Int? = nil, ropeInterpolationScale: [Float]? = nil,
                videoCoords: Tensor? = nil) {
        self.hiddenStates = hiddenStates
        self.encoderHiddenStates = encoderHiddenStates
        self.timestep = timestep
        self.encoderAttentionMask = encoderAttentionMask
        self.numFrames = numFrames
        self.height = height
        self.width = width
        self.ropeInterpolationScale = ropeInterpolationScale
        self.videoCoords = videoCoords
    }
}

/// Everything computed before the block stack for one call, and the video tokens as they go through it.
public struct LTXVideoState: Sendable {
    /// The video tokens `[B, S, D]`: `proj_in(hidden_states)` = h_in after ``LTXVideoTransformer/prepare(_:)``;
    /// after ``LTXVideoTransformer/runBlocks(_:)`` the block-stack output through the output norm and
    /// its modulation (TeaCache's cached span ends there for LTX-Video).
    public var tokens: Tensor
    /// `embedded_timestep` `[B, T, D]` (the output modulation's input).
    public var embeddedTimestep: Tensor
    /// What every block reads.
    var blocks: LTXVideoBlockContext
}

/// diffusers 0.42.1 `LTXVideoTransformer3DModel` (LTX-Video 0.9.x) on the CPU in float32.
///
/// The forward is split the way TeaCache4LTX-Video needs it: ``prepare(_:)`` (`proj_in`, the
/// adaLN-single time embedding, the caption projection, the mask bias and the rotary tables),
/// ``modulatedInput(_:)`` (block 0's `norm1(h)·(1 + scale_msa) + shift_msa`), ``runBlocks(_:)`` (every
/// block, then `norm_out` with the output `scale_shift_table` modulation — the reference's residual
/// includes them) and ``outputHead(_:)`` (`proj_out` only). ``callAsFunction(_:)`` chains them.
///
/// Per-token timesteps (`timestep` `[B, S]`) are supported as diffusers supports them: the time
/// embedding runs per token and every modulation is per token.
public struct LTXVideoTransformer: Sendable {
    /// The validated configuration.
    public let configuration: LTXVideoConfiguration
    /// The memory a forward may plan to use: ``prepare(_:)`` estimates the activations of the input shapes
    /// (``LTXVideoConfiguration/activationBytesEstimate(batch:videoTokens:textTokens:)``) and refuses inputs
    /// beyond it with `TensorError.memoryBudgetExceeded`.
    public var memoryBudget = MemoryBudget.machineDefault
    /// `proj_in`.
    let projIn: Linear
    /// `time_embed` (AdaLayerNormSingle).
    let timeEmbed: LTXVideoTimeEmbedding
    /// `caption_projection`.
    let captionProjection: PixArtAlphaTextProjection
    /// `rope`.
    let rotary: LTXVideoRotaryEmbedding
    /// `transformer_blocks`.
    let blocks: [LTXVideoTransformerBlock]
    /// `[2, D]`: (shift, scale) offsets of the output modulation.
    let scaleShiftTable: Tensor
    /// `proj_out`.
    let projOut: Linear
    /// The ε of `norm_out` (diffusers hard-codes 1e-6).
    public static let outputNormEps: Float = 1e-6

    /// Builds the model, taking every parameter from `weights` (called by ``LTXVideoFamily``'s loading
    /// functions, which check the weights afterwards).
    init(configuration c: LTXVideoConfiguration, weights w: WeightScope) {
        configuration = c
        let d = c.innerDim
        projIn = Linear(w["proj_in"], in: c.inChannels, out: d)
        scaleShiftTable = w["scale_shift_table"].tensor(shape: [2, d])
        timeEmbed = LTXVideoTimeEmbedding(w["time_embed"], dim: d)
        captionProjection = PixArtAlphaTextProjection(w["caption_projection"], in: c.captionChannels, hidden: d)
        rotary = LTXVideoRotaryEmbedding(configuration: c)
        blocks = (0..<c.numLayers).map { LTXVideoTransformerBlock(w["transformer_blocks"][$0], configuration: c) }
        projOut = Linear(w["proj_out"], in: d, out: c.outChannels)
    }

    /// Builds the model from a diffusers state dict (every tensor by parameter name).
    /// - Throws: ``ModelLoadError`` for an invalid configuration or mismatched weights (all listed at once).
    public init(configuration: LTXVideoConfiguration, tensors: [String: Tensor]) throws(ModelLoadError) {
        self = try LTXVideoFamily.load(configuration, tensors: tensors)
    }

    /// Builds the model from the weights at `url`: a safetensors file, a sharded checkpoint's index, or a
    /// diffusers `transformer/` folder (see ``WeightsLocation``).
    public init(configuration: LTXVideoConfiguration, weightsAt url: URL) throws(ModelLoadError) {
        self = try LTXVideoFamily.load(configuration, weightsAt: url)
    }

    /// A model with random weights following the fixtures' scheme (FORMAT.md §6), including the taper
    /// of `time_embed.emb.timestep_embedder.linear_1.weight` for a `steps`-step run on the 0…1000
    /// timestep scale.
    public static func random(configuration: LTXVideoConfiguration, seed: UInt64, steps: Int = 50) throws(ModelLoadError) -> LTXVideoTransformer {
        try LTXVideoFamily.random(configuration, seed: seed, steps: steps)
    }

    /// The model width D.
    public var innerDim: Int { configuration.innerDim }

    // MARK: - Forward parts

    /// `proj_in`, the time embedding, the caption projection, the caption bias and the rotary tables:
    /// everything before the first block.
    /// - Throws: `TensorError` naming the argument that is wrong and what it should be.
    public func prepare(_ input: LTXVideoInput) throws(TensorError) -> LTXVideoState {
        let c = configuration
        func fail(_ reason: String) -> TensorError { .invalidArgument(operation: "LTX-Video forward", reason: reason) }
        let x = input.hiddenStates
        guard x.rank == 3, x.shape[2] == c.inChannels, x.shape[0] > 0, x.shape[1] > 0 else {
            throw fail("hidden_states must be packed tokens [B, S, in_channels = \(c.inChannels)] with B, S > 0, got \(x.shape)")
        }
        let (b, s) = (x.shape[0], x.shape[1])
        let text = input.encoderHiddenStates
        guard text.rank == 3, text.shape[0] == b, text.shape[2] == c.captionChannels else {
            throw fail("encoder_hidden_states must be [B = \(b), L, caption_channels = \(c.captionChannels)], got \(text.shape)")
        }
        let l = text.shape[1]
        try memoryBudget.check("LTX-Video forward of batch \(b), \(s) video + \(l) text tokens",
                               bytes: Double(c.activationBytesEstimate(batch: b, videoTokens: s, textTokens: l)))
        let named: [(String, Tensor?)] = [("hidden_states", x), ("encoder_hidden_states", text),
                                          ("timestep", input.timestep), ("encoder_attention_mask", input.encoderAttentionMask),
                                          ("video_coords", input.videoCoords)]
        for case let (name, t?) in named where !t.isFinite { throw fail("\(name) holds NaN or infinite values") }
        let timesteps = try Self.timestepValues(input.timestep, batch: b, tokens: s)
        let perToken = timesteps.count / b
        let bias = try Self.attentionBias(input.encoderAttentionMask, batch: b, tokens: s, textTokens: l)
        let rope = try rotaryTables(input, batch: b, tokens: s)

        let tokens = try projIn(x)
        let (temb, embedded) = try timeEmbed(timesteps)
        let context = try captionProjection(text)
        return LTXVideoState(
            tokens: tokens, embeddedTimestep: try embedded.reshaped([b, perToken, c.innerDim]),
            blocks: LTXVideoBlockContext(temb: try temb.reshaped([b, perToken, 6 * c.innerDim]), context: context,
                                         attentionBias: bias, rotary: rope))
    }

    /// TeaCache's modulated input: block 0's `norm1(h_in)·(1 + scale_msa) + shift_msa` `[B, S, D]`.
    /// - Throws: when the model has no block (`num_layers = 0`), where the reference has no block 0.
    public func modulatedInput(_ state: LTXVideoState) throws(TensorError) -> Tensor {
        guard let first = blocks.first else {
            throw .invalidArgument(operation: "LTX-Video modulated input",
                                   reason: "the configuration has no transformer block (num_layers = 0)")
        }
        return try first.attentionInput(state.tokens, first.modulation(state.blocks.temb))
    }

    /// Every transformer block, then `norm_out(h)·(1 + scale) + shift` with (shift, scale) from the
    /// output `scale_shift_table + embedded_timestep`, on `state.tokens` in place.
    public func runBlocks(_ state: inout LTXVideoState) throws(TensorError) {
        var h = state.tokens
        for block in blocks { h = try block(h, state.blocks) }
        state.tokens = h
        try applyOutputNorm(&state)
    }

    /// `norm_out(h)·(1 + scale) + shift` with the output `scale_shift_table + embedded_timestep`: the end of
    /// the span TeaCache caches.
    func applyOutputNorm(_ state: inout LTXVideoState) throws(TensorError) {
        let e = state.embeddedTimestep
        let (b, t, d) = (e.shape[0], e.shape[1], e.shape[2])
        let ss = try (scaleShiftTable + e.reshaped([b, t, 1, d])).chunked(2, axis: 2)
        state.tokens = try layerNormModulated(state.tokens, eps: Self.outputNormEps, scale: ss[1].reshaped([b, t, d]),
                                              shift: ss[0].reshaped([b, t, d]))
    }

    /// `proj_out`: `[B, S, out_channels]`.
    public func outputHead(_ state: LTXVideoState) throws(TensorError) -> Tensor {
        try projOut(state.tokens)
    }

    /// The full forward: `output` of diffusers' `forward(..., return_dict=False)[0]`.
    public func callAsFunction(_ input: LTXVideoInput) throws(TensorError) -> Tensor {
        var state = try prepare(input)
        try runBlocks(&state)
        return try outputHead(state)
    }

    // MARK: - Argument handling

    /// The timestep values diffusers embeds (`timestep.flatten()`): B of them (one per sample) or B·S
    /// (one per token).
    static func timestepValues(_ t: Tensor, batch b: Int, tokens s: Int) throws(TensorError) -> [Float] {
        guard t.count == b || t.count == b * s else {
            throw .shapeMismatch(operation: "LTX-Video forward", shapes: [t.shape],
                                 reason: "timestep must hold one value per sample ([B] = [\(b)]) or per token "
                                    + "([B, S] = [\(b), \(s)]); got \(t.count) values")
        }
        return t.scalars
    }

    /// diffusers' caption bias: a `[B, L]` mask becomes `(1 − mask)·−10000` `[B, 1, 1, L]` (every head and
    /// query); a 3-D `[B, 1, L]` or `[B, S, L]` tensor is already a bias and is used as it is.
    static func attentionBias(_ mask: Tensor?, batch b: Int, tokens s: Int, textTokens l: Int) throws(TensorError) -> Tensor? {
        guard let mask else { return nil }
        switch mask.rank {
        case 2:
            guard mask.shape == [b, l] else {
                throw .shapeMismatch(operation: "LTX-Video forward", shapes: [mask.shape],
                                     reason: "encoder_attention_mask must be [B, L] = [\(b), \(l)] (one entry per caption token)")
            }
            return try mask.mapVector { (1 - $0) * -10000 }.reshaped([b, 1, 1, l])
        case 3:
            guard mask.shape[0] == b, mask.shape[1] == 1 || mask.shape[1] == s, mask.shape[2] == l else {
                throw .shapeMismatch(operation: "LTX-Video forward", shapes: [mask.shape],
                                     reason: "a 3-D encoder_attention_mask is an additive bias [B, 1, L] or [B, S, L] = "
                                        + "[\(b), 1 or \(s), \(l)]")
            }
            return try mask.reshaped([b, 1, mask.shape[1], l])
        default:
            throw .shapeMismatch(operation: "LTX-Video forward", shapes: [mask.shape],
                                 reason: "encoder_attention_mask must be a [B, L] mask (or a 3-D additive bias)")
        }
    }

    /// The rotary tables of a call: from `video_coords` when given, else from the grid.
    func rotaryTables(_ input: LTXVideoInput, batch b: Int, tokens s: Int) throws(TensorError) -> LTXVideoRotaryTables {
        func fail(_ reason: String) -> TensorError { .invalidArgument(operation: "LTX-Video forward", reason: reason) }
        if let vc = input.videoCoords {
            guard vc.rank == 3, vc.shape[0] == b || vc.shape[0] == 1, vc.shape[1] == 3, vc.shape[2] == s else {
                throw fail("video_coords must be [B, 3, S] = [\(b), 3, \(s)] (or [1, 3, \(s)]), got \(vc.shape)")
            }
            let t = try rotary.tables(coordinates: rotary.explicitCoordinates(vc), batch: vc.shape[0], tokens: s)
            return LTXVideoRotaryTables(cos: t.cos, sin: t.sin)
        }
        guard let f = input.numFrames, let h = input.height, let w = input.width else {
            throw fail("without video_coords, num_frames, height and width (the latent grid) are required")
        }
        guard f >= 1, h >= 1, w >= 1, Double(f) * Double(h) * Double(w) == Double(s) else {
            throw fail("num_frames · height · width = \(f) · \(h) · \(w) must equal the \(s) tokens of hidden_states")
        }
        var scale: [Float]? = nil
        if let r = input.ropeInterpolationScale {
            guard r.count == 3, r.allSatisfy(\.isFinite) else {
                throw fail("rope_interpolation_scale must be three finite numbers (frames, height, width), got \(r)")
            }
            scale = r
        }
        let t = try rotary.tables(coordinates: rotary.gridCoordinates(frames: f, height: h, width: w, scale: scale),
                                  batch: 1, tokens: s)
        return LTXVideoRotaryTables(cos: t.cos, sin: t.sin)
    }
}
