import Foundation
import Tensors

/// The configuration of a diffusers `CosmosTransformer3DModel` (diffusers 0.42.1), decoded from `config.json`.
///
/// Cosmos-1.0 Diffusion Text2World (`in_channels` 16, `concat_padding_mask` true) and Video2World
/// (`in_channels` 17: the latent plus the condition-mask channel) are both this class. Every field that
/// changes a parameter shape or the computation is honoured; what this port does not implement (the
/// Cosmos-2.5 image context, `img_context_dim_in`) is rejected by ``validate()`` with
/// ``ModelLoadError/unsupportedConfig(field:value:reason:)``. Field names and defaults follow the
/// diffusers constructor.
public struct CosmosConfiguration: DiTConfiguration {
    /// The diffusers class names this configuration builds.
    public static let classNames = ["CosmosTransformer3DModel"]

    /// Channels the patch embedding reads, without the padding-mask channel: the latent channels plus
    /// the channels of a `condition_mask` (Video2World: 16 + 1).
    public var inChannels: Int
    /// Latent channels out.
    public var outChannels: Int
    /// Attention heads per layer.
    public var numAttentionHeads: Int
    /// Channels per head; the model width is `numAttentionHeads · attentionHeadDim`.
    public var attentionHeadDim: Int
    /// Number of transformer blocks.
    public var numLayers: Int
    /// Feed-forward width over the model width (`int(D · mlp_ratio)` hidden units).
    public var mlpRatio: Double
    /// Width of the text features the cross-attention keys and values read.
    public var textEmbedDim: Int
    /// Hidden width of every adaLN's low-rank modulation (`linear_1`: D → this, `linear_2`: this → k·D).
    public var adalnLoraDim: Int
    /// The largest latent extent (frames, height, width) before patching: the rotary positions and the
    /// learnable position tables cover `max_size / patch_size` positions per axis.
    public var maxSize: [Int]
    /// The patch extent (frames, height, width).
    public var patchSize: [Int]
    /// The NTK scale of the rotary frequency base per axis (frames, height, width).
    public var ropeScale: [Double]
    /// When true the forward concatenates the (resized) `padding_mask` as one more input channel.
    public var concatPaddingMask: Bool
    /// `"learnable"`: a normalised sum of per-axis position tables is added at the start of every block;
    /// nil: none.
    public var extraPosEmbedType: String?
    /// When true the text features go through `crossattn_proj` (Linear + exact GELU) first.
    public var useCrossattnProjection: Bool
    /// Input width of `crossattn_proj` (the width of `encoder_hidden_states` when it is used).
    public var crossattnProjInChannels: Int
    /// Output width of `crossattn_proj`.
    public var encoderHiddenStatesChannels: Int
    /// The control-residual interval (Cosmos Transfer); no parameter depends on it, and this port takes
    /// no control residuals, so any value is accepted.
    public var controlnetBlockEveryN: Int?
    /// Width of the image-context features (Cosmos 2.5), or nil. Only nil is supported.
    public var imgContextDimIn: Int?
    /// Image-context tokens (unused without `img_context_dim_in`).
    public var imgContextNumTokens: Int
    /// Image-context projection width (unused without `img_context_dim_in`).
    public var imgContextDimOut: Int

    /// A configuration; the defaults are diffusers' constructor defaults.
    public init(
        inChannels: Int = 16, outChannels: Int = 16, numAttentionHeads: Int = 32, attentionHeadDim: Int = 128,
        numLayers: Int = 28, mlpRatio: Double = 4, textEmbedDim: Int = 1024, adalnLoraDim: Int = 256,
        maxSize: [Int] = [128, 240, 240], patchSize: [Int] = [1, 2, 2], ropeScale: [Double] = [2, 1, 1],
        concatPaddingMask: Bool = true, extraPosEmbedType: String? = "learnable",
        useCrossattnProjection: Bool = false, crossattnProjInChannels: Int = 1024,
        encoderHiddenStatesChannels: Int = 1024, controlnetBlockEveryN: Int? = nil, imgContextDimIn: Int? = nil,
        imgContextNumTokens: Int = 256, imgContextDimOut: Int = 2048
    ) {
        self.inChannels = inChannels
        self.outChannels = outChannels
        self.numAttentionHeads = numAttentionHeads
        self.attentionHeadDim = attentionHeadDim
        self.numLayers = numLayers
        self.mlpRatio = mlpRatio
        self.textEmbedDim = textEmbedDim
        self.adalnLoraDim = adalnLoraDim
        self.maxSize = maxSize
        self.patchSize = patchSize
        self.ropeScale = ropeScale
        self.concatPaddingMask = concatPaddingMask
        self.extraPosEmbedType = extraPosEmbedType
        self.useCrossattnProjection = useCrossattnProjection
        self.crossattnProjInChannels = crossattnProjInChannels
        self.encoderHiddenStatesChannels = encoderHiddenStatesChannels
        self.controlnetBlockEveryN = controlnetBlockEveryN
        self.imgContextDimIn = imgContextDimIn
        self.imgContextNumTokens = imgContextNumTokens
        self.imgContextDimOut = imgContextDimOut
    }

