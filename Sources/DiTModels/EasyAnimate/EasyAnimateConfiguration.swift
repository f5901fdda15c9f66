import Foundation
import Tensors

/// The configuration of diffusers' `EasyAnimateTransformer3DModel` (diffusers 0.42.1), decoded from
/// `config.json`.
///
/// Field names and defaults are diffusers'. Every field that changes a parameter shape or the computation
/// is honoured; ``validate()`` rejects values the model cannot run with a typed error naming the field.
///
/// Keys the 0.42.1 class records but never reads in its forward are accepted and have no effect, as in
/// diffusers: `sample_width`, `sample_height` (the rotary base is the fixed 90 × 60 grid of
/// `EasyAnimateRotaryPosEmbed`, divided by the patch size), `dropout`, `time_position_encoding_type`,
/// `resize_inpaint_mask_directly`, `enable_text_attention_mask` and `add_noise_in_inpaint_model` (the
/// last four steer EasyAnimate's own pipelines and training code, not this transformer).
public struct EasyAnimateConfiguration: DiTConfiguration {
    /// The diffusers class this configuration describes.
    public static let classNames = ["EasyAnimateTransformer3DModel"]

    /// Attention heads per block.
    public var numAttentionHeads: Int = 48
    /// Channels per head; the model width is `numAttentionHeads · attentionHeadDim`. A multiple of 16
    /// (the 3-D rotary table splits it into `D/4 + 3D/8 + 3D/8` even parts).
    public var attentionHeadDim: Int = 64
    /// Channels of the patch embedding's input: the latent, plus the `inpaint_latents` and
    /// `control_latents` channels an I2V / V2V / control model concatenates to it. Required.
    public var inChannels: Int?
    /// Latent channels out (must equal the channels of `hidden_states`, which diffusers unpatchifies
    /// with). Required.
    public var outChannels: Int?
    /// Side of the per-frame square patch (Conv2d kernel and stride). Required.
    public var patchSize: Int?
    /// The feed-forward activation (`activation_fn`): `gelu`, `gelu-approximate`, `geglu`,
    /// `geglu-approximate`, `swiglu` or `linear-silu`.
    public var activationFn: String = "gelu-approximate"
    /// The activation inside `time_embedding` (`timestep_activation_fn`): `silu`/`swish` or `gelu`.
    public var timestepActivationFn: String = "silu"
    /// `downscale_freq_shift` of the sinusoidal timestep features.
    public var freqShift: Int = 0
    /// Number of transformer blocks.
    public var numLayers: Int = 48
    /// Blocks `0 ..< mmdit_layers` are MMDiT blocks (separate text projections and feed-forward); the
    /// rest project the joint sequence with one set of weights and share one feed-forward.
    public var mmditLayers: Int = 48
    /// Width of the timestep embedding `temb` (the adaLN conditioning).
    public var timeEmbedDim: Int = 512
    /// When true, each text projection is an RMSNorm (learned scale, ε = 1e-6) followed by the linear
    /// layer (`text_proj.0`, `text_proj.1`).
    public var addNormTextEncoder: Bool = false
    /// Width of the text-encoder features (`encoder_hidden_states`).
    public var textEmbedDim: Int = 3584
    /// Width of the second (T5) text features (`encoder_hidden_states_t5`), or nil for none.
    public var textEmbedDimT5: Int?
    /// Epsilon of the block, final and output norms.
    public var normEps: Float = 1e-5
    /// Whether those norms have a learned scale and bias.
    public var normElementwiseAffine: Bool = true
    /// Whether the sinusoidal timestep features put the cosines first.
    public var flipSinToCos: Bool = true
    /// When true, every block applies a LayerNorm (`norm3`) to its feed-forward outputs before the gate.
    public var afterNorm: Bool = false

    /// The fixed rotary base grid of `EasyAnimateRotaryPosEmbed` (width, height) before patching.
    static let rotaryBase = (width: 90, height: 60)
    /// Epsilon of the per-head query/key LayerNorms (diffusers' `Attention(eps=1e-6)`).
    static let qkNormEps: Float = 1e-6
    /// Epsilon of the text projections' RMSNorm (`add_norm_text_encoder`).
    static let textNormEps: Float = 1e-6
    /// Width ratio of the feed-forwards (diffusers' `FeedForward` default `mult=4`).
    static let feedForwardMultiplier = 4

    enum CodingKeys: String, CodingKey {
        case numAttentionHeads = "num_attention_heads", attentionHeadDim = "attention_head_dim"
        case inChannels = "in_channels", outChannels = "out_channels", patchSize = "patch_size"
        case activationFn = "activation_fn", timestepActivationFn = "timestep_activation_fn"
        case freqShift = "freq_shift", numLayers = "num_layers", mmditLayers = "mmdit_layers"
        case timeEmbedDim = "time_embed_dim", addNormTextEncoder = "add_norm_text_encoder"
        case textEmbedDim = "text_embed_dim", textEmbedDimT5 = "text_embed_dim_t5", normEps = "norm_eps"
        case normElementwiseAffine = "norm_elementwise_affine", flipSinToCos = "flip_sin_to_cos"
        case afterNorm = "after_norm"
    }

