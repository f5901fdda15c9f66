import Foundation
import Tensors

/// The configuration of diffusers' `CogVideoXTransformer3DModel` (diffusers 0.42.1), decoded from
/// `config.json`: CogVideoX 1.0 (2B with a sincos positional embedding, 5B with rotary embeddings, 5B-I2V
/// with learned positional embeddings; per-frame 2-D patches) and CogVideoX 1.5 (rotary, `patch_size_t`,
/// optional `ofs` embedding).
///
/// Field names and defaults are the diffusers constructor's; every field that changes a shape or the
/// computation is honoured, and ``validate()`` rejects with
/// ``ModelLoadError/unsupportedConfig(field:value:reason:)`` every value diffusers cannot run (it would
/// raise at construction or at every forward) or this port does not implement. Keys starting with `_`
/// and unknown keys are ignored, as diffusers ignores them.
///
/// Behaviour that follows diffusers rather than the field names:
/// - `patch_bias` only affects the 1.0 `Conv2d` patch projection; the 1.5 projection (`patch_size_t`
///   set) is an `nn.Linear`, which always has a bias.
/// - `ofs_embed_dim` of 0 means none (`if ofs_embed_dim:`).
/// - `dropout` has no effect at inference.
/// - The positional table (`use_rotary_positional_embeddings` false, or learned) is the joint
///   `[max_text_seq_length + patches, D]` table, so such models need exactly `max_text_seq_length` text
///   tokens, and cannot have a temporal patch of 2 or more (their table has one row per latent frame).
public struct CogVideoXConfiguration: DiTConfiguration {
    /// The diffusers class names this configuration builds.
    public static let classNames = ["CogVideoXTransformer3DModel"]

    /// Attention heads per block.
    public var numAttentionHeads: Int
    /// Channels per head; the width is `numAttentionHeads · attentionHeadDim`.
    public var attentionHeadDim: Int
    /// Latent channels in.
    public var inChannels: Int
    /// Latent channels out (`null` is rejected: diffusers multiplies by it).
    public var outChannels: Int?
    /// Whether the sinusoidal timestep features put cosines first.
    public var flipSinToCos: Bool
    /// The sinusoid's `downscale_freq_shift`.
    public var freqShift: Double
    /// Width of the time embedding `emb` (the adaptive norms' conditioning).
    public var timeEmbedDim: Int
    /// Width of the `ofs` embedding (CogVideoX1.5 I2V), or nil (0 also means none).
    public var ofsEmbedDim: Int?
    /// Width of the text-encoder features.
    public var textEmbedDim: Int
    /// Number of transformer blocks.
    public var numLayers: Int
    /// Dropout probability (no effect at inference; must be in 0…1 as `nn.Dropout` requires).
    public var dropout: Double
    /// Whether the q/k/v projections have biases.
    public var attentionBias: Bool
    /// The latent width the positional table is built for (also the rotary base width).
    public var sampleWidth: Int
    /// The latent height the positional table is built for (also the rotary base height).
    public var sampleHeight: Int
    /// Pixel frames of the positional table: `(sample_frames − 1) / temporal_compression_ratio + 1` latent frames.
    public var sampleFrames: Int
    /// The spatial patch size.
    public var patchSize: Int
    /// The temporal patch size (CogVideoX 1.5), or nil for per-frame 2-D patches (1.0).
    public var patchSizeT: Int?
    /// Pixel frames per latent frame (for the positional table's frame count).
    public var temporalCompressionRatio: Int
    /// Text tokens of the joint positional table.
    public var maxTextSeqLength: Int
    /// The feed-forward activation (diffusers `FeedForward` names).
    public var activationFn: String
    /// The time-embedding MLP's activation (`silu`, `swish`, `mish`, `gelu`, `relu`).
    public var timestepActivationFn: String
    /// Whether the block norms, `norm_final` and `norm_out` have learned scale and bias.
    public var normElementwiseAffine: Bool
    /// Epsilon of those norms.
    public var normEps: Float
    /// Spatial position divisor of the sincos table.
    public var spatialInterpolationScale: Double
    /// Temporal position divisor of the sincos table.
    public var temporalInterpolationScale: Double
    /// Rotary embeddings on the video tokens (5B, 1.5) instead of the sincos table (2B).
    public var useRotaryPositionalEmbeddings: Bool
    /// A stored (learned) positional table `patch_embed.pos_embedding` (5B-I2V; needs rotary).
    public var useLearnedPositionalEmbeddings: Bool
    /// Whether the 1.0 `Conv2d` patch projection has a bias.
    public var patchBias: Bool

