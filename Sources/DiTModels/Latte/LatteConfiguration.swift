import Foundation
import Tensors

/// The configuration of a diffusers `LatteTransformer3DModel` (diffusers 0.42.1, Latte-1), decoded from
/// `config.json`.
///
/// Field names and defaults are diffusers' constructor's. Every field that changes a shape or the
/// computation is honoured: the width (`num_attention_heads · attention_head_dim`), `num_layers` (spatial
/// and temporal blocks alike), `cross_attention_dim` (null: the spatial blocks have no cross-attention),
/// `attention_bias`, `activation_fn`, `norm_elementwise_affine`, `norm_eps`, `sample_size` (the base grid and
/// the interpolation scale of the 2-D sin-cos table), `patch_size`, `out_channels` and `video_length` (the
/// temporal sin-cos table). `dropout` and `num_embeds_ada_norm` do not change the inference forward.
/// ``validate()`` rejects what diffusers cannot build or run, and `norm_type`s other than
/// `ada_norm_single` (Latte's forward feeds every block the adaLN-single modulation), with a typed error.
public struct LatteConfiguration: DiTConfiguration {
    /// The diffusers class this configuration describes.
    public static let classNames = ["LatteTransformer3DModel"]

    /// Attention heads per block.
    public var numAttentionHeads: Int = 16
    /// Channels per head; the model width is `numAttentionHeads · attentionHeadDim`.
    public var attentionHeadDim: Int = 88
    /// Latent channels in (required: diffusers cannot build the patch embedding without it).
    public var inChannels: Int? = nil
    /// Output channels per pixel as configured; nil (or 0) means `inChannels`, as diffusers' `out_channels`.
    public var outChannelsSetting: Int? = nil
    /// Number of spatial blocks, and of temporal blocks.
    public var numLayers: Int = 1
    /// Width the cross-attention keys/values read (it must be the model width: they read the projected
    /// caption); nil: the spatial blocks have no cross-attention.
    public var crossAttentionDim: Int? = nil
    /// Whether the q/k/v projections have biases (the output projections always do).
    public var attentionBias: Bool = false
    /// The side of the square sample the 2-D sin-cos table is laid out for (`base_size = sample_size / patch_size`;
    /// interpolation scale `max(sample_size / 64, 1)`).
    public var sampleSize: Int = 64
    /// Side of the square patch (required).
    public var patchSize: Int? = nil
    /// The feed-forward activation (`activation_fn`).
    public var activationFn: String = "geglu"
    /// The block norm type; only `ada_norm_single` (Latte-1) is supported.
    public var normType: String = "layer_norm"
    /// Whether `norm1`/`norm2` of every block have a learned scale and bias.
    public var normElementwiseAffine: Bool = true
    /// Epsilon of the blocks' LayerNorms.
    public var normEps: Float = 1e-5
    /// Width of the caption features (`caption_projection` input; required).
    public var captionChannels: Int? = nil
    /// Rows of the temporal sin-cos table added before the first temporal block (it must be the number of
    /// latent frames, or 1).
    public var videoLength: Int = 16

    /// Width of the sinusoidal timestep features of adaLN-single (fixed in diffusers).
    public static let timestepChannels = 256
    /// Epsilon of the output LayerNorm (fixed in diffusers).
    public static let outputNormEps: Float = 1e-6
    /// Feed-forward width as a multiple of the model width (diffusers' `FeedForward` default).
    public static let feedForwardMultiple = 4

    /// A configuration with diffusers' constructor defaults (whose required fields are unset).
    public init() {}

    /// A configuration with the fields Latte-1 sets; the others take diffusers' defaults.
    public init(numAttentionHeads: Int, attentionHeadDim: Int, inChannels: Int, outChannels: Int?, numLayers: Int,
                crossAttentionDim: Int?, attentionBias: Bool, sampleSize: Int, patchSize: Int, activationFn: String,
                normType: String = "ada_norm_single", normElementwiseAffine: Bool, normEps: Float,
                captionChannels: Int, videoLength: Int) {
        self.numAttentionHeads = numAttentionHeads
        self.attentionHeadDim = attentionHeadDim
        self.inChannels = inChannels
        self.outChannelsSetting = outChannels
        self.numLayers = numLayers
        self.crossAttentionDim = crossAttentionDim
        self.attentionBias = attentionBias
        self.sampleSize = sampleSize
        self.patchSize = patchSize
        self.activationFn = activationFn
        self.normType = normType
        self.normElementwiseAffine = normElementwiseAffine
        self.normEps = normEps
        self.captionChannels = captionChannels
        self.videoLength = videoLength
    }

    private enum Keys: String, CodingKey {
        case numAttentionHeads = "num_attention_heads", attentionHeadDim = "attention_head_dim"
        case inChannels = "in_channels", outChannels = "out_channels", numLayers = "num_layers"
        case crossAttentionDim = "cross_attention_dim", attentionBias = "attention_bias", sampleSize = "sample_size"
        case patchSize = "patch_size", activationFn = "activation_fn", normType = "norm_type"
        case normElementwiseAffine = "norm_elementwise_affine", normEps = "norm_eps"
        case captionChannels = "caption_channels", videoLength = "video_length"
    }