    /// The model width D.
    public var innerDim: Int { numAttentionHeads * attentionHeadDim }
    /// The feed-forward hidden width `int(D · mlp_ratio)`.
    public var ffnDim: Int { Int(Double(innerDim) * mlpRatio) }
    /// The patch extent as a tuple.
    public var patch: (t: Int, h: Int, w: Int) { (patchSize[0], patchSize[1], patchSize[2]) }
    /// Channels of the patch embedding input: ``inChannels`` plus the padding-mask channel.
    public var patchInChannels: Int { inChannels + (concatPaddingMask ? 1 : 0) }
    /// Values per output token: `out_channels · pt · ph · pw`.
    public var outputTokenWidth: Int { outChannels * patchSize.reduce(1, *) }
    /// Whether the blocks add the learnable position embedding.
    public var hasLearnablePositions: Bool { extraPosEmbedType == "learnable" }
    /// Positions per axis after patching (`max_size // patch_size`).
    public var patchedMaxSize: [Int] { zip(maxSize, patchSize).map { $0 / $1 } }
    /// The width of `encoder_hidden_states` the forward takes.
    public var encoderInputDim: Int { useCrossattnProjection ? crossattnProjInChannels : textEmbedDim }
    /// The rotary dimensions per axis (frames, height, width): height and width get `2·⌊Dh/6⌋` each,
    /// frames the rest.
    public var rotaryAxesDims: [Int] {
        let hw = 2 * (attentionHeadDim / 6)
        return [attentionHeadDim - 2 * hw, hw, hw]
    }