    /// A configuration with diffusers' constructor defaults (EasyAnimateV5.1-12b widths); `in_channels`,
    /// `out_channels` and `patch_size`, which diffusers leaves None, must be set before use.
    public init() {}

    /// Decodes diffusers' keys; absent keys take diffusers' defaults, `null` means None.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = EasyAnimateConfiguration()
        numAttentionHeads = try c.diffusersValue(.numAttentionHeads, default: d.numAttentionHeads)
        attentionHeadDim = try c.diffusersValue(.attentionHeadDim, default: d.attentionHeadDim)
        inChannels = try c.diffusersOptional(.inChannels, default: d.inChannels)
        outChannels = try c.diffusersOptional(.outChannels, default: d.outChannels)
        patchSize = try c.diffusersOptional(.patchSize, default: d.patchSize)
        activationFn = try c.diffusersValue(.activationFn, default: d.activationFn)
        timestepActivationFn = try c.diffusersValue(.timestepActivationFn, default: d.timestepActivationFn)
        freqShift = try c.diffusersValue(.freqShift, default: d.freqShift)
        numLayers = try c.diffusersValue(.numLayers, default: d.numLayers)
        mmditLayers = try c.diffusersValue(.mmditLayers, default: d.mmditLayers)
        timeEmbedDim = try c.diffusersValue(.timeEmbedDim, default: d.timeEmbedDim)
        addNormTextEncoder = try c.diffusersFlag(.addNormTextEncoder, d.addNormTextEncoder)
        textEmbedDim = try c.diffusersValue(.textEmbedDim, default: d.textEmbedDim)
        textEmbedDimT5 = try c.diffusersOptional(.textEmbedDimT5, default: d.textEmbedDimT5)
        normEps = Float(try c.diffusersValue(.normEps, default: Double(d.normEps)))
        normElementwiseAffine = try c.diffusersFlag(.normElementwiseAffine, d.normElementwiseAffine)
        flipSinToCos = try c.diffusersFlag(.flipSinToCos, d.flipSinToCos)
        afterNorm = try c.diffusersFlag(.afterNorm, d.afterNorm)
    }

    /// The model width `numAttentionHeads · attentionHeadDim`.
    public var innerDim: Int { numAttentionHeads * attentionHeadDim }
    /// The patch side (1 while unset; ``validate()`` refuses an unset one).
    var patch: Int { patchSize ?? 1 }
    /// Input channels of the patch embedding (0 while unset).
    var patchInChannels: Int { inChannels ?? 0 }
    /// Output channels per pixel (0 while unset).
    var latentOutChannels: Int { outChannels ?? 0 }
    /// Values per output token: `patch² · out_channels`.
    public var outputTokenWidth: Int { patch * patch * latentOutChannels }
    /// Hidden width of every feed-forward.
    public var feedForwardInnerDim: Int { innerDim * Self.feedForwardMultiplier }
    /// Whether block `index` is an MMDiT block.
    func isMMDiT(_ index: Int) -> Bool { index < mmditLayers }
    /// The feed-forward activation.
    var feedForwardActivation: FeedForwardActivation? { FeedForwardActivation(diffusersName: activationFn) }
    /// The activation of `time_embedding`.
    var timestepActivation: Activation? {
        switch timestepActivationFn {
        case "silu", "swish": return .silu
        case "gelu": return .gelu(.none)
        default: return nil
        }
    }

    /// Throws ``ModelLoadError/unsupportedConfig(field:value:reason:)`` for the first value this model
    /// cannot run with.
    public func validate() throws(ModelLoadError) {
        for (field, value) in [("in_channels", inChannels), ("out_channels", outChannels), ("patch_size", patchSize)] {
            guard let value else {
                throw .unsupportedConfig(field: field, value: "null",
                                         reason: "must be set (diffusers cannot build the model with None)")
            }
            guard value > 0 else { throw .unsupportedConfig(field: field, value: "\(value)", reason: "must be a positive integer") }
        }
        for (field, value) in [("num_attention_heads", numAttentionHeads), ("attention_head_dim", attentionHeadDim),
                               ("time_embed_dim", timeEmbedDim), ("text_embed_dim", textEmbedDim)] where value <= 0 {
            throw .unsupportedConfig(field: field, value: "\(value)", reason: "must be a positive integer")
        }
        if let t5 = textEmbedDimT5, t5 <= 0 {
            throw .unsupportedConfig(field: "text_embed_dim_t5", value: "\(t5)", reason: "must be a positive integer or null")
        }
        for (field, value) in [("num_layers", numLayers), ("mmdit_layers", mmditLayers), ("freq_shift", freqShift)]
            where value < 0 {
            throw .unsupportedConfig(field: field, value: "\(value)", reason: "must not be negative")
        }
        // Bounded before any product of them is formed (see SizeLimits).
        for (field, value) in [("num_attention_heads", numAttentionHeads), ("attention_head_dim", attentionHeadDim),
                               ("in_channels", patchInChannels), ("out_channels", latentOutChannels),
                               ("patch_size", patch), ("time_embed_dim", timeEmbedDim), ("text_embed_dim", textEmbedDim),
                               ("text_embed_dim_t5", textEmbedDimT5 ?? 1), ("num_layers", numLayers),
                               ("mmdit_layers", mmditLayers), ("freq_shift", freqShift)] {
            try SizeLimits.checkConfig(field, value)
        }
        let limit = Double(SizeLimits.maximumExtent)
        for (field, value, product) in [
            ("num_attention_heads", "\(numAttentionHeads)", (Double(innerDim) * Double(Self.feedForwardMultiplier),
                                                           "the feed-forward width 4 · num_attention_heads · attention_head_dim")),
            ("patch_size", "\(patch)", (Double(patch * patch) * Double(max(patchInChannels, latentOutChannels)),
                                        "the patch width patch_size² · max(in_channels, out_channels)")),
        ] where product.0 > limit {
            throw .unsupportedConfig(field: field, value: value,
                                     reason: "\(product.1) = \(String(format: "%.0f", product.0)) exceeds the supported "
                                        + "maximum of \(SizeLimits.maximumExtent)")
        }
        guard attentionHeadDim % 16 == 0 else {
            throw .unsupportedConfig(field: "attention_head_dim", value: "\(attentionHeadDim)",
                                     reason: "must be a multiple of 16: the 3-D rotary table splits it into D/4, 3D/8 and "
                                        + "3D/8 channels, each even")
        }
        guard patch <= Self.rotaryBase.height else {
            throw .unsupportedConfig(field: "patch_size", value: "\(patch)",
                                     reason: "must be at most \(Self.rotaryBase.height): the rotary base grid is "
                                        + "\(Self.rotaryBase.width)/patch_size × \(Self.rotaryBase.height)/patch_size")
        }
        guard normEps.isFinite, normEps > 0 else {
            throw .unsupportedConfig(field: "norm_eps", value: "\(normEps)", reason: "must be a finite positive number")
        }
        guard feedForwardActivation != nil else {
            throw .unsupportedConfig(field: "activation_fn", value: activationFn,
                                     reason: "supported: gelu, gelu-approximate, geglu, geglu-approximate, swiglu, linear-silu")
        }
        guard timestepActivation != nil else {
            throw .unsupportedConfig(field: "timestep_activation_fn", value: timestepActivationFn,
                                     reason: "supported: silu, swish, gelu")
        }
        if addNormTextEncoder, let t5 = textEmbedDimT5, t5 != textEmbedDim {
            throw .unsupportedConfig(field: "text_embed_dim_t5", value: "\(t5)",
                                     reason: "with add_norm_text_encoder diffusers normalises the T5 features with an RMSNorm "
                                        + "of text_embed_dim = \(textEmbedDim) channels, so the widths must agree")
        }
    }
}

