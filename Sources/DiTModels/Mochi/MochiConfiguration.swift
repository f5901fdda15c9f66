import Foundation
import Tensors

/// The configuration of a diffusers `MochiTransformer3DModel` (diffusers 0.42.1), decoded from `config.json`.
///
/// Field names and defaults follow the diffusers constructor (Mochi-1-preview: 48 layers, 24 heads of
/// 128, a 1536-wide text stream, T5-XXL features of 4096). Every field that changes a parameter shape
/// or the computation is honoured; ``validate()`` rejects the values diffusers cannot run (it would
/// fail inside `forward`) with ``ModelLoadError/unsupportedConfig(field:value:reason:)``.
///
/// Two fields diffusers 0.42.1 stores but never reads are accepted with any value and change nothing:
/// `qk_norm` (`MochiAttention` always normalises queries and keys with per-head RMS norms) and
/// `max_sequence_length` (only the pipeline pads prompts to it).
public struct MochiConfiguration: DiTConfiguration {
    /// The diffusers class names this configuration builds.
    public static let classNames = ["MochiTransformer3DModel"]

    /// The spatial patch extent of the per-frame Conv2d patch embedding.
    public var patchSize: Int
    /// Attention heads per block (visual and text streams alike).
    public var numAttentionHeads: Int
    /// Channels per head; the visual width is `numAttentionHeads · attentionHeadDim`.
    public var attentionHeadDim: Int
    /// Number of transformer blocks; the last one is `context_pre_only`.
    public var numLayers: Int
    /// The width of the text stream (the caption projection and every text-side layer).
    public var pooledProjectionDim: Int
    /// Latent channels in.
    public var inChannels: Int
    /// `out_channels` as configured: nil (or 0, which diffusers' `out_channels or in_channels` also
    /// replaces) means `inChannels`.
    public var outChannelsSetting: Int?
    /// Stored and ignored by diffusers 0.42.1 (the attention's q/k norms are always RMS norms).
    public var qkNorm: String?
    /// Width of the text-encoder features.
    public var textEmbedDim: Int
    /// Number of sinusoidal timestep features.
    public var timeEmbedDim: Int
    /// diffusers' `FeedForward` activation name of both streams' feed-forwards (`"swiglu"` for Mochi).
    public var activationFn: String
    /// Stored and ignored by the model (the pipeline pads prompts to it).
    public var maxSequenceLength: Int

    /// Heads of the caption attention pool; diffusers fixes it at 8.
    static let poolHeads = 8
    /// Epsilon of the blocks' RMS norms (`MochiRMSNormZero`, the modulated and gated RMS norms).
    static let blockEps: Float = 1e-6
    /// Epsilon of the per-head query/key RMS norms of the attention.
    static let qkEps: Float = 1e-5
    /// Epsilon of the output LayerNorm (`norm_out`).
    static let outputEps: Float = 1e-6

    /// A configuration; the defaults are diffusers' constructor defaults (Mochi-1-preview).
    public init(
        patchSize: Int = 2, numAttentionHeads: Int = 24, attentionHeadDim: Int = 128, numLayers: Int = 48,
        pooledProjectionDim: Int = 1536, inChannels: Int = 12, outChannels: Int? = nil,
        qkNorm: String? = "rms_norm", textEmbedDim: Int = 4096, timeEmbedDim: Int = 256,
        activationFn: String = "swiglu", maxSequenceLength: Int = 256
    ) {
        self.patchSize = patchSize
        self.numAttentionHeads = numAttentionHeads
        self.attentionHeadDim = attentionHeadDim
        self.numLayers = numLayers
        self.pooledProjectionDim = pooledProjectionDim
        self.inChannels = inChannels
        self.outChannelsSetting = outChannels
        self.qkNorm = qkNorm
        self.textEmbedDim = textEmbedDim
        self.timeEmbedDim = timeEmbedDim
        self.activationFn = activationFn
        self.maxSequenceLength = maxSequenceLength
    }