    /// A configuration; the defaults are diffusers' constructor defaults (CogVideoX-2b sizes).
    public init(
        numAttentionHeads: Int = 30, attentionHeadDim: Int = 64, inChannels: Int = 16, outChannels: Int? = 16,
        flipSinToCos: Bool = true, freqShift: Double = 0, timeEmbedDim: Int = 512, ofsEmbedDim: Int? = nil,
        textEmbedDim: Int = 4096, numLayers: Int = 30, dropout: Double = 0, attentionBias: Bool = true,
        sampleWidth: Int = 90, sampleHeight: Int = 60, sampleFrames: Int = 49, patchSize: Int = 2,
        patchSizeT: Int? = nil, temporalCompressionRatio: Int = 4, maxTextSeqLength: Int = 226,
        activationFn: String = "gelu-approximate", timestepActivationFn: String = "silu",
        normElementwiseAffine: Bool = true, normEps: Float = 1e-5, spatialInterpolationScale: Double = 1.875,
        temporalInterpolationScale: Double = 1, useRotaryPositionalEmbeddings: Bool = false,
        useLearnedPositionalEmbeddings: Bool = false, patchBias: Bool = true
    ) {
        self.numAttentionHeads = numAttentionHeads
        self.attentionHeadDim = attentionHeadDim
        self.inChannels = inChannels
        self.outChannels = outChannels
        self.flipSinToCos = flipSinToCos
        self.freqShift = freqShift
        self.timeEmbedDim = timeEmbedDim
        self.ofsEmbedDim = ofsEmbedDim == 0 ? nil : ofsEmbedDim
        self.textEmbedDim = textEmbedDim
        self.numLayers = numLayers
        self.dropout = dropout
        self.attentionBias = attentionBias
        self.sampleWidth = sampleWidth
        self.sampleHeight = sampleHeight
        self.sampleFrames = sampleFrames
        self.patchSize = patchSize
        self.patchSizeT = patchSizeT
        self.temporalCompressionRatio = temporalCompressionRatio
        self.maxTextSeqLength = maxTextSeqLength
        self.activationFn = activationFn
        self.timestepActivationFn = timestepActivationFn
        self.normElementwiseAffine = normElementwiseAffine
        self.normEps = normEps
        self.spatialInterpolationScale = spatialInterpolationScale
        self.temporalInterpolationScale = temporalInterpolationScale
        self.useRotaryPositionalEmbeddings = useRotaryPositionalEmbeddings
        self.useLearnedPositionalEmbeddings = useLearnedPositionalEmbeddings
        self.patchBias = patchBias
    }

    // MARK: Derived values

    /// The model width `numAttentionHeads · attentionHeadDim`.
    public var innerDim: Int { numAttentionHeads * attentionHeadDim }
    /// `out_channels` (0 when null, which ``validate()`` rejects).
    public var outputChannels: Int { outChannels ?? 0 }
    /// The temporal patch extent: `patch_size_t`, or 1 for the 1.0 per-frame patches.
    public var temporalPatch: Int { patchSizeT ?? 1 }
    /// Values per input patch: `in_channels · p · p · p_t`.
    public var patchWidth: Int { inChannels * patchSize * patchSize * temporalPatch }
    /// Values per output token: `out_channels · p · p · p_t`.
    public var outputTokenWidth: Int { outputChannels * patchSize * patchSize * temporalPatch }
    /// Whether the patch embedding adds a positional table (sincos, or the stored learned one).
    public var usesPositionalTable: Bool { !useRotaryPositionalEmbeddings || useLearnedPositionalEmbeddings }
    /// The latent frames of the configured positional table: `(sample_frames − 1) // ratio + 1`.
    public var sampleLatentFrames: Int { Self.floorDivide(sampleFrames - 1, temporalCompressionRatio) + 1 }
    /// The feed-forward activation.
    var feedForwardActivation: FeedForwardActivation? { .init(diffusersName: activationFn) }
    /// The time-embedding activation.
    var timeActivation: CogVideoXTimestepActivation? { .init(diffusersName: timestepActivationFn) }

