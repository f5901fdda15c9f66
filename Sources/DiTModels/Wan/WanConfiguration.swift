import Foundation
import Tensors

/// The configuration of a diffusers `WanTransformer3DModel` (diffusers 0.42.1), decoded from `config.json`.
///
/// Every field that changes a parameter shape or the computation is honoured; values this port does
/// not implement are rejected by ``validate()`` with ``ModelLoadError/unsupportedConfig(field:value:reason:)``.
/// Field names and defaults follow the diffusers constructor.
public struct WanConfiguration: DiTConfiguration {
    /// The diffusers class names this configuration builds.
    public static let classNames = ["WanTransformer3DModel"]

    /// The patch extent (frames, height, width) of the Conv3d patch embedding.
    public var patchSize: [Int]
    /// Attention heads per layer.
    public var numAttentionHeads: Int
    /// Channels per head; the model width is `numAttentionHeads · attentionHeadDim`.
    public var attentionHeadDim: Int
    /// Latent channels in.
    public var inChannels: Int
    /// Latent channels out (diffusers: `out_channels or in_channels`).
    public var outChannels: Int
    /// Width of the text-encoder features (4096 for umT5-XXL).
    public var textDim: Int
    /// Number of sinusoidal timestep features.
    public var freqDim: Int
    /// Hidden width of the feed-forward networks.
    public var ffnDim: Int
    /// Number of transformer blocks.
    public var numLayers: Int
    /// When true, the cross-attention input goes through an affine LayerNorm (`norm2`).
    public var crossAttnNorm: Bool
    /// The query/key normalisation named by the configuration. diffusers 0.42.1 ignores the value and
    /// always applies an RMSNorm across heads (`norm_q`/`norm_k` over the full width), and so does this
    /// port: any value, including null, is accepted.
    public var qkNorm: String?
    /// Epsilon of the blocks' norms and of the output norm.
    public var eps: Float
    /// Width of the image-encoder (CLIP) features for image-to-video, or nil for text-to-video.
    public var imageDim: Int?
    /// Input width of the extra image key/value projections of the cross-attention (I2V), or nil.
    ///
    /// Allowed without `image_dim`, as diffusers 0.42.1 allows it: the blocks then have the projections
    /// but the model has no image embedder, so only text can be passed, and the projections read the
    /// leading text tokens beyond the 512 diffusers assumes (``WanTransformer/imageContextSplit(contextLength:)``).
    public var addedKVProjDim: Int?
    /// Number of positions the rotary tables cover per axis (after patching).
    public var ropeMaxSeqLen: Int
    /// Length of the learned position embedding of the image tokens (Wan FLF2V), or nil.
    ///
    /// It belongs to the image embedder, so without `image_dim` it has no effect: diffusers 0.42.1 then
    /// builds no image embedder and ignores the value, and so does this port (the initialisers store
    /// nil, and ``validate()`` does not check it).
    public var posEmbedSeqLen: Int?

    /// A configuration; the defaults are diffusers' constructor defaults (Wan2.1 T2V 14B).
    public init(
        patchSize: [Int] = [1, 2, 2], numAttentionHeads: Int = 40, attentionHeadDim: Int = 128,
        inChannels: Int = 16, outChannels: Int? = 16, textDim: Int = 4096, freqDim: Int = 256,
        ffnDim: Int = 13824, numLayers: Int = 40, crossAttnNorm: Bool = true,
        qkNorm: String? = "rms_norm_across_heads", eps: Float = 1e-6, imageDim: Int? = nil,
        addedKVProjDim: Int? = nil, ropeMaxSeqLen: Int = 1024, posEmbedSeqLen: Int? = nil
    ) {
        self.patchSize = patchSize
        self.numAttentionHeads = numAttentionHeads
        self.attentionHeadDim = attentionHeadDim
        self.inChannels = inChannels
        self.outChannels = (outChannels ?? 0) == 0 ? inChannels : outChannels!
        self.textDim = textDim
        self.freqDim = freqDim
        self.ffnDim = ffnDim
        self.numLayers = numLayers
        self.crossAttnNorm = crossAttnNorm
        self.qkNorm = qkNorm
        self.eps = eps
        self.imageDim = imageDim
        self.addedKVProjDim = addedKVProjDim
        self.ropeMaxSeqLen = ropeMaxSeqLen
        self.posEmbedSeqLen = imageDim == nil ? nil : posEmbedSeqLen
    }

    /// The model width `numAttentionHeads · attentionHeadDim`.
    public var innerDim: Int { numAttentionHeads * attentionHeadDim }

    /// The patch extent as a tuple.
    public var patch: (t: Int, h: Int, w: Int) { (patchSize[0], patchSize[1], patchSize[2]) }

    /// Values per output token: `outChannels · pt · ph · pw`.
    public var outputTokenWidth: Int { outChannels * patchSize.reduce(1, *) }

