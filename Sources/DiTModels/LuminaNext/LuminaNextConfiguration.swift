import Foundation
import Tensors

/// The configuration of diffusers' `LuminaNextDiT2DModel` (Lumina-Next-SFT), decoded from `config.json`.
///
/// Field names and defaults are diffusers 0.42.1's constructor's. Every field that changes a shape or the
/// computation is honoured; ``validate()`` rejects, with a typed error naming the field, the values
/// diffusers cannot build or run (e.g. `num_kv_heads: null` with `qk_norm: true`, where diffusers' key
/// norm fails to build) and sizes beyond ``SizeLimits``. `sample_size` is not used by the model itself;
/// the pipeline derives its default proportional-attention base and rotary scaling from it
/// (``LuminaNextFamily/pipelineSettings(configuration:latentHeight:latentWidth:timestep:scalingWatershed:)``).
/// `scaling_factor` is stored by diffusers and never read; it is accepted (finite) and ignored likewise.
public struct LuminaNextConfiguration: DiTConfiguration {
    /// The diffusers class this configuration describes.
    public static let classNames = ["LuminaNextDiT2DModel"]

    /// The latent side the model was trained at (the pipeline's default size); the model itself does
    /// not use it, and `null` is accepted.
    public var sampleSize: Int? = 128
    /// Side of the square patches folded into each token.
    public var patchSize: Int = 2
    /// Latent channels in.
    public var inChannels: Int = 4
    /// The model width.
    public var hiddenSize: Int = 2304
    /// Number of transformer blocks (`layers`).
    public var numLayers: Int = 32
    /// Query heads per attention layer.
    public var numAttentionHeads: Int = 32
    /// Key/value heads (grouped-query attention); nil means one per query head.
    public var numKVHeads: Int? = nil
    /// The feed-forward hidden width is rounded up to a multiple of this.
    public var multipleOf: Int = 256
    /// Optional multiplier of the feed-forward hidden width.
    public var ffnDimMultiplier: Double? = nil
    /// Epsilon of the blocks' RMS norms.
    public var normEps: Float = 1e-5
    /// Whether the model also predicts a variance: `2·in_channels` output channels, of which the
    /// first `in_channels` are the prediction.
    public var learnSigma: Bool = true
    /// Whether queries and keys get a LayerNorm over all heads (`layer_norm_across_heads`).
    public var qkNorm: Bool = true
    /// Width of the caption features (`encoder_hidden_states`).
    public var crossAttentionDim: Int = 2048
    /// Stored and never used by diffusers 0.42.1.
    public var scalingFactor: Double = 1.0

    enum CodingKeys: String, CodingKey {
        case sampleSize = "sample_size", patchSize = "patch_size", inChannels = "in_channels"
        case hiddenSize = "hidden_size", numLayers = "num_layers", numAttentionHeads = "num_attention_heads"
        case numKVHeads = "num_kv_heads", multipleOf = "multiple_of", ffnDimMultiplier = "ffn_dim_multiplier"
        case normEps = "norm_eps", learnSigma = "learn_sigma", qkNorm = "qk_norm"
        case crossAttentionDim = "cross_attention_dim", scalingFactor = "scaling_factor"
    }

    /// A configuration with diffusers' defaults.
    public init() {}