    /// The rotary dimensions per axis (frames, height, width) as diffusers' `get_3d_rotary_pos_embed`
    /// splits the head: `D // 4`, `D // 8 · 3`, `D // 8 · 3`.
    var rotaryAxesDims: [Int] {
        [attentionHeadDim / 4, attentionHeadDim / 8 * 3, attentionHeadDim / 8 * 3]
    }

    /// Python's floor division (for negative numerators, as `(sample_frames − 1) // ratio`).
    static func floorDivide(_ a: Int, _ b: Int) -> Int {
        let q = a / b
        return (a % b != 0 && (a < 0) != (b < 0)) ? q - 1 : q
    }

    // MARK: Validation

    /// Checks every field.
    /// - Throws: ``ModelLoadError/unsupportedConfig(field:value:reason:)`` naming the first bad field.
    public func validate() throws(ModelLoadError) {
        func positive(_ name: String, _ v: Int) throws(ModelLoadError) {
            guard v > 0 else { throw .unsupportedConfig(field: name, value: "\(v)", reason: "must be a positive integer") }
        }
        try positive("num_attention_heads", numAttentionHeads)
        try positive("attention_head_dim", attentionHeadDim)
        try positive("in_channels", inChannels)
        guard let outChannels else {
            throw .unsupportedConfig(field: "out_channels", value: "null",
                                     reason: "diffusers multiplies the output width by it; give the latent channel count")
        }
        try positive("out_channels", outChannels)
        try positive("time_embed_dim", timeEmbedDim)
        try positive("text_embed_dim", textEmbedDim)
        try positive("patch_size", patchSize)
        if let patchSizeT { try positive("patch_size_t", patchSizeT) }
        if let ofsEmbedDim { try positive("ofs_embed_dim", ofsEmbedDim) }
        guard numLayers >= 0 else {
            throw .unsupportedConfig(field: "num_layers", value: "\(numLayers)", reason: "must be 0 or more")
        }
        // Bounded before any product of them is formed (see SizeLimits).
        for (field, value) in [("num_attention_heads", numAttentionHeads), ("attention_head_dim", attentionHeadDim),
                               ("in_channels", inChannels), ("out_channels", outChannels),
                               ("time_embed_dim", timeEmbedDim), ("ofs_embed_dim", ofsEmbedDim ?? 1),
                               ("text_embed_dim", textEmbedDim), ("num_layers", numLayers),
                               ("patch_size", patchSize), ("patch_size_t", patchSizeT ?? 1),
                               ("sample_width", sampleWidth), ("sample_height", sampleHeight),
                               ("sample_frames", sampleFrames), ("temporal_compression_ratio", temporalCompressionRatio),
                               ("max_text_seq_length", maxTextSeqLength)] {
            try SizeLimits.checkConfig(field, value)
        }
        let limit = Double(SizeLimits.maximumExtent)
        let patchVolume = Double(patchSize) * Double(patchSize) * Double(patchSizeT ?? 1)
        for (field, value, what) in [
            ("num_attention_heads", Double(numAttentionHeads) * Double(attentionHeadDim),
             "the model width num_attention_heads · attention_head_dim"),
            ("patch_size", Double(inChannels) * patchVolume, "the patch width in_channels · patch_size² · patch_size_t"),
            ("patch_size", Double(outChannels) * patchVolume, "the output width out_channels · patch_size² · patch_size_t"),
            ("feed-forward width", 8 * Double(numAttentionHeads) * Double(attentionHeadDim),
             "the gated feed-forward projection 2 · 4 · width"),
        ] where value > limit {
            throw .unsupportedConfig(field: field, value: field == "patch_size" ? "\(patchSize)" : "\(numAttentionHeads)",
                                     reason: "\(what) = \(String(format: "%.0f", value)) exceeds the supported maximum of \(SizeLimits.maximumExtent)")
        }
        guard (0...1).contains(dropout) else {
            throw .unsupportedConfig(field: "dropout", value: "\(dropout)", reason: "nn.Dropout needs a probability in 0…1")
        }
        guard feedForwardActivation != nil else {
            throw .unsupportedConfig(field: "activation_fn", value: activationFn,
                                     reason: "diffusers' FeedForward knows gelu, gelu-approximate, geglu, geglu-approximate, swiglu and linear-silu")
        }
        guard timeActivation != nil else {
            throw .unsupportedConfig(field: "timestep_activation_fn", value: timestepActivationFn,
                                     reason: "diffusers' get_activation knows silu, swish, mish, gelu and relu")
        }
        guard normEps.isFinite, normEps >= 0 else {
            throw .unsupportedConfig(field: "norm_eps", value: "\(normEps)", reason: "must be finite and not negative")
        }
        // The sinusoid divides by (half − shift); with half = 0 there is no frequency to compute.
        guard freqShift.isFinite, innerDim / 2 == 0 || Double(innerDim / 2) != freqShift else {
            throw .unsupportedConfig(field: "freq_shift", value: "\(freqShift)",
                                     reason: "must be finite and differ from half the width (the sinusoid divides by their difference)")
        }
        if let ofsEmbedDim {
            guard ofsEmbedDim == timeEmbedDim || ofsEmbedDim == 1 else {
                throw .unsupportedConfig(field: "ofs_embed_dim", value: "\(ofsEmbedDim)",
                                         reason: "the ofs embedding is added to the time embedding: it must equal time_embed_dim = \(timeEmbedDim) (or be 1)")
            }
            guard ofsEmbedDim / 2 == 0 || Double(ofsEmbedDim / 2) != freqShift else {
                throw .unsupportedConfig(field: "freq_shift", value: "\(freqShift)",
                                         reason: "must differ from half of ofs_embed_dim (the ofs sinusoid divides by their difference)")
            }
        }
        try validatePositions()
    }

