import Foundation
import Tensors

/// The configuration of a diffusers `LTXVideoTransformer3DModel` (diffusers 0.42.1), decoded from
/// `config.json`.
///
/// Field names and defaults follow the diffusers constructor (LTX-Video 0.9.x: 128 latent channels,
/// 32 heads × 64, 28 layers, T5-XXL captions). Every field that changes a parameter shape or the
/// computation is honoured; values diffusers cannot run are rejected by ``validate()`` with
/// ``ModelLoadError/unsupportedConfig(field:value:reason:)``.
public struct LTXVideoConfiguration: DiTConfiguration {
    /// The diffusers class names this configuration builds.
    public static let classNames = ["LTXVideoTransformer3DModel"]

    /// Channels of each packed latent token (`proj_in` input width).
    public var inChannels: Int
    /// Channels of each output token (diffusers: `out_channels or in_channels`).
    public var outChannels: Int
    /// The spatial patch extent. The tokens arrive packed, so it only scales the rotary grid's height and
    /// width coordinates (`rope.patch_size`).
    public var patchSize: Int
    /// The temporal patch extent; it only scales the rotary grid's frame coordinate.
    public var patchSizeT: Int
    /// Attention heads per layer.
    public var numAttentionHeads: Int
    /// Channels per head; the model width is `numAttentionHeads · attentionHeadDim`.
    public var attentionHeadDim: Int
    /// The key/value input width of the cross-attention. The caption projection produces tokens of the
    /// model width, so diffusers 0.42.1 can only run with this equal to the model width (``validate()``).
    public var crossAttentionDim: Int
    /// Number of transformer blocks.
    public var numLayers: Int
    /// The feed-forward activation (`activation_fn`): `gelu`, `gelu-approximate`, `geglu`,
    /// `geglu-approximate` (diffusers' `ApproximateGELU`, `x·σ(1.702·x)`), `swiglu`, `linear-silu`.
    public var activationFn: String
    /// The query/key normalisation; diffusers 0.42.1 implements only `rms_norm_across_heads`.
    public var qkNorm: String?
    /// When true, the blocks' `norm1`/`norm2` RMS norms have a learned scale (`weight`).
    public var normElementwiseAffine: Bool
    /// Epsilon of the blocks' `norm1`/`norm2` (the q/k norms use 1e-5, the output LayerNorm 1e-6,
    /// fixed by diffusers).
    public var normEps: Float
    /// Width of the text-encoder features (4096 for T5-XXL).
    public var captionChannels: Int
    /// Whether the attention q/k/v projections have biases.
    public var attentionBias: Bool
    /// Whether the attention output projections (`to_out.0`) have biases.
    public var attentionOutBias: Bool

    /// A configuration; the defaults are diffusers' constructor defaults.
    public init(
        inChannels: Int = 128, outChannels: Int? = 128, patchSize: Int = 1, patchSizeT: Int = 1,
        numAttentionHeads: Int = 32, attentionHeadDim: Int = 64, crossAttentionDim: Int = 2048,
        numLayers: Int = 28, activationFn: String = "gelu-approximate", qkNorm: String? = "rms_norm_across_heads",
        normElementwiseAffine: Bool = false, normEps: Float = 1e-6, captionChannels: Int = 4096,
        attentionBias: Bool = true, attentionOutBias: Bool = true
    ) {
        self.inChannels = inChannels
        self.outChannels = (outChannels ?? 0) == 0 ? inChannels : outChannels!
        self.patchSize = patchSize
        self.patchSizeT = patchSizeT
        self.numAttentionHeads = numAttentionHeads
        self.attentionHeadDim = attentionHeadDim
        self.crossAttentionDim = crossAttentionDim
        self.numLayers = numLayers
        self.activationFn = activationFn
        self.qkNorm = qkNorm
        self.normElementwiseAffine = normElementwiseAffine
        self.normEps = normEps
        self.captionChannels = captionChannels
        self.attentionBias = attentionBias
        self.attentionOutBias = attentionOutBias
    }

    /// The model width `numAttentionHeads · attentionHeadDim`.
    public var innerDim: Int { numAttentionHeads * attentionHeadDim }