// MARK: Cost model

extension EasyAnimateConfiguration {
    /// Matmul and attention FLOPs of one forward (2 per multiply-add; norms, activations, rotary tables and
    /// softmax are not counted), for `s` video tokens and `l` text tokens (both text streams) per sample.
    ///
    /// Per block and joint token: q, k, v and output projections `4D²` and the feed-forward `2·D·4D`
    /// (the MMDiT blocks use separate weights for the text tokens, the same count); attention
    /// `4·T²·D` over the `T = L + S` joint tokens; two adaLN projections per sample. Plus the patch
    /// embedding, the timestep and text embeddings and the output head.
    public func forwardFLOPs(batch b: Int, videoTokens s: Int, textTokens l: Int) -> Double {
        let d = Double(innerDim), bb = Double(b), ss = Double(s), ll = Double(l), t = ss + ll
        let e = Double(timeEmbedDim)
        let patchIn = Double(patchInChannels * patch * patch)
        var f = 2 * bb * ss * patchIn * d + 2 * bb * ll * Double(max(textEmbedDim, textEmbedDimT5 ?? 0)) * d
        f += 2 * bb * (d * e + e * e)
        var block = 2 * bb * t * (4 * d * d + 2 * d * Double(feedForwardInnerDim))
        block += 4 * bb * t * t * d
        block += 2 * (2 * bb * e * 6 * d)
        f += Double(numLayers) * block
        f += 2 * bb * e * 2 * d + 2 * bb * ss * d * Double(outputTokenWidth)
        return f
    }

    /// Estimated bytes of the activations alive at once inside a block (the largest set): the joint
    /// tokens and their normalised copies, q, k, v and their normalised/rotated copies, the attention
    /// output and its projection, and the feed-forward hidden layer before and after the activation —
    /// about `(12·D + 2·4D)·T` floats for `T = L + S` joint tokens — plus one query block of attention
    /// scores per thread.
    public func activationBytesEstimate(batch b: Int, videoTokens s: Int, textTokens l: Int) -> Int {
        let t = s + l
        let scores = attentionScoreFloats(keys: t) * Parallelism.threadCount
        return 4 * (b * t * (12 * innerDim + 2 * feedForwardInnerDim) + scores)
    }
}