    /// Decodes diffusers' keys; absent keys take diffusers' defaults, `null` means None. Keys diffusers
    /// does not know, and `dropout` / `num_embeds_ada_norm`, are ignored.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: Keys.self)
        let d = LatteConfiguration()
        numAttentionHeads = try c.diffusersRequired(.numAttentionHeads, d.numAttentionHeads)
        attentionHeadDim = try c.diffusersRequired(.attentionHeadDim, d.attentionHeadDim)
        inChannels = try c.diffusersOptional(.inChannels, default: d.inChannels)
        let out: Int? = try c.diffusersOptional(.outChannels, default: d.outChannelsSetting)
        outChannelsSetting = out == 0 ? nil : out
        numLayers = try c.diffusersRequired(.numLayers, d.numLayers)
        crossAttentionDim = try c.diffusersOptional(.crossAttentionDim, default: d.crossAttentionDim)
        attentionBias = try c.diffusersFlag(.attentionBias, d.attentionBias)
        sampleSize = try c.diffusersRequired(.sampleSize, d.sampleSize)
        patchSize = try c.diffusersOptional(.patchSize, default: d.patchSize)
        activationFn = try c.diffusersRequired(.activationFn, d.activationFn)
        normType = try c.diffusersRequired(.normType, d.normType)
        normElementwiseAffine = try c.diffusersFlag(.normElementwiseAffine, d.normElementwiseAffine)
        normEps = Float(try c.diffusersRequired(.normEps, Double(d.normEps)))
        captionChannels = try c.diffusersOptional(.captionChannels, default: d.captionChannels)
        videoLength = try c.diffusersRequired(.videoLength, d.videoLength)
    }

    /// The model width D.
    public var innerDim: Int { numAttentionHeads * attentionHeadDim }
    /// Latent channels in (0 when unset; ``validate()`` refuses that).
    public var latentChannels: Int { inChannels ?? 0 }
    /// Output channels per pixel: `out_channels`, or `in_channels` when it is null or 0.
    public var outChannels: Int { outChannelsSetting ?? latentChannels }
    /// Caption feature width (0 when unset; ``validate()`` refuses that).
    public var captionWidth: Int { captionChannels ?? 0 }
    /// The patch side (0 when unset; ``validate()`` refuses that).
    public var patch: Int { patchSize ?? 0 }
    /// Width of the output projection: `patch² · outChannels`.
    public var outputTokenWidth: Int { patch * patch * outChannels }
    /// The grid side the 2-D sin-cos positions are measured against: `sample_size / patch_size`.
    public var baseGridSize: Int { patch == 0 ? 0 : sampleSize / patch }
    /// diffusers' `max(sample_size // 64, 1)`: the 2-D sin-cos positions are divided by it.
    public var positionInterpolationScale: Int { max(sampleSize / 64, 1) }
    /// Hidden width of the feed-forwards.
    public var feedForwardDim: Int { Self.feedForwardMultiple * innerDim }
    /// The feed-forward activation (valid after ``validate()``).
    var feedForwardActivation: FeedForwardActivation {
        // validate() refuses every name FeedForwardActivation does not know, so a model never sees the fallback.
        FeedForwardActivation(diffusersName: activationFn) ?? .gelu(.tanh)
    }
    /// Whether the spatial blocks have a cross-attention to the caption.
    public var hasCrossAttention: Bool { crossAttentionDim != nil }

    /// Throws ``ModelLoadError/unsupportedConfig(field:value:reason:)`` for the first value the model
    /// cannot run with.
    public func validate() throws(ModelLoadError) {
        let required: [(String, Int?)] = [("in_channels", inChannels), ("patch_size", patchSize),
                                          ("caption_channels", captionChannels)]
        for (field, value) in required {
            guard let value else {
                throw .unsupportedConfig(field: field, value: "null", reason: "diffusers cannot build the model without it; set a positive integer")
            }
            guard value > 0 else { throw .unsupportedConfig(field: field, value: "\(value)", reason: "must be a positive integer") }
            try SizeLimits.checkConfig(field, value)
        }
        let positive: [(String, Int?)] = [("num_attention_heads", numAttentionHeads), ("attention_head_dim", attentionHeadDim),
                                          ("out_channels", outChannelsSetting), ("sample_size", sampleSize),
                                          ("cross_attention_dim", crossAttentionDim)]
        for case let (field, value?) in positive {
            guard value > 0 else { throw .unsupportedConfig(field: field, value: "\(value)", reason: "must be a positive integer") }
            try SizeLimits.checkConfig(field, value)
        }
        for (field, value) in [("num_layers", numLayers), ("video_length", videoLength)] {
            guard value >= 0 else { throw .unsupportedConfig(field: field, value: "\(value)", reason: "must not be negative") }
            try SizeLimits.checkConfig(field, value)
        }
        // Each factor is at most 2¹⁶ here, so these products cannot overflow.
        guard innerDim <= SizeLimits.maximumExtent else {
            throw .unsupportedConfig(field: "num_attention_heads", value: "\(numAttentionHeads)",
                                     reason: "the model width num_attention_heads · attention_head_dim = \(innerDim) "
                                        + "exceeds the supported maximum of \(SizeLimits.maximumExtent)")
        }
        guard innerDim % 4 == 0 else {
            throw .unsupportedConfig(field: "attention_head_dim", value: "\(attentionHeadDim)",
                                     reason: "the 2-D sin-cos position table needs a model width divisible by 4, got \(innerDim)")
        }
        guard outputTokenWidth <= SizeLimits.maximumExtent else {
            throw .unsupportedConfig(field: "patch_size", value: "\(patch)",
                                     reason: "the output width patch_size² · out_channels = \(outputTokenWidth) "
                                        + "exceeds the supported maximum of \(SizeLimits.maximumExtent)")
        }
        guard sampleSize >= patch else {
            throw .unsupportedConfig(field: "sample_size", value: "\(sampleSize)",
                                     reason: "must be at least patch_size = \(patch): diffusers divides positions by sample_size // patch_size")
        }
        if let crossAttentionDim, crossAttentionDim != innerDim {
            throw .unsupportedConfig(field: "cross_attention_dim", value: "\(crossAttentionDim)",
                                     reason: "the cross-attention reads the projected caption, which is num_attention_heads · "
                                        + "attention_head_dim = \(innerDim) wide; use that value, or null for no cross-attention")
        }
        guard normType == "ada_norm_single" else {
            throw .unsupportedConfig(field: "norm_type", value: normType,
                                     reason: "LatteTransformer3DModel modulates its blocks with adaLN-single; only \"ada_norm_single\" is supported")
        }
        guard FeedForwardActivation(diffusersName: activationFn) != nil else {
            throw .unsupportedConfig(field: "activation_fn", value: activationFn,
                                     reason: "use gelu, gelu-approximate, geglu, geglu-approximate, swiglu or linear-silu")
        }
        guard normEps.isFinite, normEps >= 0 else {
            throw .unsupportedConfig(field: "norm_eps", value: "\(normEps)", reason: "must be finite and not negative")
        }
    }
}

