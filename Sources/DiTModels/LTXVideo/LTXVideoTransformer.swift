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

/// What every block of one forward call shares.
struct LTXVideoBlockContext: Sendable {
    /// The block modulation input `temb` `[B, T, 6D]`, T = 1 (one timestep per sample) or S (per token).
    var temb: Tensor
    /// The projected caption `[B, L, D]`.
    var context: Tensor
    /// The caption attention bias `[B, 1, 1, L]` or `[B, 1, Sq, L]`, or nil (no mask).
    var attentionBias: Tensor?
    /// The rotary tables.
    var rotary: LTXVideoRotaryTables
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
    let timeEmbed: AdaLayerNormSingle
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
    static let outputNormEps: Float = 1e-6

    /// Builds the model, taking every parameter from `weights` (called by ``LTXVideoFamily``'s loading
    /// functions, which check the weights afterwards).
    init(configuration c: LTXVideoConfiguration, weights w: WeightScope) {
        configuration = c
        let d = c.innerDim
        projIn = Linear(w["proj_in"], in: c.inChannels, out: d)
        scaleShiftTable = w["scale_shift_table"].tensor(shape: [2, d])
        timeEmbed = AdaLayerNormSingle(w["time_embed"], dim: d)
        captionProjection = PixArtAlphaTextProjection(w["caption_projection"], in: c.captionChannels, hidden: d)
        rotary = LTXVideoRotaryEmbedding(configuration: c)
        blocks = (0..<c.numLayers).map { LTXVideoTransformerBlock(w["transformer_blocks"][$0], configuration: c) }
        projOut = Linear(w["proj_out"], in: d, out: c.outChannels)
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
        for index in blocks.indices { try runBlock(index, &state) }
        try applyOutputNorm(&state)
    }