    /// Checks every field.
    /// - Throws: ``ModelLoadError/unsupportedConfig(field:value:reason:)`` naming the first bad field.
    public func validate() throws(ModelLoadError) {
        func positive(_ name: String, _ v: Int) throws(ModelLoadError) {
            guard v > 0 else { throw .unsupportedConfig(field: name, value: "\(v)", reason: "must be a positive integer") }
            try SizeLimits.checkConfig(name, v)
        }
        for (field, list) in [("patch_size", patchSize), ("max_size", maxSize)] {
            guard list.count == 3 else {
                throw .unsupportedConfig(field: field, value: "\(list)", reason: "must list three extents (frames, height, width)")
            }
            for v in list { try positive(field, v) }
        }
        guard ropeScale.count == 3, ropeScale.allSatisfy({ $0.isFinite && $0 > 0 }) else {
            throw .unsupportedConfig(field: "rope_scale", value: "\(ropeScale)",
                                     reason: "must list three finite positive scales (frames, height, width)")
        }
        try positive("in_channels", inChannels)
        try positive("out_channels", outChannels)
        try positive("num_attention_heads", numAttentionHeads)
        try positive("attention_head_dim", attentionHeadDim)
        try positive("text_embed_dim", textEmbedDim)
        try positive("adaln_lora_dim", adalnLoraDim)
        guard numLayers >= 0 else {
            throw .unsupportedConfig(field: "num_layers", value: "\(numLayers)", reason: "must be 0 or more")
        }
        try SizeLimits.checkConfig("num_layers", numLayers)
        guard mlpRatio.isFinite, mlpRatio > 0, Double(innerDim) * mlpRatio <= Double(SizeLimits.maximumExtent),
              ffnDim > 0 else {
            throw .unsupportedConfig(field: "mlp_ratio", value: "\(mlpRatio)",
                                     reason: "the feed-forward width int(D · mlp_ratio) must be between 1 and \(SizeLimits.maximumExtent)")
        }
        let patchVolume = patchSize.reduce(1.0) { $0 * Double($1) }
        let limit = Double(SizeLimits.maximumExtent)
        for (field, value, what) in [("num_attention_heads", Double(numAttentionHeads) * Double(attentionHeadDim),
                                      "the model width num_attention_heads · attention_head_dim"),
                                     ("patch_size", Double(inChannels + 1) * patchVolume, "the patch width in_channels · prod(patch_size)"),
                                     ("patch_size", Double(outChannels) * patchVolume, "the output width out_channels · prod(patch_size)")]
            where value > limit {
            throw .unsupportedConfig(field: field, value: field == "patch_size" ? "\(patchSize)" : "\(numAttentionHeads)",
                                     reason: "\(what) = \(String(format: "%.0f", value)) exceeds the supported maximum of \(SizeLimits.maximumExtent)")
        }
        for (i, axis) in ["frames", "height", "width"].enumerated() where maxSize[i] < patchSize[i] {
            throw .unsupportedConfig(field: "max_size", value: "\(maxSize)",
                                     reason: "the \(axis) extent \(maxSize[i]) is smaller than its patch \(patchSize[i]): no position would fit")
        }
        // diffusers' NTK exponent dim/(dim − 2) needs every rotary axis wider than 2, and the halves of
        // cat([t, h, w] · 2) must fill the head: an even head dimension of at least 12.
        guard attentionHeadDim % 2 == 0, rotaryAxesDims.allSatisfy({ $0 > 2 && $0 % 2 == 0 }) else {
            throw .unsupportedConfig(field: "attention_head_dim", value: "\(attentionHeadDim)",
                                     reason: "the 3-D rotary embedding needs an even head dimension of at least 12 "
                                        + "(split \(rotaryAxesDims) must be even and wider than 2 per axis)")
        }
        if let t = extraPosEmbedType, t != "learnable" {
            throw .unsupportedConfig(field: "extra_pos_embed_type", value: t,
                                     reason: "must be \"learnable\" or null (diffusers builds no other embedding)")
        }
        if useCrossattnProjection {
            try positive("crossattn_proj_in_channels", crossattnProjInChannels)
            guard encoderHiddenStatesChannels == textEmbedDim else {
                throw .unsupportedConfig(field: "encoder_hidden_states_channels", value: "\(encoderHiddenStatesChannels)",
                                         reason: "the cross-attention reads crossattn_proj's output, so it must equal text_embed_dim = \(textEmbedDim)")
            }
        }
        if let imgContextDimIn, imgContextDimIn > 0 {
            throw .unsupportedConfig(field: "img_context_dim_in", value: "\(imgContextDimIn)",
                                     reason: "the Cosmos 2.5 image context is not ported; use null (Cosmos-1.0 layouts)")
        }
    }
}

extension CosmosConfiguration {
    private enum Keys: String, CodingKey {
        case inChannels = "in_channels", outChannels = "out_channels", numAttentionHeads = "num_attention_heads"
        case attentionHeadDim = "attention_head_dim", numLayers = "num_layers", mlpRatio = "mlp_ratio"
        case textEmbedDim = "text_embed_dim", adalnLoraDim = "adaln_lora_dim", maxSize = "max_size"
        case patchSize = "patch_size", ropeScale = "rope_scale", concatPaddingMask = "concat_padding_mask"
        case extraPosEmbedType = "extra_pos_embed_type", useCrossattnProjection = "use_crossattn_projection"
        case crossattnProjInChannels = "crossattn_proj_in_channels"
        case encoderHiddenStatesChannels = "encoder_hidden_states_channels"
        case controlnetBlockEveryN = "controlnet_block_every_n", imgContextDimIn = "img_context_dim_in"
        case imgContextNumTokens = "img_context_num_tokens", imgContextDimOut = "img_context_dim_out"
    }