// MARK: Cost model

extension LatteConfiguration {
    /// Matmul and attention FLOPs of one forward (2 per multiply-add; norms, activations and softmax are
    /// not counted) for `b` samples of `f` latent frames, `t` tokens per frame and `l` caption tokens.
    ///
    /// Per token and layer: spatial self-attention projections `4D²`, cross-attention q/out `2D²`,
    /// temporal self-attention `4D²`, two feed-forwards `2·D·ffn` each (a gated one reads `2·ffn`);
    /// attention `4·T·D` per token (spatial, over a frame's tokens), `4·F·D` (temporal), `4·L·D` (cross);
    /// per caption token `2D²` (cross k, v). Plus the patch embedding, adaLN-single, the caption
    /// projection and the output projection.
    public func forwardFLOPs(batch b: Int, frames f: Int, tokensPerFrame t: Int, textTokens l: Int) -> Double {
        let d = Double(innerDim), bb = Double(b), ff = Double(f), tt = Double(t), ll = Double(l)
        let n = bb * ff * tt
        let ffnIn = Double(feedForwardActivation.isGated ? 2 * feedForwardDim : feedForwardDim)
        let ffn = 2 * n * d * (ffnIn + Double(feedForwardDim))
        var total = 2 * n * Double(latentChannels * patch * patch) * d
        total += 2 * bb * (Double(Self.timestepChannels) * d + d * d + d * 6 * d)
        total += 2 * bb * ll * (Double(captionWidth) * d + d * d)
        var layer = 2 * n * 4 * d * d + 4 * n * tt * d + ffn   // spatial self-attention, feed-forward
        if hasCrossAttention { layer += 2 * n * 2 * d * d + 2 * bb * ff * ll * 2 * d * d + 4 * n * ll * d }
        layer += 2 * n * 4 * d * d + 4 * n * ff * d + ffn      // temporal self-attention, feed-forward
        total += Double(numLayers) * layer
        total += 2 * n * d * Double(outputTokenWidth)
        return total
    }

    /// Estimated bytes of the activations alive at once inside a block (the largest set): the tokens, the
    /// normalised copy, q, k, v, the attention output and its re-laid-out copies, the feed-forward hidden
    /// layer before and after the activation — about `(10·D + 3·ffn)` floats per token — plus the
    /// caption keys/values per frame and one query block of attention scores per thread.
    public func activationBytesEstimate(batch b: Int, frames f: Int, tokensPerFrame t: Int, textTokens l: Int) -> Int {
        let n = b * f * t
        let scores = attentionScoreFloats(keys: max(t, f, l)) * Parallelism.threadCount
        return 4 * (n * (10 * innerDim + 3 * feedForwardDim) + 3 * b * l * innerDim + scores)
    }
}
