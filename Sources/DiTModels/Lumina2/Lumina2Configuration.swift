import Foundation
import Tensors

/// The configuration of diffusers' `Lumina2Transformer2DModel` (Lumina-Image-2.0), decoded from
/// `config.json`.
///
/// Field names and defaults are diffusers 0.42.1's constructor's. Every field that changes a shape or the
/// computation is honoured; ``validate()`` rejects, with a typed error naming the field, the values
/// diffusers cannot build or run (rotary axes that do not add up to the head dimension, fewer
/// `axes_lens` than axes, `num_attention_heads` not a multiple of `num_kv_heads`, ...) and sizes beyond
/// ``SizeLimits``. `sample_size` and `scaling_factor` are stored by diffusers and never read by the
/// model; they are accepted and ignored likewise.
public struct Lumina2Configuration: DiTConfiguration {
    /// The diffusers class this configuration describes.
    public static let classNames = ["Lumina2Transformer2DModel"]

    /// Stored, unused by the model.
    public var sampleSize: Int? = 128
    /// Side of the square patches folded into each token.
    public var patchSize: Int = 2
    /// Latent channels in.
    public var inChannels: Int = 16
    /// Latent channels out as configured; nil (or 0) means `in_channels`.
    public var outChannelsSetting: Int? = nil
    /// The model width.
    public var hiddenSize: Int = 2304
    /// Number of joint transformer blocks (`layers`).
    public var numLayers: Int = 26
    /// Number of blocks in each refiner (`noise_refiner`, `context_refiner`).
    public var numRefinerLayers: Int = 2
    /// Query heads per attention layer.
    public var numAttentionHeads: Int = 24
    /// Key/value heads (grouped-query attention); nil means one per query head.
    public var numKVHeads: Int? = 8
    /// The feed-forward hidden width (`4·D`, times the multiplier) is rounded up to a multiple of this.
    public var multipleOf: Int = 256
    /// Optional multiplier of the feed-forward hidden width.
    public var ffnDimMultiplier: Double? = nil
    /// Epsilon of the blocks' and the caption embedder's RMS norms.
    public var normEps: Float = 1e-5
    /// Stored, unused by the model.
    public var scalingFactor: Double = 1.0
    /// Rotary channels per position axis (caption index, row, column); they add up to the head dimension.
    public var axesDimRope: [Int] = [32, 32, 32]
    /// Positions covered per axis: a caption longer than `axes_lens[0] − 1` tokens or a grid beyond
    /// `axes_lens[1] × axes_lens[2]` patches is rejected, as diffusers' tables end there.
    public var axesLens: [Int] = [300, 512, 512]
    /// Width of the caption features (`encoder_hidden_states`).
    public var capFeatDim: Int = 1024

    enum CodingKeys: String, CodingKey {
        case sampleSize = "sample_size", patchSize = "patch_size", inChannels = "in_channels"
        case outChannelsSetting = "out_channels", hiddenSize = "hidden_size", numLayers = "num_layers"
        case numRefinerLayers = "num_refiner_layers", numAttentionHeads = "num_attention_heads"
        case numKVHeads = "num_kv_heads", multipleOf = "multiple_of", ffnDimMultiplier = "ffn_dim_multiplier"
        case normEps = "norm_eps", scalingFactor = "scaling_factor", axesDimRope = "axes_dim_rope"
        case axesLens = "axes_lens", capFeatDim = "cap_feat_dim"
    }

    /// A configuration with diffusers' defaults.
    public init() {}