    /// Decodes diffusers' keys; absent keys take diffusers' defaults, `null` means None. Keys that
    /// diffusers 0.42.1 does not know are ignored, as diffusers ignores them.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: Keys.self)
        let d = CosmosConfiguration()
        func value<T: Decodable>(_ key: Keys, _ fallback: T) throws -> T { try c.diffusersRequired(key, fallback) }
        func optional<T: Decodable>(_ key: Keys, _ fallback: T?) throws -> T? { try c.diffusersOptional(key, default: fallback) }
        self.init(
            inChannels: try value(.inChannels, d.inChannels),
            outChannels: try value(.outChannels, d.outChannels),
            numAttentionHeads: try value(.numAttentionHeads, d.numAttentionHeads),
            attentionHeadDim: try value(.attentionHeadDim, d.attentionHeadDim),
            numLayers: try value(.numLayers, d.numLayers),
            mlpRatio: try value(.mlpRatio, d.mlpRatio),
            textEmbedDim: try value(.textEmbedDim, d.textEmbedDim),
            adalnLoraDim: try value(.adalnLoraDim, d.adalnLoraDim),
            maxSize: try value(.maxSize, d.maxSize),
            patchSize: try value(.patchSize, d.patchSize),
            ropeScale: try value(.ropeScale, d.ropeScale),
            concatPaddingMask: try c.diffusersFlag(.concatPaddingMask, d.concatPaddingMask),
            extraPosEmbedType: try optional(.extraPosEmbedType, d.extraPosEmbedType),
            useCrossattnProjection: try c.diffusersFlag(.useCrossattnProjection, d.useCrossattnProjection),
            crossattnProjInChannels: try value(.crossattnProjInChannels, d.crossattnProjInChannels),
            encoderHiddenStatesChannels: try value(.encoderHiddenStatesChannels, d.encoderHiddenStatesChannels),
            controlnetBlockEveryN: try optional(.controlnetBlockEveryN, d.controlnetBlockEveryN),
            imgContextDimIn: try optional(.imgContextDimIn, d.imgContextDimIn),
            imgContextNumTokens: try value(.imgContextNumTokens, d.imgContextNumTokens),
            imgContextDimOut: try value(.imgContextDimOut, d.imgContextDimOut)
        )
    }
}

// MARK: Cost model

extension CosmosConfiguration {
    /// Matmul and attention FLOPs of one forward (2 per multiply-add; norms, activations, RoPE and softmax
    /// are not counted), for `s` video tokens and `l` text tokens per sample.
    ///
    /// Per block and video token: self-attention projections `4D²`, cross-attention q/out `2D²`,
    /// feed-forward `2·D·ffn`; per text token `2·E·D` (cross k, v from width E); attention `2·S·D` per
    /// query for QKᵀ and AV against each key set. Plus the patch embedding, the time embedding, the
    /// adaLN-LoRA projections and the output projection.
    public func forwardFLOPs(batch b: Int, videoTokens s: Int, textTokens l: Int) -> Double {
        let d = Double(innerDim), bb = Double(b), ss = Double(s), ll = Double(l), e = Double(textEmbedDim)
        let lora = Double(adalnLoraDim)
        let patchIn = Double(patchInChannels * patchSize.reduce(1, *))
        var f = 2 * bb * ss * patchIn * d
        f += 2 * bb * (d * d + d * 3 * d)
        if useCrossattnProjection { f += 2 * bb * ll * Double(crossattnProjInChannels) * e }
        var block = 2 * bb * ss * (6 * d * d + 2 * d * Double(ffnDim))
        block += 2 * bb * ll * 2 * e * d
        block += 4 * bb * ss * ss * d + 4 * bb * ss * ll * d
        block += 2 * bb * 3 * (d * lora + lora * 3 * d)
        f += Double(numLayers) * block
        f += 2 * bb * (d * lora + lora * 2 * d)
        f += 2 * bb * ss * d * Double(outputTokenWidth)
        return f
    }

    /// Estimated bytes of the activations alive at once inside a block (the largest set): the tokens, the
    /// position embedding, the normalised copy, q, k, v and their normalised/rotated copies, the
    /// attention output and the feed-forward hidden layer before and after the activation — about
    /// `(11·D + 2·ffn)·S` floats — plus the text keys/values, the rotary tables and one query block of
    /// attention scores per thread.
    public func activationBytesEstimate(batch b: Int, videoTokens s: Int, textTokens l: Int) -> Int {
        let scores = attentionScoreFloats(keys: max(s, l)) * Parallelism.threadCount
        return 4 * (b * s * (11 * innerDim + 2 * ffnDim) + 3 * b * l * max(innerDim, encoderInputDim)
                    + 2 * s * attentionHeadDim + scores)
    }
}