    /// The visual width `numAttentionHeads · attentionHeadDim` (also the width of `temb`).
    public var innerDim: Int { numAttentionHeads * attentionHeadDim }
    /// Latent channels out: diffusers' `out_channels or in_channels`.
    public var outChannels: Int { (outChannelsSetting ?? 0) == 0 ? inChannels : outChannelsSetting! }
    /// Values per output token: `patch² · outChannels`.
    public var outputTokenWidth: Int { patchSize * patchSize * outChannels }
    /// Hidden width of the visual feed-forward: diffusers' `(4·dim·2) // 3`.
    public var feedForwardInnerDim: Int { (4 * innerDim * 2) / 3 }
    /// Hidden width of the text feed-forward: `(4·pooled_projection_dim·2) // 3`.
    public var contextFeedForwardInnerDim: Int { (4 * pooledProjectionDim * 2) / 3 }
    /// The feed-forward activation (validated by ``validate()``).
    public var feedForwardActivation: FeedForwardActivation { FeedForwardActivation(diffusersName: activationFn) ?? .swiglu }

    /// Checks every field.
    /// - Throws: ``ModelLoadError/unsupportedConfig(field:value:reason:)`` naming the first bad field.
    public func validate() throws(ModelLoadError) {
        func positive(_ name: String, _ v: Int) throws(ModelLoadError) {
            guard v > 0 else { throw .unsupportedConfig(field: name, value: "\(v)", reason: "must be a positive integer") }
            try SizeLimits.checkConfig(name, v)
        }
        try positive("patch_size", patchSize)
        try positive("num_attention_heads", numAttentionHeads)
        try positive("attention_head_dim", attentionHeadDim)
        try positive("pooled_projection_dim", pooledProjectionDim)
        try positive("in_channels", inChannels)
        if let o = outChannelsSetting, o != 0 { try positive("out_channels", o) }
        try positive("text_embed_dim", textEmbedDim)
        try positive("time_embed_dim", timeEmbedDim)
        guard numLayers >= 0 else {
            throw .unsupportedConfig(field: "num_layers", value: "\(numLayers)", reason: "must be 0 or more")
        }
        try SizeLimits.checkConfig("num_layers", numLayers)
        // Products in Double before any Int product is formed.
        let limit = Double(SizeLimits.maximumExtent)
        let width = Double(numAttentionHeads) * Double(attentionHeadDim)
        guard width <= limit else {
            throw .unsupportedConfig(field: "num_attention_heads", value: "\(numAttentionHeads)",
                                     reason: "the visual width num_attention_heads · attention_head_dim = "
                                        + "\(String(format: "%.0f", width)) exceeds the supported maximum of \(SizeLimits.maximumExtent)")
        }
        let patchArea = Double(patchSize) * Double(patchSize)
        for (what, channels) in [("in_channels", inChannels), ("out_channels", outChannels)]
            where patchArea * Double(channels) > limit {
            throw .unsupportedConfig(field: "patch_size", value: "\(patchSize)",
                                     reason: "the patch width \(what) · patch_size² exceeds the supported maximum of \(SizeLimits.maximumExtent)")
        }
        guard attentionHeadDim % 2 == 0 else {
            throw .unsupportedConfig(field: "attention_head_dim", value: "\(attentionHeadDim)",
                                     reason: "the rotary embedding rotates channel pairs: the head dimension must be even "
                                        + "(diffusers' pos_frequencies hold attention_head_dim // 2 frequencies per head)")
        }
        guard textEmbedDim % Self.poolHeads == 0 else {
            throw .unsupportedConfig(field: "text_embed_dim", value: "\(textEmbedDim)",
                                     reason: "the caption attention pool splits it into \(Self.poolHeads) heads: use a multiple of \(Self.poolHeads)")
        }
        guard FeedForwardActivation(diffusersName: activationFn) != nil else {
            throw .unsupportedConfig(field: "activation_fn", value: activationFn,
                                     reason: "supported: gelu, gelu-approximate, geglu, geglu-approximate, swiglu, linear-silu")
        }
    }
}

extension MochiConfiguration {
    private enum Keys: String, CodingKey {
        case patchSize = "patch_size", numAttentionHeads = "num_attention_heads"
        case attentionHeadDim = "attention_head_dim", numLayers = "num_layers"
        case pooledProjectionDim = "pooled_projection_dim", inChannels = "in_channels", outChannels = "out_channels"
        case qkNorm = "qk_norm", textEmbedDim = "text_embed_dim", timeEmbedDim = "time_embed_dim"
        case activationFn = "activation_fn", maxSequenceLength = "max_sequence_length"
    }