    /// The feed-forward hidden width (diffusers' `FeedForward` default `mult = 4`).
    public var ffnDim: Int { 4 * innerDim }

    /// The feed-forward activation named by ``activationFn`` (nil for a name diffusers' `FeedForward`
    /// does not accept).
    public var feedForwardActivation: FeedForwardActivation? { FeedForwardActivation(diffusersName: activationFn) }

    /// Checks every field.
    /// - Throws: ``ModelLoadError/unsupportedConfig(field:value:reason:)`` naming the first bad field.
    public func validate() throws(ModelLoadError) {
        for (field, value) in [("in_channels", inChannels), ("out_channels", outChannels), ("patch_size", patchSize),
                               ("patch_size_t", patchSizeT), ("num_attention_heads", numAttentionHeads),
                               ("attention_head_dim", attentionHeadDim), ("cross_attention_dim", crossAttentionDim),
                               ("caption_channels", captionChannels)] {
            guard value > 0 else {
                throw .unsupportedConfig(field: field, value: "\(value)", reason: "must be a positive integer")
            }
            try SizeLimits.checkConfig(field, value)
        }
        guard numLayers >= 0 else {
            throw .unsupportedConfig(field: "num_layers", value: "\(numLayers)", reason: "must be 0 or more")
        }
        try SizeLimits.checkConfig("num_layers", numLayers)
        // In Double: two extents of up to 2¹⁶ each would overflow nothing, but 4·D must stay bounded too.
        let width = Double(numAttentionHeads) * Double(attentionHeadDim)
        guard 4 * width <= Double(SizeLimits.maximumExtent) else {
            throw .unsupportedConfig(field: "num_attention_heads", value: "\(numAttentionHeads)",
                                     reason: "the feed-forward width 4 · num_attention_heads · attention_head_dim = "
                                        + "\(String(format: "%.0f", 4 * width)) exceeds the supported maximum of \(SizeLimits.maximumExtent)")
        }
        guard innerDim % 2 == 0 else {
            throw .unsupportedConfig(field: "attention_head_dim", value: "\(attentionHeadDim)",
                                     reason: "the rotary embedding rotates channel pairs of the full width "
                                        + "num_attention_heads · attention_head_dim = \(innerDim), which must be even")
        }
        guard crossAttentionDim == innerDim else {
            throw .unsupportedConfig(field: "cross_attention_dim", value: "\(crossAttentionDim)",
                                     reason: "attn2.to_k/to_v read the caption projection's output, which is "
                                        + "num_attention_heads · attention_head_dim = \(innerDim) wide (diffusers fails in "
                                        + "forward otherwise); use \(innerDim)")
        }
        guard qkNorm == "rms_norm_across_heads" else {
            throw .unsupportedConfig(field: "qk_norm", value: qkNorm ?? "null",
                                     reason: "diffusers 0.42.1 LTXAttention implements only \"rms_norm_across_heads\"")
        }
        guard feedForwardActivation != nil else {
            throw .unsupportedConfig(field: "activation_fn", value: activationFn,
                                     reason: "diffusers' FeedForward accepts gelu, gelu-approximate, geglu, geglu-approximate, swiglu, linear-silu")
        }
        guard normEps.isFinite, normEps >= 0 else {
            throw .unsupportedConfig(field: "norm_eps", value: "\(normEps)", reason: "must be a finite number >= 0")
        }
    }
}

extension LTXVideoConfiguration {
    private enum Keys: String, CodingKey {
        case inChannels = "in_channels", outChannels = "out_channels", patchSize = "patch_size"
        case patchSizeT = "patch_size_t", numAttentionHeads = "num_attention_heads"
        case attentionHeadDim = "attention_head_dim", crossAttentionDim = "cross_attention_dim"
        case numLayers = "num_layers", activationFn = "activation_fn", qkNorm = "qk_norm"
        case normElementwiseAffine = "norm_elementwise_affine", normEps = "norm_eps"
        case captionChannels = "caption_channels", attentionBias = "attention_bias"
        case attentionOutBias = "attention_out_bias"
    }