    /// The rotary dimensions per axis (frames, height, width), split as diffusers' `WanRotaryPosEmbed`:
    /// height and width get `2·⌊D/6⌋` each, frames the rest.
    public var rotaryAxesDims: [Int] {
        let hw = 2 * (attentionHeadDim / 6)
        return [attentionHeadDim - 2 * hw, hw, hw]
    }

    /// Checks every field.
    /// - Throws: ``ModelLoadError/unsupportedConfig(field:value:reason:)`` naming the first bad field.
    public func validate() throws(ModelLoadError) {
        func positive(_ name: String, _ v: Int) throws(ModelLoadError) {
            guard v > 0 else { throw .unsupportedConfig(field: name, value: "\(v)", reason: "must be a positive integer") }
        }
        guard patchSize.count == 3 else {
            throw .unsupportedConfig(field: "patch_size", value: "\(patchSize)", reason: "must list three extents (frames, height, width)")
        }
        for p in patchSize { try positive("patch_size", p) }
        try positive("num_attention_heads", numAttentionHeads)
        try positive("attention_head_dim", attentionHeadDim)
        try positive("in_channels", inChannels)
        try positive("out_channels", outChannels)
        try positive("text_dim", textDim)
        try positive("freq_dim", freqDim)
        try positive("ffn_dim", ffnDim)
        guard numLayers >= 0 else {
            throw .unsupportedConfig(field: "num_layers", value: "\(numLayers)", reason: "must be 0 or more")
        }
        try positive("rope_max_seq_len", ropeMaxSeqLen)
        // Bounded before any product of them is formed (see SizeLimits).
        for p in patchSize { try SizeLimits.checkConfig("patch_size", p) }
        for (field, value) in [("num_attention_heads", numAttentionHeads), ("attention_head_dim", attentionHeadDim),
                               ("in_channels", inChannels), ("out_channels", outChannels), ("text_dim", textDim),
                               ("freq_dim", freqDim), ("ffn_dim", ffnDim), ("num_layers", numLayers),
                               ("rope_max_seq_len", ropeMaxSeqLen), ("image_dim", imageDim ?? 1),
                               ("added_kv_proj_dim", addedKVProjDim ?? 1),
                               ("pos_embed_seq_len", imageDim == nil ? 2 : posEmbedSeqLen ?? 2)] {
            try SizeLimits.checkConfig(field, value)
        }
        // Products in Double: three patch extents and a channel count of up to 2¹⁶ each overflow Int.
        let patchVolume = patchSize.reduce(1.0) { $0 * Double($1) }
        let limit = Double(SizeLimits.maximumExtent)
        for (field, value, what) in [("num_attention_heads", Double(numAttentionHeads) * Double(attentionHeadDim),
                                      "the model width num_attention_heads · attention_head_dim"),
                                     ("patch_size", Double(inChannels) * patchVolume, "the patch width in_channels · prod(patch_size)"),
                                     ("patch_size", Double(outChannels) * patchVolume, "the output width out_channels · prod(patch_size)")]
            where value > limit {
            throw .unsupportedConfig(field: field, value: field == "patch_size" ? "\(patchSize)" : "\(numAttentionHeads)",
                                     reason: "\(what) = \(String(format: "%.0f", value)) exceeds the supported maximum of \(SizeLimits.maximumExtent)")
        }
        // The rotary split must give three even, non-empty axes (diffusers asserts even dimensions).
        guard attentionHeadDim % 2 == 0, attentionHeadDim >= 6, rotaryAxesDims.allSatisfy({ $0 > 0 && $0 % 2 == 0 }) else {
            throw .unsupportedConfig(field: "attention_head_dim", value: "\(attentionHeadDim)",
                                     reason: "the 3-D rotary embedding needs an even head dimension of at least 6 "
                                        + "(split \(rotaryAxesDims) must be even and positive)")
        }
        guard eps.isFinite, eps > 0 else {
            throw .unsupportedConfig(field: "eps", value: "\(eps)", reason: "must be a finite positive number")
        }
        if let imageDim { try positive("image_dim", imageDim) }
        if let addedKVProjDim {
            guard addedKVProjDim == innerDim else {
                throw .unsupportedConfig(field: "added_kv_proj_dim", value: "\(addedKVProjDim)",
                                         reason: "the projections read embedded context tokens of width "
                                            + "num_attention_heads·attention_head_dim = \(innerDim); use that value")
            }
        }
        if let posEmbedSeqLen, imageDim != nil {
            try positive("pos_embed_seq_len", posEmbedSeqLen)
            guard posEmbedSeqLen % 2 == 0 else {
                throw .unsupportedConfig(field: "pos_embed_seq_len", value: "\(posEmbedSeqLen)",
                                         reason: "must be even: it covers two images' tokens (first and last frame)")
            }
        }
    }
}