    /// Transformer block `index` on `state.tokens` in place: one step of ``runBlocks(_:)``, and what
    /// First-Block Cache runs block by block.
    /// - Throws: when `index` is outside `0 ..< num_layers`.
    public func runBlock(_ index: Int, _ state: inout LTXVideoState) throws(TensorError) {
        guard blocks.indices.contains(index) else {
            throw .invalidArgument(operation: "LTX-Video block", reason: "block \(index) is outside 0..<\(blocks.count)")
        }
        state.tokens = try blocks[index](state.tokens, state.blocks)
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
    private static func timestepValues(_ t: Tensor, batch b: Int, tokens s: Int) throws(TensorError) -> [Float] {
        guard t.count == b || t.count == b * s else {
            throw .shapeMismatch(operation: "LTX-Video forward", shapes: [t.shape],
                                 reason: "timestep must hold one value per sample ([B] = [\(b)]) or per token "
                                    + "([B, S] = [\(b), \(s)]); got \(t.count) values")
        }
        return t.scalars
    }

    /// diffusers' caption bias: a `[B, L]` mask becomes `(1 − mask)·−10000` `[B, 1, 1, L]` (every head and
    /// query); a 3-D `[B, 1, L]` or `[B, S, L]` tensor is already a bias and is used as it is.
    private static func attentionBias(_ mask: Tensor?, batch b: Int, tokens s: Int, textTokens l: Int) throws(TensorError) -> Tensor? {
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
    private func rotaryTables(_ input: LTXVideoInput, batch b: Int, tokens s: Int) throws(TensorError) -> LTXVideoRotaryTables {
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

// MARK: - Embeddings

/// LTX-Video's rotary position embedding (diffusers `LTXVideoRotaryPosEmbed`) over the full model width.
///
/// Each token has three coordinates (frame, row, column), either from the latent grid —
/// `index · rope_interpolation_scale[a] · patch / base[a]` with bases (20, 2048, 2048), or the raw
/// index without a scale — or from explicit `video_coords` `[B, 3, S]` divided by the bases. With
/// `K = ⌊D/6⌋` frequencies `f_k = (θ^linspace(0, 1, K)_k) · π/2`, the angle of frequency k on axis a is
/// `f_k · (2·coordinate_a − 1)`; channel pairs are laid out frequency-major, axis-minor and interleaved
/// (`(x₀, x₁)` share one angle), after `D mod 6` leading channels that are not rotated (cos 1, sin 0).
///
/// Precision: diffusers computes all of this in float32, and so does this port, operation for
/// operation (torch's fused `linspace` halves, the grid scaling left to right, `2·g − 1`, the products);
/// only `θ^x` is evaluated in Double and rounded (torch's vectorised float `pow` is within 1 ulp of it;
/// the measured effect on a 512-wide model's output is a relative L2 of 1.6e-7), and cos/sin are taken
/// in Double from the float32 angle.
struct LTXVideoRotaryEmbedding: Sendable {
    /// The rotated width (the model width D).
    let dim: Int
    /// `patch_size_t` and `patch_size` of the configuration.
    let patchSizeT: Int
    let patchSize: Int
    /// diffusers' `base_num_frames`, `base_height`, `base_width`.
    static let bases: [Float] = [20, 2048, 2048]
    /// The frequency base θ.
    static let theta: Double = 10000

    /// The embedding of a configuration.
    init(configuration c: LTXVideoConfiguration) {
        dim = c.innerDim
        patchSizeT = c.patchSizeT
        patchSize = c.patchSize
    }

    /// `f_k = float32(θ^linspace(0, 1, K)_k) · float32(π/2)` for `K = ⌊D/6⌋`, with torch's float32
    /// `linspace` (fused multiply-add from the start for the first half, from the end for the second).
    var frequencies: [Float] {
        let k = dim / 6
        guard k > 0 else { return [] }
        let halfPi = Float(Double.pi / 2)
        let step: Float = k > 1 ? 1 / Float(k - 1) : 0
        return (0..<k).map { i in
            let x: Float
            if k == 1 { x = 0 } else if i < k / 2 { x = Float(Double(step) * Double(i)) } else {
                x = Float(1 - Double(step) * Double(k - 1 - i))
            }
            return Float(Foundation.pow(Self.theta, Double(x))) * halfPi
        }
    }

    /// The grid coordinates `[F·H·W, 3]` of diffusers' `_prepare_video_coords`, tokens in (frame, row,
    /// column) raster order, scaled by `scale` (`rope_interpolation_scale`) when it is given.
    func gridCoordinates(frames f: Int, height h: Int, width w: Int, scale: [Float]?) -> [Float] {
        var out = [Float]()
        out.reserveCapacity(f * h * w * 3)
        let patch = [Float(patchSizeT), Float(patchSize), Float(patchSize)]
        for i in 0..<f {
            for j in 0..<h {
                for k in 0..<w {
                    var g = [Float(i), Float(j), Float(k)]
                    if let scale {
                        for a in 0..<3 { g[a] = ((g[a] * scale[a]) * patch[a]) / Self.bases[a] }
                    }
                    out += g
                }
            }
        }
        return out
    }

    /// The normalised coordinates `[B', S, 3]` of explicit `video_coords` `[B', 3, S]`: each axis divided
    /// by its base.
    func explicitCoordinates(_ videoCoords: Tensor) -> [Float] {
        let (b, s) = (videoCoords.shape[0], videoCoords.shape[2])
        let v = videoCoords.scalars
        var out = [Float](repeating: 0, count: b * s * 3)
        for bi in 0..<b {
            for a in 0..<3 {
                for t in 0..<s { out[(bi * s + t) * 3 + a] = v[(bi * 3 + a) * s + t] / Self.bases[a] }
            }
        }
        return out
    }

    /// cos/sin tables `[B', S, D]` for coordinates `[B', S, 3]` (flattened).
    ///
    /// Coordinates repeat a lot along each axis (a grid has only F, H and W distinct values), so the
    /// angles' cos/sin are computed once per distinct value of each axis and reused.
    func tables(coordinates: [Float], batch b: Int, tokens s: Int) throws(TensorError) -> (cos: Tensor, sin: Tensor) {
        let d = dim, freqs = frequencies, pad = d % 6, k = freqs.count
        var cosT = [Float](repeating: 0, count: b * s * d)
        var sinT = [Float](repeating: 0, count: b * s * d)
        var memo: [[UInt32: Int]] = [[:], [:], [:]]
        var values: [[(c: Float, s: Float)]] = [[], [], []]
        for r in 0..<(b * s) {
            let base = r * d
            for c in 0..<pad { cosT[base + c] = 1 }
            for a in 0..<3 {
                let g = coordinates[r * 3 + a]
                let slot: Int
                if let known = memo[a][g.bitPattern] {
                    slot = known
                } else {
                    slot = values[a].count / max(k, 1)
                    memo[a][g.bitPattern] = slot
                    let centred = g * 2 - 1
                    for f in freqs {
                        let angle = Double(f * centred)
                        values[a].append((Float(Foundation.cos(angle)), Float(Foundation.sin(angle))))
                    }
                }
                for i in 0..<k {
                    let (cv, sv) = values[a][slot * k + i]
                    let ch = base + pad + 2 * (i * 3 + a)
                    cosT[ch] = cv; cosT[ch + 1] = cv
                    sinT[ch] = sv; sinT[ch + 1] = sv
                }
            }
        }
        return (try Tensor(shape: [b, s, d], scalars: cosT), try Tensor(shape: [b, s, d], scalars: sinT))
    }
}

/// Rotary tables for the full model width: `[B', S, D]` each, with `B'` 1 (shared by the batch, the
/// grid case) or B (explicit per-sample `video_coords`).
struct LTXVideoRotaryTables: Sendable {
    /// `[B', S, D]`.
    var cos: Tensor
    /// `[B', S, D]`.
    var sin: Tensor

    /// The tables of the batch elements `indices` (shared tables stay shared).
    func selecting(batch indices: [Int]) throws(TensorError) -> LTXVideoRotaryTables {
        guard cos.shape[0] > 1 else { return self }
        return LTXVideoRotaryTables(cos: try cos.gatheringRows(indices), sin: try sin.gatheringRows(indices))
    }

    /// `x` `[B, S, D]` rotated pairwise over its whole width (diffusers' LTX `apply_rotary_emb`:
    /// `x·cos + rotate(x)·sin` with `rotate(x₀, x₁) = (−x₁, x₀)`), before the heads are split.
    func apply(_ x: Tensor) throws(TensorError) -> Tensor {
        let (bt, s, d) = (cos.shape[0], cos.shape[1], cos.shape[2])
        if bt == 1 {
            return try RotaryEmbedding.apply(x, cos: cos.reshaped([s, d]), sin: sin.reshaped([s, d]), heads: 1)
        }
        guard x.rank == 3, x.shape[0] == bt else {
            throw .shapeMismatch(operation: "LTX rotary embedding", shapes: [x.shape, cos.shape],
                                 reason: "per-sample tables need one table per batch element")
        }
        var parts: [Tensor] = []
        for b in 0..<bt {
            parts.append(try RotaryEmbedding.apply(x.slice(axis: 0, b..<(b + 1)),
                                                   cos: cos.slice(axis: 0, b..<(b + 1)).reshaped([s, d]),
                                                   sin: sin.slice(axis: 0, b..<(b + 1)).reshaped([s, d]), heads: 1))
        }
        return try Tensor.concatenate(parts, axis: 0)
    }
}

// MARK: - Transformer block

/// The six modulation vectors of one block, each `[B, T, D]`: `scale_shift_table + temb` unbound in
/// diffusers' order.
private struct LTXVideoBlockModulation: Sendable {
    var shiftMSA: Tensor, scaleMSA: Tensor, gateMSA: Tensor
    var shiftMLP: Tensor, scaleMLP: Tensor, gateMLP: Tensor
}

/// An RMS norm over the last axis without a weight (`elementwise_affine = false`) or with a learned
/// scale, followed by the block's `·(1 + scale) + shift` modulation.
private struct LTXVideoModulatedRMSNorm: Sendable {
    /// `[D]`, or nil without affine parameters.
    let weight: Tensor?
    let eps: Float

    func callAsFunction(_ x: Tensor, scale: Tensor, shift: Tensor) throws(TensorError) -> Tensor {
        if let weight {
            return try modulate(rmsNorm(x, weight: weight, eps: eps), scale: scale, shift: shift)
        }
        return try rmsNormModulated(x, eps: eps, scale: scale, shift: shift)
    }
}

/// diffusers' `LTXVideoTransformerBlock` (float32 throughout):
///
///     (shift, scale, gate, shift_mlp, scale_mlp, gate_mlp) = unbind(scale_shift_table + temb)
///     h = h + attn1(norm1(h)·(1 + scale) + shift) · gate
///     h = h + attn2(h, caption)                              (no norm before the cross-attention)
///     h = h + ff(norm2(h)·(1 + scale_mlp) + shift_mlp) · gate_mlp
///
/// `norm1`/`norm2` are diffusers' `RMSNorm` (`norm_eps`, a weight only with `norm_elementwise_affine`).
struct LTXVideoTransformerBlock: Sendable {
    private let attn1: LTXVideoAttention
    private let attn2: LTXVideoAttention
    private let norm1: LTXVideoModulatedRMSNorm
    private let norm2: LTXVideoModulatedRMSNorm
    private let ff: FeedForward
    /// `[6, D]`.
    let scaleShiftTable: Tensor
    private let dim: Int

    /// Takes every parameter of one block's scope (`transformer_blocks.<i>`).
    init(_ w: WeightScope, configuration c: LTXVideoConfiguration) {
        let d = c.innerDim
        dim = d
        let affine = c.normElementwiseAffine
        norm1 = LTXVideoModulatedRMSNorm(weight: affine ? w["norm1"].tensor("weight", shape: [d]) : nil, eps: c.normEps)
        attn1 = LTXVideoAttention(w["attn1"], kind: .selfAttention, configuration: c)
        norm2 = LTXVideoModulatedRMSNorm(weight: affine ? w["norm2"].tensor("weight", shape: [d]) : nil, eps: c.normEps)
        attn2 = LTXVideoAttention(w["attn2"], kind: .crossAttention, configuration: c)
        ff = FeedForward(w["ff"], dim: c.innerDim, inner: c.ffnDim, activation: c.feedForwardActivation ?? .gelu(.tanh))
        scaleShiftTable = w["scale_shift_table"].tensor(shape: [6, d])
    }

    /// `scale_shift_table[None, None] + temb.reshape(B, T, 6, D)`, unbound over the 6.
    fileprivate func modulation(_ temb: Tensor) throws(TensorError) -> LTXVideoBlockModulation {
        guard temb.rank == 3, temb.shape[2] == 6 * dim else {
            throw .shapeMismatch(operation: "LTX block", shapes: [temb.shape], reason: "temb must be [B, T, 6·D = \(6 * dim)]")
        }
        let (b, t) = (temb.shape[0], temb.shape[1])
        let ada = try scaleShiftTable + temb.reshaped([b, t, 6, dim])
        let m = try ada.chunked(6, axis: 2).map { c throws(TensorError) in try c.reshaped([b, t, dim]) }
        return LTXVideoBlockModulation(shiftMSA: m[0], scaleMSA: m[1], gateMSA: m[2],
                                       shiftMLP: m[3], scaleMLP: m[4], gateMLP: m[5])
    }

    /// `norm1(h)·(1 + scale_msa) + shift_msa`: the self-attention input (block 0's is TeaCache's
    /// modulated input).
    fileprivate func attentionInput(_ h: Tensor, _ m: LTXVideoBlockModulation) throws(TensorError) -> Tensor {
        try norm1(h, scale: m.scaleMSA, shift: m.shiftMSA)
    }

    /// Runs the block on `h` `[B, S, D]`.
    /// A gate `[B, 1, D]` (per sample) or `[B, S, D]` (per token, a per-token timestep) as the rows of
    /// a gated residual.
    private static func rowGate(_ g: Tensor) -> ResidualGate { g.shape[1] == 1 ? .perSample(g) : .perToken(g) }

    func callAsFunction(_ h: Tensor, _ ctx: LTXVideoBlockContext) throws(TensorError) -> Tensor {
        let m = try modulation(ctx.temb)
        var h = h
        h = try addingGated(h, attn1.selfAttention(attentionInput(h, m), rotary: ctx.rotary), gate: Self.rowGate(m.gateMSA))
        var cross = try attn2.crossAttention(h, context: ctx.context, bias: ctx.attentionBias)
        try cross.add(h)
        h = cross
        h = try addingGated(h, ff(norm2(h, scale: m.scaleMLP, shift: m.shiftMLP)), gate: Self.rowGate(m.gateMLP))
        return h
    }
}

/// Linear layers reading the same input, stacked into one sgemm (with or without biases, as the
/// configuration says); the parts are read from the product's column blocks.
private struct LTXVideoStackedLinear: Sendable {
    let stacked: Linear
    let widths: [Int]

    init(_ scopes: [WeightScope], in inFeatures: Int, out width: Int, bias: Bool) {
        stacked = Linear.stacking(scopes.map { Linear($0, in: inFeatures, out: width, bias: bias) })
        widths = Array(repeating: width, count: scopes.count)
    }
}

/// diffusers' `LTXAttention` with `LTXVideoAttnProcessor`: q/k/v projections (biases per
/// `attention_bias`), `torch.nn.RMSNorm` of q and k over all heads together (learned scale, ε = 1e-5,
/// fixed by diffusers), the rotary embedding of q and k in self-attention, scaled-dot-product attention
/// with an optional additive bias, and `to_out.0` (bias per `attention_out_bias`).
///
/// Self-attention runs q, k and v as one sgemm; cross-attention runs k and v (which read the caption)
/// as one.
private struct LTXVideoAttention: Sendable {
    /// Which input the keys and values read.
    enum Kind: Sendable { case selfAttention, crossAttention }

    /// The q/k/v (self) or k/v (cross) projections, stacked.
    let stacked: LTXVideoStackedLinear
    /// `to_q` of a cross-attention (nil for self-attention, whose q is stacked).
    let toQ: Linear?
    /// `to_out.0`.
    let toOut: Linear
    /// `[D]` scales of the query and key RMS norms.
    let normQ: Tensor
    let normK: Tensor
    let heads: Int
    let kind: Kind
    /// The ε of `norm_q` / `norm_k` (diffusers hard-codes 1e-5).
    static let qkNormEps: Float = 1e-5

    /// Takes `to_q`, `to_k`, `to_v`, `to_out.0`, `norm_q`, `norm_k` of the scope.
    init(_ w: WeightScope, kind: Kind, configuration c: LTXVideoConfiguration) {
        let d = c.innerDim
        switch kind {
        case .selfAttention:
            stacked = LTXVideoStackedLinear([w["to_q"], w["to_k"], w["to_v"]], in: d, out: d, bias: c.attentionBias)
            toQ = nil
        case .crossAttention:
            toQ = Linear(w["to_q"], in: d, out: d, bias: c.attentionBias)
            stacked = LTXVideoStackedLinear([w["to_k"], w["to_v"]], in: c.crossAttentionDim, out: d, bias: c.attentionBias)
        }
        normQ = w["norm_q"].tensor("weight", shape: [d])
        normK = w["norm_k"].tensor("weight", shape: [d])
        toOut = Linear(w["to_out.0"], in: d, out: d, bias: c.attentionOutBias)
        heads = c.numAttentionHeads
        self.kind = kind
    }

    /// Self-attention of `x` `[B, S, D]` with the rotary tables. q and k are normalised and rotated in
    /// one pass each, straight from the stacked q/k/v product.
    func selfAttention(_ x: Tensor, rotary: LTXVideoRotaryTables) throws(TensorError) -> Tensor {
        let p = try stacked.stacked(x)
        let q = try LTXVideoKernels.normalizedColumns(p, part: 0, parts: 3, weight: normQ, eps: Self.qkNormEps, rotary: rotary)
        let k = try LTXVideoKernels.normalizedColumns(p, part: 1, parts: 3, weight: normK, eps: Self.qkNormEps, rotary: rotary)
        let v = LTXVideoKernels.columns(p, part: 2, parts: 3)
        return try toOut(attention(query: q, key: k, value: v, heads: heads, precision: toOut.weight.precision))
    }

    /// Cross-attention of `x` `[B, S, D]` to `context` `[B, L, D]` with an optional additive bias
    /// broadcastable to `[B, H, S, L]`.
    func crossAttention(_ x: Tensor, context: Tensor, bias: Tensor?) throws(TensorError) -> Tensor {
        guard let toQ else {
            throw .invalidArgument(operation: "LTX attention", reason: "a self-attention layer cannot attend to a context")
        }
        let q = try rmsNorm(toQ(x), weight: normQ, eps: Self.qkNormEps)
        let kv = try stacked.stacked(context)
        let k = try LTXVideoKernels.normalizedColumns(kv, part: 0, parts: 2, weight: normK, eps: Self.qkNormEps, rotary: nil)
        let v = LTXVideoKernels.columns(kv, part: 1, parts: 2)
        return try toOut(attention(query: q, key: k, value: v, heads: heads, mask: bias.map { .additive($0) },
                                   precision: toOut.weight.precision))
    }
}

// MARK: - Output head

extension LTXVideoTransformer {
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

}
