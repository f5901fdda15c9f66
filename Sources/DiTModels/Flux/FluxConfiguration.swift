import Foundation
import Tensors

/// The configuration of diffusers' `FluxTransformer2DModel` (FLUX.1 and TangoFlux), decoded from the
/// model's `config.json`.
///
/// Field names and defaults are diffusers'. Every field that changes a shape or the computation is
/// honoured; ``validate()`` rejects values the model cannot run with a typed error. Keys starting with
/// `_` (diffusers bookkeeping) and unknown keys are ignored.
public struct FluxConfiguration: DiTConfiguration {
    /// The diffusers class this configuration describes.
    public static let classNames = ["FluxTransformer2DModel"]

    /// Side of the square patch folded into each token by the caller; the output projection emits
    /// `patchSize² · outChannels` values per token (the forward itself never re-patches).
    public var patchSize: Int = 1
    /// Channels of each input token (`x_embedder` input).
    public var inChannels: Int = 64
    /// Channels of each output token before patch expansion as configured; `nil` (and `0`, which decodes
    /// to `nil`) means `inChannels`, as diffusers' `out_channels or in_channels`.
    public var outChannelsSetting: Int? = nil
    /// Number of double-stream blocks (`transformer_blocks`).
    public var numLayers: Int = 19
    /// Number of single-stream blocks (`single_transformer_blocks`).
    public var numSingleLayers: Int = 38
    /// Width of one attention head.
    public var attentionHeadDim: Int = 128
    /// Number of attention heads; the model width is `heads · headDim`.
    public var numAttentionHeads: Int = 24
    /// Width of the text-encoder states (`context_embedder` input).
    public var jointAttentionDim: Int = 4096
    /// Width of the pooled text embedding.
    public var pooledProjectionDim: Int = 768
    /// Whether the model embeds a distilled guidance scale (FLUX.1-dev: true; TangoFlux, schnell: false).
    public var guidanceEmbeds: Bool = false
    /// Rotary dimensions per position-id axis; they must add up to `attentionHeadDim`.
    public var axesDimsRope: [Int] = [16, 56, 56]

    /// Rotary base of `FluxPosEmbed` (fixed in diffusers).
    public static let ropeTheta: Double = 10000
    /// Width of the sinusoidal timestep/guidance features (fixed in diffusers).
    public static let timestepChannels = 256
    /// Width ratio of the feed-forward / MLP branches (fixed in diffusers).
    public static let mlpRatio = 4

    enum CodingKeys: String, CodingKey {
        case patchSize = "patch_size", inChannels = "in_channels", outChannelsSetting = "out_channels"
        case numLayers = "num_layers", numSingleLayers = "num_single_layers"
        case attentionHeadDim = "attention_head_dim", numAttentionHeads = "num_attention_heads"
        case jointAttentionDim = "joint_attention_dim", pooledProjectionDim = "pooled_projection_dim"
        case guidanceEmbeds = "guidance_embeds", axesDimsRope = "axes_dims_rope"
    }