    /// Decodes diffusers' keys; absent keys take diffusers' defaults, `null` means None (an error for
    /// the fields diffusers cannot build with None).
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = Lumina2Configuration()
        sampleSize = try c.diffusersOptional(.sampleSize, default: d.sampleSize)
        patchSize = try c.diffusersRequired(.patchSize, d.patchSize)
        inChannels = try c.diffusersRequired(.inChannels, d.inChannels)
        let out: Int? = try c.diffusersOptional(.outChannelsSetting, default: d.outChannelsSetting)
        outChannelsSetting = out == 0 ? nil : out
        hiddenSize = try c.diffusersRequired(.hiddenSize, d.hiddenSize)
        numLayers = try c.diffusersRequired(.numLayers, d.numLayers)
        numRefinerLayers = try c.diffusersRequired(.numRefinerLayers, d.numRefinerLayers)
        numAttentionHeads = try c.diffusersRequired(.numAttentionHeads, d.numAttentionHeads)
        numKVHeads = try c.diffusersOptional(.numKVHeads, default: d.numKVHeads)
        multipleOf = try c.diffusersRequired(.multipleOf, d.multipleOf)
        ffnDimMultiplier = try c.diffusersOptional(.ffnDimMultiplier, default: d.ffnDimMultiplier)
        normEps = Float(try c.diffusersRequired(.normEps, Double(d.normEps)))
        scalingFactor = try c.diffusersOptional(.scalingFactor, default: d.scalingFactor) ?? d.scalingFactor
        axesDimRope = try c.diffusersRequired(.axesDimRope, d.axesDimRope)
        axesLens = try c.diffusersRequired(.axesLens, d.axesLens)
        capFeatDim = try c.diffusersRequired(.capFeatDim, d.capFeatDim)
    }

    /// Channels per head (diffusers' `hidden_size // num_attention_heads`).
    public var headDim: Int { hiddenSize / max(numAttentionHeads, 1) }
    /// Key/value heads in effect.
    public var kvHeads: Int { numKVHeads ?? numAttentionHeads }
    /// The attention head layout.
    var heads: LuminaHeads { LuminaHeads(heads: numAttentionHeads, kvHeads: kvHeads, headDim: headDim) }
    /// Output channels per token before patch expansion (`out_channels or in_channels`).
    public var outChannels: Int { outChannelsSetting ?? inChannels }
    /// The conditioning width `min(hidden_size, 1024)`.
    public var conditioningDim: Int { LuminaWidths.conditioning(hiddenSize) }
    /// The feed-forward hidden width: `4·D`, times the multiplier, rounded up to `multiple_of` (0 when the
    /// configuration is invalid; ``validate()`` reports it).
    public var ffnInnerDim: Int {
        LuminaFeedForward.innerDim(base: 4 * hiddenSize, multipleOf: multipleOf, multiplier: ffnDimMultiplier) ?? 0
    }

    /// Throws ``ModelLoadError/unsupportedConfig(field:value:reason:)`` for the first value the model
    /// cannot run with.
    public func validate() throws(ModelLoadError) {
        try LuminaConfigChecks.validate(
            positive: [("patch_size", patchSize), ("in_channels", inChannels), ("out_channels", outChannels),
                       ("hidden_size", hiddenSize), ("num_attention_heads", numAttentionHeads), ("num_kv_heads", kvHeads),
                       ("multiple_of", multipleOf), ("cap_feat_dim", capFeatDim), ("sample_size", sampleSize ?? 1)],
            layers: [("num_layers", numLayers), ("num_refiner_layers", numRefinerLayers)], patch: patchSize,
            channels: max(inChannels, outChannels), heads: numAttentionHeads, kvHeads: kvHeads, ffnBase: 4 * hiddenSize,
            multipleOf: multipleOf, ffnMultiplier: ffnDimMultiplier, normEps: normEps)
        guard headDim > 0 else {
            throw .unsupportedConfig(field: "num_attention_heads", value: "\(numAttentionHeads)",
                                     reason: "hidden_size // num_attention_heads must be at least 1")
        }
        let axes = "\(axesDimRope)"
        guard (1...3).contains(axesDimRope.count) else {
            throw .unsupportedConfig(field: "axes_dim_rope", value: axes,
                                     reason: "needs 1 to 3 axes (diffusers' position ids are caption index, row, column)")
        }
        for a in axesDimRope { try SizeLimits.checkConfig("axes_dim_rope", a) }
        guard axesDimRope.allSatisfy({ $0 > 0 && $0 % 2 == 0 }) else {
            throw .unsupportedConfig(field: "axes_dim_rope", value: axes, reason: "every axis dimension must be positive and even")
        }
        guard axesDimRope.reduce(0, +) == headDim else {
            throw .unsupportedConfig(field: "axes_dim_rope", value: axes,
                                     reason: "the axes must add up to the head dimension hidden_size // num_attention_heads = \(headDim)")
        }
        guard axesLens.count >= axesDimRope.count else {
            throw .unsupportedConfig(field: "axes_lens", value: "\(axesLens)",
                                     reason: "needs a length for each of the \(axesDimRope.count) rotary axes")
        }
        for l in axesLens {
            guard l > 0 else { throw .unsupportedConfig(field: "axes_lens", value: "\(axesLens)", reason: "lengths must be positive") }
            try SizeLimits.checkConfig("axes_lens", l)
        }
    }
}