    /// Decodes diffusers' keys; absent keys take diffusers' defaults, `null` means None. Keys diffusers
    /// 0.42.1 does not know are ignored, as diffusers ignores them.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: Keys.self)
        let d = LTXVideoConfiguration()
        func value<T: Decodable>(_ key: Keys, _ fallback: T) throws -> T {
            try c.decodeIfPresent(T.self, forKey: key) ?? fallback
        }
        func optional<T: Decodable>(_ key: Keys, _ fallback: T?) throws -> T? {
            guard c.contains(key) else { return fallback }
            return try c.decodeIfPresent(T.self, forKey: key)
        }
        self.init(
            inChannels: try value(.inChannels, d.inChannels),
            outChannels: try optional(.outChannels, d.outChannels),
            patchSize: try value(.patchSize, d.patchSize),
            patchSizeT: try value(.patchSizeT, d.patchSizeT),
            numAttentionHeads: try value(.numAttentionHeads, d.numAttentionHeads),
            attentionHeadDim: try value(.attentionHeadDim, d.attentionHeadDim),
            crossAttentionDim: try value(.crossAttentionDim, d.crossAttentionDim),
            numLayers: try value(.numLayers, d.numLayers),
            activationFn: try value(.activationFn, d.activationFn),
            qkNorm: try optional(.qkNorm, d.qkNorm),
            normElementwiseAffine: try value(.normElementwiseAffine, d.normElementwiseAffine),
            normEps: Float(try value(.normEps, Double(d.normEps))),
            captionChannels: try value(.captionChannels, d.captionChannels),
            attentionBias: try value(.attentionBias, d.attentionBias),
            attentionOutBias: try value(.attentionOutBias, d.attentionOutBias)
        )
    }
}

// MARK: - Cost model

extension LTXVideoConfiguration {
    /// Matmul and attention FLOPs of one forward (2 per multiply-add; norms, activations, RoPE and softmax
    /// are not counted), for `s` video tokens, `l` caption tokens and `timesteps` time-embedding rows
    /// per sample (1, or `s` for per-token timesteps).
    ///
    /// Per block and video token: self-attention q, k, v, out `4D²`, cross-attention q/out `2D²`,
    /// feed-forward `D·ffn_in + ffn·D` (`ffn_in = 2·ffn` for gated activations); per caption token the
    /// cross-attention k, v `2D²`; attention `4·S·K·D` for QKᵀ and PV against K keys. Plus `proj_in`,
    /// the time embedding (256 → D → D → 6D), the caption projection and `proj_out`.
    public func forwardFLOPs(batch b: Int, videoTokens s: Int, textTokens l: Int, timesteps t: Int = 1) -> Double {
        let d = Double(innerDim), bb = Double(b), ss = Double(s), ll = Double(l)
        let ffn = Double(ffnDim)
        let ffnIn = (feedForwardActivation?.isGated ?? false) ? 2 * ffn : ffn
        var f = 2 * bb * ss * Double(inChannels) * d
        f += 2 * bb * Double(t) * (Double(AdaLayerNormSingle.frequencyChannels) * d + d * d + d * 6 * d)
        f += 2 * bb * ll * (Double(captionChannels) * d + d * d)
        var block = 2 * bb * ss * (4 * d * d + 2 * d * d + d * ffnIn + ffn * d)
        block += 2 * bb * ll * 2 * d * d
        block += 4 * bb * ss * ss * d + 4 * bb * ss * ll * d
        f += Double(numLayers) * block
        f += 2 * bb * ss * d * Double(outChannels)
        return f
    }

    /// Estimated bytes of the activations alive at once inside a block (the largest set): the tokens,
    /// the normalised copy, the stacked q/k/v and their normalised/rotated copies, the attention output,
    /// the feed-forward hidden layer before and after the activation — about `(10·D + 2·ffn_in)·S`
    /// floats — the rotary tables (`2·S·D`), the caption and its keys/values, and one query block of
    /// attention scores per thread.
    public func activationBytesEstimate(batch b: Int, videoTokens s: Int, textTokens l: Int) -> Int {
        let ffnIn = (feedForwardActivation?.isGated ?? false) ? 2 * ffnDim : ffnDim
        let scores = attentionScoreFloats(keys: max(s, l)) * Parallelism.threadCount
        return 4 * (b * s * (10 * innerDim + 2 * ffnIn) + 2 * s * innerDim + 4 * b * l * innerDim + scores)
    }
}