    /// The positional-table and rotary constraints (diffusers' `ValueError`s and the shapes its forward or
    /// the pipelines' tables need).
    private func validatePositions() throws(ModelLoadError) {
        if useLearnedPositionalEmbeddings && !useRotaryPositionalEmbeddings {
            throw .unsupportedConfig(field: "use_learned_positional_embeddings", value: "true",
                                     reason: "diffusers has no CogVideoX model with learned positional embeddings and without rotary embeddings (it raises)")
        }
        if usesPositionalTable {
            let d = innerDim
            let spatial = 3 * d / 4, temporal = d / 4
            guard d % 4 == 0, spatial % 2 == 0, (spatial / 2) % 2 == 0, temporal % 2 == 0 else {
                throw .unsupportedConfig(field: "attention_head_dim", value: "\(attentionHeadDim)",
                                         reason: "the 3-D sincos positional table needs a width divisible by 16 (width \(d))")
            }
            if let pt = patchSizeT, pt > 1 {
                throw .unsupportedConfig(field: "patch_size_t", value: "\(pt)",
                                         reason: "the positional table has one row per latent frame, the tokens one per \(pt) frames: diffusers' forward cannot add them")
            }
            try positiveSampleSize("sample_width", sampleWidth)
            try positiveSampleSize("sample_height", sampleHeight)
            guard temporalCompressionRatio > 0 else {
                throw .unsupportedConfig(field: "temporal_compression_ratio", value: "\(temporalCompressionRatio)",
                                         reason: "must be positive (the positional table divides by it)")
            }
            // Bounded below before `sample_frames − 1` is formed (Int.min would overflow; found by scripts/fuzz.sh).
            guard sampleFrames >= -SizeLimits.maximumExtent, sampleLatentFrames >= 0 else {
                throw .unsupportedConfig(field: "sample_frames", value: "\(sampleFrames)", reason: "gives a negative frame count")
            }
            guard maxTextSeqLength >= 0 else {
                throw .unsupportedConfig(field: "max_text_seq_length", value: "\(maxTextSeqLength)", reason: "must not be negative")
            }
            for (field, s) in [("spatial_interpolation_scale", spatialInterpolationScale),
                               ("temporal_interpolation_scale", temporalInterpolationScale)]
                where !(s.isFinite && s != 0) {
                throw .unsupportedConfig(field: field, value: "\(s)", reason: "positions are divided by it: must be finite and nonzero")
            }
        }
        if useRotaryPositionalEmbeddings {
            let dims = rotaryAxesDims
            guard dims.allSatisfy({ $0 > 0 && $0 % 2 == 0 }), dims.reduce(0, +) == attentionHeadDim else {
                throw .unsupportedConfig(field: "attention_head_dim", value: "\(attentionHeadDim)",
                                         reason: "the pipelines' 3-D rotary table splits the head into \(dims) (D//4, D//8·3, D//8·3): "
                                            + "they must be even and add up to the head dimension (a multiple of 16)")
            }
            guard sampleWidth / patchSize >= 1, sampleHeight / patchSize >= 1 else {
                throw .unsupportedConfig(field: sampleWidth / patchSize >= 1 ? "sample_height" : "sample_width",
                                         value: "\(sampleWidth / patchSize >= 1 ? sampleHeight : sampleWidth)",
                                         reason: "the rotary base grid sample size // patch_size must be at least 1")
            }
        }
    }