    /// A configuration with diffusers' defaults (FLUX.1 sizes).
    public init() {}

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = FluxConfiguration()
        patchSize = try c.decodeIfPresent(Int.self, forKey: .patchSize) ?? d.patchSize
        inChannels = try c.decodeIfPresent(Int.self, forKey: .inChannels) ?? d.inChannels
        // diffusers: `out_channels or in_channels`, so null, absent and 0 all mean in_channels.
        let out = try c.decodeIfPresent(Int.self, forKey: .outChannelsSetting)
        outChannelsSetting = out == 0 ? nil : out
        numLayers = try c.decodeIfPresent(Int.self, forKey: .numLayers) ?? d.numLayers
        numSingleLayers = try c.decodeIfPresent(Int.self, forKey: .numSingleLayers) ?? d.numSingleLayers
        attentionHeadDim = try c.decodeIfPresent(Int.self, forKey: .attentionHeadDim) ?? d.attentionHeadDim
        numAttentionHeads = try c.decodeIfPresent(Int.self, forKey: .numAttentionHeads) ?? d.numAttentionHeads
        jointAttentionDim = try c.decodeIfPresent(Int.self, forKey: .jointAttentionDim) ?? d.jointAttentionDim
        pooledProjectionDim = try c.decodeIfPresent(Int.self, forKey: .pooledProjectionDim) ?? d.pooledProjectionDim
        guidanceEmbeds = try c.decodeIfPresent(Bool.self, forKey: .guidanceEmbeds) ?? d.guidanceEmbeds
        axesDimsRope = try c.decodeIfPresent([Int].self, forKey: .axesDimsRope) ?? d.axesDimsRope
    }

    /// The model width `numAttentionHeads · attentionHeadDim`.
    public var innerDim: Int { numAttentionHeads * attentionHeadDim }
    /// Output channels per token before patch expansion (`out_channels`, or `in_channels` when it is null
    /// or 0).
    public var outChannels: Int { configuredOutChannels ?? inChannels }
    /// `out_channels` when it is set to something other than 0 (diffusers' `out_channels or …`).
    private var configuredOutChannels: Int? { outChannelsSetting == 0 ? nil : outChannelsSetting }
    /// Width of the output projection: `patchSize² · outChannels`.
    public var outputWidth: Int { patchSize * patchSize * outChannels }
    /// Hidden width of the single-stream MLP and of the feed-forwards.
    public var mlpHiddenDim: Int { innerDim * Self.mlpRatio }

    /// Throws ``ModelLoadError/unsupportedConfig(field:value:reason:)`` for the first value this model
    /// cannot run with.
    public func validate() throws(ModelLoadError) {
        let positive: [(String, Int?)] = [
            ("patch_size", patchSize), ("in_channels", inChannels), ("out_channels", configuredOutChannels),
            ("attention_head_dim", attentionHeadDim), ("num_attention_heads", numAttentionHeads),
            ("joint_attention_dim", jointAttentionDim), ("pooled_projection_dim", pooledProjectionDim),
        ]
        for (field, value) in positive {
            if let value, value <= 0 {
                throw .unsupportedConfig(field: field, value: "\(value)", reason: "must be a positive integer")
            }
        }
        for (field, value) in [("num_layers", numLayers), ("num_single_layers", numSingleLayers)] where value < 0 {
            throw .unsupportedConfig(field: field, value: "\(value)", reason: "must not be negative")
        }
        // Bounded before any product or sum of them is formed (see SizeLimits).
        for (field, value) in positive + [("num_layers", numLayers), ("num_single_layers", numSingleLayers),
                                          ("axes_dims_rope count", axesDimsRope.count)] {
            if let value { try SizeLimits.checkConfig(field, value) }
        }
        for a in axesDimsRope { try SizeLimits.checkConfig("axes_dims_rope", a) }
        let axes = "\(axesDimsRope)"
        guard !axesDimsRope.isEmpty else {
            throw .unsupportedConfig(field: "axes_dims_rope", value: axes, reason: "needs at least one axis")
        }
        guard axesDimsRope.allSatisfy({ $0 > 0 && $0 % 2 == 0 }) else {
            throw .unsupportedConfig(field: "axes_dims_rope", value: axes,
                                     reason: "every rotary axis dimension must be positive and even")
        }
        guard axesDimsRope.reduce(0, +) == attentionHeadDim else {
            throw .unsupportedConfig(field: "axes_dims_rope", value: axes,
                                     reason: "the axes must add up to attention_head_dim = \(attentionHeadDim)")
        }
        // Each factor is at most 2¹⁶ here, so these products cannot overflow.
        guard innerDim <= SizeLimits.maximumExtent else {
            throw .unsupportedConfig(field: "num_attention_heads", value: "\(numAttentionHeads)",
                                     reason: "the model width num_attention_heads · attention_head_dim = \(innerDim) "
                                        + "exceeds the supported maximum of \(SizeLimits.maximumExtent)")
        }
        guard outputWidth <= SizeLimits.maximumExtent else {
            throw .unsupportedConfig(field: "patch_size", value: "\(patchSize)",
                                     reason: "the output width patch_size² · out_channels = \(outputWidth) "
                                        + "exceeds the supported maximum of \(SizeLimits.maximumExtent)")
        }
    }
}

// MARK: Cost model

extension FluxConfiguration {
    /// Matmul and attention FLOPs of one forward (2 per multiply-add; norms, activations and softmax
    /// are not counted).
    ///
    /// Per token and block both block kinds cost `24·D²` (double: q, k, v, out = 4D², feed-forward 8D²;
    /// single: q, k, v 3D², MLP in 4D², out 5D²), plus `4·H·T²·Dh` attention over the `T = L + S` joint
    /// tokens, plus embeddings, adaLN projections and the output head.
    public func forwardFLOPs(batch b: Int, imageTokens s: Int, textTokens l: Int) -> Double {
        let c = self
        let d = Double(c.innerDim), bb = Double(b), ss = Double(s), ll = Double(l), t = ss + ll
        let ch = Double(FluxConfiguration.timestepChannels)
        var f = 2 * bb * ss * Double(c.inChannels) * d + 2 * bb * ll * Double(c.jointAttentionDim) * d
        f += 2 * bb * (ch * d + d * d) * (c.guidanceEmbeds ? 2 : 1) + 2 * bb * (Double(c.pooledProjectionDim) * d + d * d)
        let attentionFLOPs = 4 * bb * t * t * d
        let double = 2 * bb * t * 12 * d * d + attentionFLOPs + 2 * (2 * bb * d * 6 * d)
        let single = 2 * bb * t * 12 * d * d + attentionFLOPs + 2 * bb * d * 3 * d
        f += Double(c.numLayers) * double + Double(c.numSingleLayers) * single
        f += 2 * bb * d * 2 * d + 2 * bb * ss * d * Double(c.outputWidth)
        return f
    }

    /// Estimated bytes of the activations alive at once inside a single-stream block (the largest set):
    /// the joint sequence and its normalised copy, MLP pre- and post-activation (4D each), q, k, v and
    /// their rotated copies, the attention output, the 5D-wide concatenation and the block output —
    /// about `23·T·D` floats for `T = L + S` tokens, plus one query block of attention scores per thread.
    public func activationBytesEstimate(batch b: Int, imageTokens s: Int, textTokens l: Int) -> Int {
        let t = s + l
        let scores = attentionScoreFloats(keys: t) * Parallelism.threadCount
        return 4 * (23 * b * t * innerDim + scores)
    }
}