    /// Decodes diffusers' keys; absent keys take diffusers' defaults, `null` means None. Keys diffusers
    /// 0.42.1 does not know are ignored, as diffusers ignores them.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: Keys.self)
        let d = MochiConfiguration()
        self.init(
            patchSize: try c.diffusersValue(.patchSize, default: d.patchSize),
            numAttentionHeads: try c.diffusersValue(.numAttentionHeads, default: d.numAttentionHeads),
            attentionHeadDim: try c.diffusersValue(.attentionHeadDim, default: d.attentionHeadDim),
            numLayers: try c.diffusersValue(.numLayers, default: d.numLayers),
            pooledProjectionDim: try c.diffusersValue(.pooledProjectionDim, default: d.pooledProjectionDim),
            inChannels: try c.diffusersValue(.inChannels, default: d.inChannels),
            outChannels: try c.diffusersOptional(.outChannels, default: d.outChannelsSetting),
            qkNorm: try c.diffusersOptional(.qkNorm, default: d.qkNorm),
            textEmbedDim: try c.diffusersValue(.textEmbedDim, default: d.textEmbedDim),
            timeEmbedDim: try c.diffusersValue(.timeEmbedDim, default: d.timeEmbedDim),
            activationFn: try c.diffusersValue(.activationFn, default: d.activationFn),
            maxSequenceLength: try c.diffusersValue(.maxSequenceLength, default: d.maxSequenceLength)
        )
    }
}

// MARK: - Cost model

extension MochiConfiguration {
    /// Matmul and attention FLOPs of one forward (2 per multiply-add; norms, activations, RoPE, softmax
    /// and the attention pool's scores are not counted), for `s` visual and `l` caption tokens per sample.
    ///
    /// Per block and visual token: q, k, v and out `4D²`, the feed-forward `D·ffIn + ffInner·D` (ffIn =
    /// 2·ffInner when gated); per caption token: q, k, v `3·P·D`, and in every block but the last the
    /// output `D·P` and the text feed-forward; attention `4·S·(S + L)·D` for the visual queries plus
    /// `4·L·(S + L)·D` for the caption queries (not in the last block); the two modulation projections
    /// per sample; plus the patch embedding, the time embedder, the caption projection and pool, the
    /// output norm's projection and `proj_out`.
    public func forwardFLOPs(batch b: Int, visualTokens s: Int, textTokens l: Int) -> Double {
        let d = Double(innerDim), p = Double(pooledProjectionDim), bb = Double(b), ss = Double(s), ll = Double(l)
        let e = Double(textEmbedDim)
        let gated = feedForwardActivation.isGated ? 2.0 : 1.0
        let ff = Double(feedForwardInnerDim), ffc = Double(contextFeedForwardInnerDim)
        var f = 2 * bb * ss * Double(inChannels * patchSize * patchSize) * d
        f += 2 * bb * (Double(timeEmbedDim) * d + d * d)                       // timestep_embedder
        f += 2 * bb * ll * e * p                                               // caption_proj
        f += 2 * bb * (ll + 1) * e * 2 * e + 2 * bb * (e * e + e * d)          // pool: to_kv, to_q, to_out
        for i in 0..<numLayers {
            let last = i == numLayers - 1
            var block = 2 * bb * ss * (4 * d * d + (gated + 1) * ff * d)
            block += 2 * bb * ll * 3 * p * d
            block += 4 * bb * ss * (ss + ll) * d
            block += 2 * bb * d * 4 * d                                        // norm1
            if last {
                block += 2 * bb * d * p                                        // norm1_context.linear_1
            } else {
                block += 2 * bb * ll * (d * p + (gated + 1) * ffc * p)
                block += 4 * bb * ll * (ss + ll) * d
                block += 2 * bb * d * 4 * p                                    // norm1_context
            }
            f += block
        }
        f += 2 * bb * d * 2 * d + 2 * bb * ss * d * Double(outputTokenWidth)
        return f
    }

    /// Estimated bytes of the activations alive at once inside a block (the largest set): the visual
    /// tokens, their normalised copy, the fused q/k/v output and its normalised/rotated copies, the joint
    /// keys and values, the attention output and the feed-forward's projection (2·ffInner when gated) and
    /// activation — about `(13·D + 3·ffInner)·S` floats — plus the caption stream's share and one query
    /// block of attention scores per thread.
    public func activationBytesEstimate(batch b: Int, visualTokens s: Int, textTokens l: Int) -> Int {
        let scores = attentionScoreFloats(keys: s + l) * Parallelism.threadCount
        let visual = b * s * (13 * innerDim + 3 * feedForwardInnerDim)
        let text = b * l * (8 * innerDim + 6 * pooledProjectionDim + 3 * contextFeedForwardInnerDim)
        return 4 * (visual + text + scores)
    }
}