    private func positiveSampleSize(_ field: String, _ v: Int) throws(ModelLoadError) {
        guard v >= 0 else { throw .unsupportedConfig(field: field, value: "\(v)", reason: "must not be negative") }
    }
}

extension CogVideoXConfiguration {
    private enum Keys: String, CodingKey {
        case numAttentionHeads = "num_attention_heads", attentionHeadDim = "attention_head_dim"
        case inChannels = "in_channels", outChannels = "out_channels", flipSinToCos = "flip_sin_to_cos"
        case freqShift = "freq_shift", timeEmbedDim = "time_embed_dim", ofsEmbedDim = "ofs_embed_dim"
        case textEmbedDim = "text_embed_dim", numLayers = "num_layers", dropout, attentionBias = "attention_bias"
        case sampleWidth = "sample_width", sampleHeight = "sample_height", sampleFrames = "sample_frames"
        case patchSize = "patch_size", patchSizeT = "patch_size_t", temporalCompressionRatio = "temporal_compression_ratio"
        case maxTextSeqLength = "max_text_seq_length", activationFn = "activation_fn"
        case timestepActivationFn = "timestep_activation_fn", normElementwiseAffine = "norm_elementwise_affine"
        case normEps = "norm_eps", spatialInterpolationScale = "spatial_interpolation_scale"
        case temporalInterpolationScale = "temporal_interpolation_scale"
        case useRotaryPositionalEmbeddings = "use_rotary_positional_embeddings"
        case useLearnedPositionalEmbeddings = "use_learned_positional_embeddings", patchBias = "patch_bias"
    }

    /// Decodes diffusers' keys; absent keys take diffusers' defaults, `null` means None.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: Keys.self)
        let d = CogVideoXConfiguration()
        self.init(
            numAttentionHeads: try c.diffusersValue(.numAttentionHeads, default: d.numAttentionHeads),
            attentionHeadDim: try c.diffusersValue(.attentionHeadDim, default: d.attentionHeadDim),
            inChannels: try c.diffusersValue(.inChannels, default: d.inChannels),
            outChannels: try c.diffusersOptional(.outChannels, default: d.outChannels),
            flipSinToCos: try c.diffusersValue(.flipSinToCos, default: d.flipSinToCos),
            freqShift: try c.diffusersValue(.freqShift, default: d.freqShift),
            timeEmbedDim: try c.diffusersValue(.timeEmbedDim, default: d.timeEmbedDim),
            ofsEmbedDim: try c.diffusersOptional(.ofsEmbedDim, default: d.ofsEmbedDim),
            textEmbedDim: try c.diffusersValue(.textEmbedDim, default: d.textEmbedDim),
            numLayers: try c.diffusersValue(.numLayers, default: d.numLayers),
            dropout: try c.diffusersValue(.dropout, default: d.dropout),
            attentionBias: try c.diffusersValue(.attentionBias, default: d.attentionBias),
            sampleWidth: try c.diffusersValue(.sampleWidth, default: d.sampleWidth),
            sampleHeight: try c.diffusersValue(.sampleHeight, default: d.sampleHeight),
            sampleFrames: try c.diffusersValue(.sampleFrames, default: d.sampleFrames),
            patchSize: try c.diffusersValue(.patchSize, default: d.patchSize),
            patchSizeT: try c.diffusersOptional(.patchSizeT, default: d.patchSizeT),
            temporalCompressionRatio: try c.diffusersValue(.temporalCompressionRatio, default: d.temporalCompressionRatio),
            maxTextSeqLength: try c.diffusersValue(.maxTextSeqLength, default: d.maxTextSeqLength),
            activationFn: try c.diffusersValue(.activationFn, default: d.activationFn),
            timestepActivationFn: try c.diffusersValue(.timestepActivationFn, default: d.timestepActivationFn),
            normElementwiseAffine: try c.diffusersValue(.normElementwiseAffine, default: d.normElementwiseAffine),
            normEps: Float(try c.diffusersValue(.normEps, default: Double(d.normEps))),
            spatialInterpolationScale: try c.diffusersValue(.spatialInterpolationScale, default: d.spatialInterpolationScale),
            temporalInterpolationScale: try c.diffusersValue(.temporalInterpolationScale, default: d.temporalInterpolationScale),
            useRotaryPositionalEmbeddings: try c.diffusersValue(.useRotaryPositionalEmbeddings, default: d.useRotaryPositionalEmbeddings),
            useLearnedPositionalEmbeddings: try c.diffusersValue(.useLearnedPositionalEmbeddings, default: d.useLearnedPositionalEmbeddings),
            patchBias: try c.diffusersValue(.patchBias, default: d.patchBias)
        )
    }
}