// MARK: Cost model

extension Lumina2Configuration {
    /// Matmul and attention FLOPs of one forward (2 per multiply-add; norms, activations, RoPE and softmax
    /// are not counted) for `s` image tokens and `l` caption tokens per sample, all of them valid (so
    /// the joint sequence has `l + s` tokens).
    ///
    /// A block over T tokens costs `2·T·D·(2q + 2kv)` for q, k, v and `to_out`, `6·T·D·F` for the
    /// SwiGLU feed-forward and `4·T²·q` for attention (`q = heads·Dh`), plus its `norm1` modulation when
    /// it has one. The context refiner runs on the L caption tokens, the noise refiner on the S image
    /// tokens, the layers on L + S. Plus the time and caption embeddings, `x_embedder` and `norm_out`.
    public func forwardFLOPs(batch b: Int, imageTokens s: Int, textTokens l: Int) -> Double {
        let bb = Double(b), d = Double(hiddenSize)
        let q = Double(heads.queryWidth), kv = Double(heads.kvWidth), f = Double(ffnInnerDim)
        let dt = Double(conditioningDim), ch = Double(LuminaWidths.timestepChannels)
        func block(_ t: Double, modulated: Bool) -> Double {
            var x = 2 * bb * t * d * (2 * q + 2 * kv) + 6 * bb * t * d * f + 4 * bb * t * t * q
            if modulated { x += 2 * bb * dt * 4 * d }
            return x
        }
        let ss = Double(s), ll = Double(l)
        var flops = 2 * bb * (ch * dt + dt * dt) + 2 * bb * ll * Double(capFeatDim) * d
        flops += 2 * bb * ss * Double(patchSize * patchSize * inChannels) * d
        flops += Double(numRefinerLayers) * (block(ll, modulated: false) + block(ss, modulated: true))
        flops += Double(numLayers) * block(ll + ss, modulated: true)
        flops += 2 * bb * dt * d + 2 * bb * ss * d * Double(patchSize * patchSize * outChannels)
        return flops
    }

    /// Estimated bytes of the activations alive at once inside a joint block (the largest set) over
    /// `T = L + S` tokens: the joint sequence and its modulated copy, q/k/v with their split, normalised
    /// and rotated copies and repeated key/value heads, the attention output and its projection, the
    /// feed-forward's `2F`-wide input projection and `F`-wide gated output — about `(14·D + 3·F)·T`
    /// floats — plus one query block of attention scores per thread.
    public func activationBytesEstimate(batch b: Int, imageTokens s: Int, textTokens l: Int) -> Int {
        let t = s + l
        let scores = attentionScoreFloats(keys: t) * Parallelism.threadCount
        return 4 * (b * t * (14 * hiddenSize + 3 * ffnInnerDim) + scores)
    }
}