    /// Decodes diffusers' keys; absent keys take diffusers' defaults, `null` means None (an error for
    /// the fields diffusers cannot build with None).
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = LuminaNextConfiguration()
        sampleSize = try c.diffusersOptional(.sampleSize, default: d.sampleSize)
        patchSize = try c.diffusersRequired(.patchSize, d.patchSize)
        inChannels = try c.diffusersRequired(.inChannels, d.inChannels)
        hiddenSize = try c.diffusersRequired(.hiddenSize, d.hiddenSize)
        numLayers = try c.diffusersRequired(.numLayers, d.numLayers)
        numAttentionHeads = try c.diffusersRequired(.numAttentionHeads, d.numAttentionHeads)
        numKVHeads = try c.diffusersOptional(.numKVHeads, default: d.numKVHeads)
        multipleOf = try c.diffusersRequired(.multipleOf, d.multipleOf)
        ffnDimMultiplier = try c.diffusersOptional(.ffnDimMultiplier, default: d.ffnDimMultiplier)
        normEps = Float(try c.diffusersRequired(.normEps, Double(d.normEps)))
        learnSigma = try c.diffusersFlag(.learnSigma, d.learnSigma)
        qkNorm = try c.diffusersFlag(.qkNorm, d.qkNorm)
        crossAttentionDim = try c.diffusersRequired(.crossAttentionDim, d.crossAttentionDim)
        scalingFactor = try c.diffusersOptional(.scalingFactor, default: d.scalingFactor) ?? d.scalingFactor
    }

    /// Channels per head (diffusers' `hidden_size // num_attention_heads`).
    public var headDim: Int { hiddenSize / max(numAttentionHeads, 1) }
    /// Key/value heads in effect.
    public var kvHeads: Int { numKVHeads ?? numAttentionHeads }
    /// The attention head layout.
    var heads: LuminaHeads { LuminaHeads(heads: numAttentionHeads, kvHeads: kvHeads, headDim: headDim) }
    /// Output channels: `2·in_channels` with `learn_sigma`, else `in_channels`.
    public var outChannels: Int { learnSigma ? 2 * inChannels : inChannels }
    /// The conditioning width `min(hidden_size, 1024)`.
    public var conditioningDim: Int { LuminaWidths.conditioning(hiddenSize) }
    /// The feed-forward hidden width: diffusers' `int(4·2·D/3)`, times the multiplier, rounded up to
    /// `multiple_of` (0 when the configuration is invalid; ``validate()`` reports it).
    public var ffnInnerDim: Int {
        let scaled = (Double(hiddenSize) * 8 / 3).rounded(.towardZero)
        guard scaled >= 0, scaled <= Double(SizeLimits.maximumExtent) else { return 0 }
        let base = Int(scaled)
        return LuminaFeedForward.innerDim(base: base, multipleOf: multipleOf, multiplier: ffnDimMultiplier) ?? 0
    }

    /// Throws ``ModelLoadError/unsupportedConfig(field:value:reason:)`` for the first value the model
    /// cannot run with.
    public func validate() throws(ModelLoadError) {
        try LuminaConfigChecks.validate(
            positive: [("sample_size", sampleSize ?? 1), ("patch_size", patchSize), ("in_channels", inChannels),
                       ("hidden_size", hiddenSize), ("num_attention_heads", numAttentionHeads), ("num_kv_heads", kvHeads),
                       ("multiple_of", multipleOf), ("cross_attention_dim", crossAttentionDim)],
            layers: [("num_layers", numLayers)], patch: patchSize, channels: 2 * inChannels, heads: numAttentionHeads,
            kvHeads: kvHeads, ffnBase: Int((Double(hiddenSize) * 8 / 3).rounded(.towardZero)), multipleOf: multipleOf,
            ffnMultiplier: ffnDimMultiplier, normEps: normEps)
        guard headDim > 0, headDim % 4 == 0 else {
            throw .unsupportedConfig(field: "num_attention_heads", value: "\(numAttentionHeads)",
                                     reason: "the head dimension hidden_size // num_attention_heads = \(headDim) must be "
                                        + "a positive multiple of 4 (the 2-D rotary embedding; diffusers asserts it)")
        }
        if numKVHeads == nil && qkNorm {
            throw .unsupportedConfig(field: "num_kv_heads", value: "null",
                                     reason: "with qk_norm: true diffusers builds the key norm as LayerNorm(head_dim · "
                                        + "num_kv_heads) and fails for None; give the number of key/value heads")
        }
        guard scalingFactor.isFinite else {
            throw .unsupportedConfig(field: "scaling_factor", value: "\(scalingFactor)", reason: "must be finite")
        }
    }
}

// MARK: Cost model

extension LuminaNextConfiguration {
    /// Matmul and attention FLOPs of one forward (2 per multiply-add; norms, activations, RoPE and softmax
    /// are not counted) for `s` image tokens and `l` caption tokens per sample.
    ///
    /// Per block and image token: the four projections of `x̂` (`2·q + 2·kv` wide), `to_out`, the SwiGLU
    /// feed-forward (`3·D·F`), and attention `4·S·q` (self) plus `4·L·q` (cross) for `q = heads·Dh`; per
    /// caption token the key/value projections; per sample the `norm1` modulation. Plus the patch
    /// embedding, the time and caption embeddings and `norm_out`.
    public func forwardFLOPs(batch b: Int, imageTokens s: Int, textTokens l: Int) -> Double {
        let bb = Double(b), ss = Double(s), ll = Double(l), d = Double(hiddenSize)
        let q = Double(heads.queryWidth), kv = Double(heads.kvWidth), f = Double(ffnInnerDim)
        let e = Double(crossAttentionDim), dt = Double(conditioningDim)
        let ch = Double(LuminaWidths.timestepChannels)
        let patchIn = Double(patchSize * patchSize * inChannels), patchOut = Double(patchSize * patchSize * outChannels)
        var flops = 2 * bb * ss * patchIn * d
        flops += 2 * bb * (ch * dt + dt * dt + e * dt)
        var block = 2 * bb * ss * d * (2 * q + 2 * kv) + 2 * bb * ll * e * 2 * kv
        block += 4 * bb * ss * ss * q + 4 * bb * ss * ll * q
        block += 2 * bb * ss * q * d + 2 * bb * ss * 3 * d * f
        block += 2 * bb * dt * 4 * d
        flops += Double(numLayers) * block
        flops += 2 * bb * dt * d + 2 * bb * ss * d * patchOut
        return flops
    }

    /// Estimated bytes of the activations alive at once inside a block (the largest set): the tokens, the
    /// modulated copy, the four projections and their split, normalised and rotated copies, repeated
    /// key/value heads, the two attention outputs and their gated sum, the feed-forward's `2F`-wide input
    /// projection and its `F`-wide gated output — about `(16·D + 3·F)·S` floats — plus the caption keys
    /// and values and one query block of attention scores per thread.
    public func activationBytesEstimate(batch b: Int, imageTokens s: Int, textTokens l: Int) -> Int {
        let scores = attentionScoreFloats(keys: max(s, l)) * Parallelism.threadCount
        return 4 * (b * s * (16 * hiddenSize + 3 * ffnInnerDim) + 4 * b * l * heads.queryWidth + scores)
    }
}