// MARK: - Cost model

extension CogVideoXConfiguration {
    /// The hidden width of the feed-forward's first projection: `8D` for a gated activation, else `4D`.
    var feedForwardProjectionWidth: Int {
        if feedForwardActivation?.isGated == true { return 8 * innerDim }
        return 4 * innerDim
    }

    /// The video tokens `(F/p_t)·(H/p)·(W/p)` of a `frames × height × width` latent (sizes already bounded).
    /// - Throws: `malformedConfig` when the latent is not divisible by the patch.
    func videoTokens(frames f: Int, height h: Int, width w: Int) throws(ModelLoadError) -> Int {
        guard f % temporalPatch == 0, h % patchSize == 0, w % patchSize == 0 else {
            throw .malformedConfig(reason: "latent \(f)×\(h)×\(w) must be divisible by the patch "
                                   + "\(temporalPatch)×\(patchSize)×\(patchSize) (patch_size_t × patch_size²)")
        }
        return (f / temporalPatch) * (h / patchSize) * (w / patchSize)
    }

    /// Matmul and attention FLOPs of one forward (2 per multiply-add; norms, activations, rotary and
    /// softmax are not counted), for `s` video and `l` text tokens per sample.
    ///
    /// Per block and joint token (`N = L + S`): q, k, v and out `4D²`, feed-forward `D·ffIn + 4D·D`;
    /// attention `4·N·D` per token (QKᵀ and AV); per sample the two adaptive norms `2·T·6D`. Plus the
    /// patch and text projections, the time (and ofs) MLPs, `norm_out.linear` and `proj_out`.
    public func forwardFLOPs(batch b: Int, videoTokens s: Int, textTokens l: Int) -> Double {
        let d = Double(innerDim), bb = Double(b), ss = Double(s), ll = Double(l), n = ss + ll
        let t = Double(timeEmbedDim)
        var f = 2 * bb * ss * Double(patchWidth) * d + 2 * bb * ll * Double(textEmbedDim) * d
        f += 2 * bb * (d * t + t * t)
        if let o = ofsEmbedDim.map(Double.init) { f += 2 * bb * 2 * o * o }
        var block = 2 * bb * n * (4 * d * d + d * Double(feedForwardProjectionWidth) + 4 * d * d)
        block += 4 * bb * n * n * d + 2 * 2 * bb * t * 6 * d
        f += Double(numLayers) * block
        f += 2 * bb * t * 2 * d + 2 * bb * ss * d * Double(outputTokenWidth)
        return f
    }

    /// Estimated bytes of the activations alive at once inside a block (the largest set): the joint
    /// sequence, its normalised copy, the fused q/k/v projection and q, k, v, the attention output and its
    /// projection (`10·D` per token), the feed-forward's first projection and its activation, plus one
    /// query block of attention scores per thread.
    public func activationBytesEstimate(batch b: Int, videoTokens s: Int, textTokens l: Int) -> Int {
        Int(min(activationBytes(batch: b, videoTokens: s, textTokens: l), Double(Int.max / 2)))
    }

    /// ``activationBytesEstimate(batch:videoTokens:textTokens:)`` in Double (no overflow for any sizes).
    func activationBytes(batch b: Int, videoTokens s: Int, textTokens l: Int) -> Double {
        let n = Double(s) + Double(l)
        let perToken = Double(14 * innerDim + feedForwardProjectionWidth)
        let scores = attentionScoreFloats(keys: n) * Double(Parallelism.threadCount)
        return 4 * (Double(b) * n * perToken + scores)
    }
}