extension WanConfiguration {
    private enum Keys: String, CodingKey {
        case patchSize = "patch_size", numAttentionHeads = "num_attention_heads"
        case attentionHeadDim = "attention_head_dim", inChannels = "in_channels", outChannels = "out_channels"
        case textDim = "text_dim", freqDim = "freq_dim", ffnDim = "ffn_dim", numLayers = "num_layers"
        case crossAttnNorm = "cross_attn_norm", qkNorm = "qk_norm", eps, imageDim = "image_dim"
        case addedKVProjDim = "added_kv_proj_dim", ropeMaxSeqLen = "rope_max_seq_len"
        case posEmbedSeqLen = "pos_embed_seq_len"
    }

    /// Decodes diffusers' keys; absent keys take diffusers' defaults, `null` means None. Keys that
    /// diffusers 0.42.1 does not know are ignored, as diffusers ignores them.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: Keys.self)
        let d = WanConfiguration()
        func value<T: Decodable>(_ key: Keys, _ fallback: T) throws -> T { try c.diffusersValue(key, default: fallback) }
        func optional<T: Decodable>(_ key: Keys, _ fallback: T?) throws -> T? { try c.diffusersOptional(key, default: fallback) }
        self.init(
            patchSize: try value(.patchSize, d.patchSize),
            numAttentionHeads: try value(.numAttentionHeads, d.numAttentionHeads),
            attentionHeadDim: try value(.attentionHeadDim, d.attentionHeadDim),
            inChannels: try value(.inChannels, d.inChannels),
            outChannels: try optional(.outChannels, d.outChannels),
            textDim: try value(.textDim, d.textDim),
            freqDim: try value(.freqDim, d.freqDim),
            ffnDim: try value(.ffnDim, d.ffnDim),
            numLayers: try value(.numLayers, d.numLayers),
            crossAttnNorm: try value(.crossAttnNorm, d.crossAttnNorm),
            qkNorm: try optional(.qkNorm, d.qkNorm),
            eps: Float(try value(.eps, Double(d.eps))),
            imageDim: try optional(.imageDim, d.imageDim),
            addedKVProjDim: try optional(.addedKVProjDim, d.addedKVProjDim),
            ropeMaxSeqLen: try value(.ropeMaxSeqLen, d.ropeMaxSeqLen),
            posEmbedSeqLen: try optional(.posEmbedSeqLen, d.posEmbedSeqLen)
        )
    }
}

// MARK: Cost model

extension WanConfiguration {
    /// Matmul and attention FLOPs of one forward (2 per multiply-add; norms, activations, RoPE and softmax
    /// are not counted), for `s` video tokens, `l` text tokens and `n` image tokens per sample.
    ///
    /// Per block and video token: self-attention projections `4D²`, cross-attention q/out `2D²`,
    /// feed-forward `2·D·ffn`; per context token `2D²` (cross k, v; image tokens through `add_k/v_proj`
    /// when the model has them); attention `2·S·D` per query for QKᵀ and AV against each key set. Plus the
    /// patch embedding, the condition embedder and the output projection.
    public func forwardFLOPs(batch b: Int, videoTokens s: Int, textTokens l: Int, imageTokens n: Int = 0) -> Double {
        let c = self
        let d = Double(c.innerDim), bb = Double(b), ss = Double(s), ll = Double(l), nn = Double(n)
        let patchIn = Double(c.inChannels * c.patchSize.reduce(1, *))
        var f = 2 * bb * ss * patchIn * d
        f += 2 * bb * (Double(c.freqDim) * d + d * d + d * 6 * d)
        f += 2 * bb * ll * (Double(c.textDim) * d + d * d)
        if let e = c.imageDim { f += 2 * bb * nn * (Double(e) * Double(e) + Double(e) * d) }
        let context = ll + nn  // image tokens are keys either way (joined or through add_k/v_proj)
        var block = 2 * bb * ss * (4 * d * d + 2 * d * d + 2 * d * Double(c.ffnDim))
        block += 2 * bb * context * 2 * d * d
        block += 4 * bb * ss * ss * d + 4 * bb * ss * context * d
        f += Double(c.numLayers) * block
        f += 2 * bb * ss * d * Double(c.outputTokenWidth)
        return f
    }

    /// Estimated bytes of the activations alive at once inside a block (the largest set): the tokens, the
    /// normalised copy, q, k, v and their normalised/rotated copies, the attention output and the
    /// feed-forward hidden layer before and after the activation — about `(10·D + 2·ffn)·S` floats —
    /// plus the context keys/values and one query block of attention scores per thread.
    public func activationBytesEstimate(batch b: Int, videoTokens s: Int, textTokens l: Int, imageTokens n: Int = 0) -> Int {
        let c = self
        let scores = attentionScoreFloats(keys: max(s, l + n)) * Parallelism.threadCount
        return 4 * (b * s * (10 * c.innerDim + 2 * c.ffnDim) + 3 * b * (l + n) * c.innerDim + scores)
    }
}
