import Foundation
import Tensors

/// The configuration of diffusers' `HunyuanVideoTransformer3DModel` (diffusers 0.42.1), decoded from the
/// model's `config.json`.
///
/// Field names and defaults are diffusers' constructor's (HunyuanVideo T2V 13B). Every field that changes a
/// shape or the computation is honoured; ``validate()`` rejects values diffusers cannot build or this port
/// cannot run with ``ModelLoadError/unsupportedConfig(field:value:reason:)``. Keys starting with `_`
/// (diffusers bookkeeping) and unknown keys are ignored, as diffusers ignores them.
public struct HunyuanVideoConfiguration: DiTConfiguration {
    /// The diffusers class this configuration describes.
    public static let classNames = ["HunyuanVideoTransformer3DModel"]

    /// Latent channels in (`x_embedder` input; 2·C + 1 for `latent_concat` image-to-video checkpoints).
    public var inChannels: Int = 16
    /// Latent channels out; diffusers' `out_channels or in_channels` (null and 0 mean `inChannels`).
    public var outChannels: Int = 16
    /// Attention heads; the model width is `numAttentionHeads · attentionHeadDim`.
    public var numAttentionHeads: Int = 24
    /// Channels per head.
    public var attentionHeadDim: Int = 128
    /// Dual-stream blocks (`transformer_blocks`).
    public var numLayers: Int = 20
    /// Single-stream blocks (`single_transformer_blocks`).
    public var numSingleLayers: Int = 40
    /// Token-refiner blocks of the text embedder (`context_embedder.token_refiner.refiner_blocks`).
    public var numRefinerLayers: Int = 2
    /// Width ratio of the blocks' feed-forward / MLP branches: hidden width `int(D · mlp_ratio)` (Python's
    /// truncation of the Double product). The token refiner always uses 4, as diffusers does.
    public var mlpRatio: Double = 4
    /// Spatial patch side.
    public var patchSize: Int = 2
    /// Temporal patch extent.
    public var patchSizeT: Int = 1
    /// The per-head query/key normalisation of the blocks' attention (`Attention(qk_norm=…)`).
    public var qkNorm: String? = "rms_norm"
    /// Whether the conditioning adds an embedded guidance value (HunyuanVideo T2V: true).
    public var guidanceEmbeds: Bool = true
    /// Width of the text-encoder states (`context_embedder` input).
    public var textEmbedDim: Int = 4096
    /// Width of the pooled text embedding (CLIP).
    public var pooledProjectionDim: Int = 768
    /// The rotary base.
    public var ropeTheta: Double = 256
    /// Rotary dimensions of the (frame, row, column) axes. diffusers reads the first three entries; more
    /// are accepted and ignored, as there.
    public var ropeAxesDim: [Int] = [16, 56, 56]
    /// `nil` (text-to-video), `"latent_concat"` (image latents concatenated to the input channels — the
    /// transformer itself is unchanged) or `"token_replace"` (the first frame's tokens are modulated by a
    /// timestep-0 conditioning, HunyuanVideo-I2V).
    public var imageConditionType: String? = nil

    /// Width of the sinusoidal timestep/guidance features (fixed in diffusers).
    public static let timestepChannels = 256
    /// Width ratio of the token refiner's feed-forward (diffusers' default, not `mlp_ratio`).
    static let refinerMLPRatio: Double = 4
    /// The image-condition types diffusers 0.42.1 accepts.
    static let imageConditionTypes = ["latent_concat", "token_replace"]

    enum CodingKeys: String, CodingKey {
        case inChannels = "in_channels", outChannels = "out_channels", numAttentionHeads = "num_attention_heads"
        case attentionHeadDim = "attention_head_dim", numLayers = "num_layers", numSingleLayers = "num_single_layers"
        case numRefinerLayers = "num_refiner_layers", mlpRatio = "mlp_ratio", patchSize = "patch_size"
        case patchSizeT = "patch_size_t", qkNorm = "qk_norm", guidanceEmbeds = "guidance_embeds"
        case textEmbedDim = "text_embed_dim", pooledProjectionDim = "pooled_projection_dim", ropeTheta = "rope_theta"
        case ropeAxesDim = "rope_axes_dim", imageConditionType = "image_condition_type"
    }

    /// A configuration with diffusers' defaults.
    public init() {}

    /// Decodes diffusers' keys; absent keys take diffusers' defaults, `null` means None.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = HunyuanVideoConfiguration()
        inChannels = try c.diffusersValue(.inChannels, default: d.inChannels)
        // diffusers: `out_channels or in_channels` — null, absent-as-null and 0 mean in_channels.
        if c.contains(.outChannels) {
            let out = try c.decodeIfPresent(Int.self, forKey: .outChannels) ?? 0
            outChannels = out == 0 ? inChannels : out
        } else {
            outChannels = d.outChannels
        }
        numAttentionHeads = try c.diffusersValue(.numAttentionHeads, default: d.numAttentionHeads)
        attentionHeadDim = try c.diffusersValue(.attentionHeadDim, default: d.attentionHeadDim)
        numLayers = try c.diffusersValue(.numLayers, default: d.numLayers)
        numSingleLayers = try c.diffusersValue(.numSingleLayers, default: d.numSingleLayers)
        numRefinerLayers = try c.diffusersValue(.numRefinerLayers, default: d.numRefinerLayers)
        mlpRatio = try c.diffusersValue(.mlpRatio, default: d.mlpRatio)
        patchSize = try c.diffusersValue(.patchSize, default: d.patchSize)
        patchSizeT = try c.diffusersValue(.patchSizeT, default: d.patchSizeT)
        qkNorm = try c.diffusersOptional(.qkNorm, default: d.qkNorm)
        guidanceEmbeds = try c.diffusersValue(.guidanceEmbeds, default: d.guidanceEmbeds)
        textEmbedDim = try c.diffusersValue(.textEmbedDim, default: d.textEmbedDim)
        pooledProjectionDim = try c.diffusersValue(.pooledProjectionDim, default: d.pooledProjectionDim)
        ropeTheta = try c.diffusersValue(.ropeTheta, default: d.ropeTheta)
        ropeAxesDim = try c.diffusersValue(.ropeAxesDim, default: d.ropeAxesDim)
        imageConditionType = try c.diffusersOptional(.imageConditionType, default: d.imageConditionType)
    }

    /// The model width `numAttentionHeads · attentionHeadDim`.
    public var innerDim: Int { numAttentionHeads * attentionHeadDim }
    /// Hidden width of the blocks' feed-forwards and of the single blocks' MLP: `int(D · mlp_ratio)`.
    public var mlpHiddenDim: Int { Int(Double(innerDim) * mlpRatio) }
    /// Hidden width of the token refiner's feed-forward: `int(D · 4.0)`.
    public var refinerMLPHiddenDim: Int { Int(Double(innerDim) * Self.refinerMLPRatio) }
    /// The patch extent (frames, height, width).
    public var patch: (t: Int, h: Int, w: Int) { (patchSizeT, patchSize, patchSize) }
    /// Values per output token: `patch_size_t · patch_size² · out_channels`.
    public var outputWidth: Int { patchSizeT * patchSize * patchSize * outChannels }
    /// The rotary dimensions diffusers uses: the first three of `rope_axes_dim`.
    public var rotaryAxesDims: [Int] { Array(ropeAxesDim.prefix(3)) }
    /// Whether the blocks are diffusers' token-replace variants (`image_condition_type: "token_replace"`).
    public var usesTokenReplace: Bool { imageConditionType == "token_replace" }

    /// The query/key normalisation, parsed (nil for a name ``validate()`` rejects).
    public var queryKeyNorm: HunyuanVideoQKNorm? { HunyuanVideoQKNorm(diffusersName: qkNorm) }

    /// Throws ``ModelLoadError/unsupportedConfig(field:value:reason:)`` for the first value this model
    /// cannot run with.
    public func validate() throws(ModelLoadError) {
        let positive: [(String, Int)] = [
            ("in_channels", inChannels), ("out_channels", outChannels), ("num_attention_heads", numAttentionHeads),
            ("attention_head_dim", attentionHeadDim), ("patch_size", patchSize), ("patch_size_t", patchSizeT),
            ("text_embed_dim", textEmbedDim), ("pooled_projection_dim", pooledProjectionDim),
        ]
        for (field, v) in positive where v <= 0 {
            throw .unsupportedConfig(field: field, value: "\(v)", reason: "must be a positive integer")
        }
        let counts = [("num_layers", numLayers), ("num_single_layers", numSingleLayers),
                      ("num_refiner_layers", numRefinerLayers)]
        for (field, v) in counts where v < 0 {
            throw .unsupportedConfig(field: field, value: "\(v)", reason: "must not be negative")
        }
        // Bounded before any product of them is formed (see SizeLimits).
        for (field, v) in positive + counts + [("rope_axes_dim count", ropeAxesDim.count)] {
            try SizeLimits.checkConfig(field, v)
        }
        for a in ropeAxesDim { try SizeLimits.checkConfig("rope_axes_dim", a) }
        let limit = Double(SizeLimits.maximumExtent)
        let patchVolume = Double(patchSizeT) * Double(patchSize) * Double(patchSize)
        let products: [(String, String, Double, String)] = [
            ("num_attention_heads", "\(numAttentionHeads)", Double(numAttentionHeads) * Double(attentionHeadDim),
             "the model width num_attention_heads · attention_head_dim"),
            ("patch_size", "\(patchSize)", Double(inChannels) * patchVolume, "the patch width in_channels · patch_size_t · patch_size²"),
            ("patch_size", "\(patchSize)", Double(outChannels) * patchVolume, "the output width out_channels · patch_size_t · patch_size²"),
        ]
        for (field, value, product, what) in products where product > limit {
            throw .unsupportedConfig(field: field, value: value,
                                     reason: "\(what) = \(String(format: "%.0f", product)) exceeds the supported maximum of \(SizeLimits.maximumExtent)")
        }
        guard mlpRatio.isFinite, mlpRatio > 0, Double(innerDim) * mlpRatio >= 1,
              Double(innerDim) * mlpRatio <= 4 * limit else {
            throw .unsupportedConfig(field: "mlp_ratio", value: "\(mlpRatio)",
                                     reason: "the MLP width int(\(innerDim) · mlp_ratio) must be between 1 and \(4 * SizeLimits.maximumExtent)")
        }
        guard ropeTheta.isFinite, ropeTheta > 0 else {
            throw .unsupportedConfig(field: "rope_theta", value: "\(ropeTheta)", reason: "must be a finite positive number")
        }
        let axes = "\(ropeAxesDim)"
        guard ropeAxesDim.count >= 3 else {
            throw .unsupportedConfig(field: "rope_axes_dim", value: axes,
                                     reason: "needs three entries (frames, height, width)")
        }
        guard rotaryAxesDims.allSatisfy({ $0 >= 0 && $0 % 2 == 0 }) else {
            throw .unsupportedConfig(field: "rope_axes_dim", value: axes, reason: "every rotary dimension must be even and not negative")
        }
        guard rotaryAxesDims.reduce(0, +) == attentionHeadDim else {
            throw .unsupportedConfig(field: "rope_axes_dim", value: axes,
                                     reason: "the first three entries must add up to attention_head_dim = \(attentionHeadDim)")
        }
        if let t = imageConditionType, !Self.imageConditionTypes.contains(t) {
            throw .unsupportedConfig(field: "image_condition_type", value: t,
                                     reason: "diffusers accepts null, \"latent_concat\" or \"token_replace\"")
        }
        // diffusers builds the qk norms only inside blocks; without blocks any value goes unused.
        guard numLayers + numSingleLayers > 0 else { return }
        guard let norm = queryKeyNorm else {
            throw .unsupportedConfig(field: "qk_norm", value: qkNorm ?? "null",
                                     reason: "diffusers' HunyuanVideo blocks build null, \"rms_norm\", \"layer_norm\", "
                                        + "\"fp32_layer_norm\" and (single-stream blocks only) \"l2\"; "
                                        + "\"layer_norm_across_heads\" and \"rms_norm_across_heads\" fail in diffusers (kv_heads is None)")
        }
        if norm == .l2 && numLayers > 0 {
            throw .unsupportedConfig(field: "qk_norm", value: "l2",
                                     reason: "diffusers has no added-projection norm for \"l2\", so dual-stream blocks "
                                        + "(num_layers > 0) cannot be built with it")
        }
    }
}

/// The per-head query/key normalisation named by `qk_norm`, as diffusers' `Attention` builds it for the
/// HunyuanVideo blocks (each over one head's `attention_head_dim` channels, ε = 1e-6).
public enum HunyuanVideoQKNorm: String, Sendable, Equatable {
    /// `null`: no normalisation.
    case identity
    /// `"rms_norm"`: `RMSNorm(head_dim)` with a learned scale (`norm_q.weight`, …).
    case rms = "rms_norm"
    /// `"layer_norm"`: `nn.LayerNorm(head_dim)` with learned scale and bias.
    case layer = "layer_norm"
    /// `"fp32_layer_norm"`: a LayerNorm without parameters.
    case plainLayer = "fp32_layer_norm"
    /// `"l2"`: `x / max(‖x‖₂, ε)` (single-stream blocks only).
    case l2

    /// The normalisation of a `qk_norm` value (nil: null), or nil for one this port does not build.
    init?(diffusersName name: String?) {
        guard let name else { self = .identity; return }
        guard let v = HunyuanVideoQKNorm(rawValue: name), v != .identity else { return nil }
        self = v
    }
}

// MARK: - Cost model

extension HunyuanVideoConfiguration {
    /// Matmul and attention FLOPs of one forward (2 per multiply-add; norms, activations, RoPE and softmax
    /// are not counted), for `s` image tokens and `l` text tokens per sample.
    ///
    /// Per token, a dual-stream block costs `2·(4D² + 2·D·M)` on either stream (q, k, v, out; feed-forward
    /// of width M), a single-stream block `2·(3D² + D·M + (D + M)·D)`, each `4·T²·D` of attention over the
    /// `T = S + L` joint tokens; the token refiner's blocks cost `2·(4D² + 2·D·4D)` per text token plus
    /// `4·L²·D`; plus the patch embedding, the conditioning MLPs, every adaLN projection and the output head.
    public func forwardFLOPs(batch b: Int, imageTokens s: Int, textTokens l: Int) -> Double {
        let d = Double(innerDim), m = Double(mlpHiddenDim), r = Double(refinerMLPHiddenDim)
        let bb = Double(b), ss = Double(s), ll = Double(l), t = ss + ll
        let ch = Double(Self.timestepChannels), e = Double(textEmbedDim)
        let patchIn = Double(inChannels * patchSizeT * patchSize * patchSize)
        let timeMLP = 2 * bb * (ch * d + d * d)
        var f = 2 * bb * ss * patchIn * d
        f += timeMLP * (1 + (guidanceEmbeds ? 1 : 0) + (usesTokenReplace ? 1 : 0))
        f += 2 * bb * (Double(pooledProjectionDim) * d + d * d)
        // context_embedder: its own time and pooled-text MLPs, proj_in, the refiner blocks.
        f += timeMLP + 2 * bb * (e * d + d * d) + 2 * bb * ll * e * d
        let refiner = 2 * bb * ll * (4 * d * d + 2 * d * r) + 4 * bb * ll * ll * d + 2 * bb * d * 2 * d
        f += Double(numRefinerLayers) * refiner
        let modulations = usesTokenReplace ? 2.0 : 1.0
        let attention = 4 * bb * t * t * d
        let double = 2 * bb * t * (4 * d * d + 2 * d * m) + attention + 2 * bb * d * 6 * d * (1 + modulations)
        let single = 2 * bb * t * (3 * d * d + d * m + (d + m) * d) + attention + 2 * bb * d * 3 * d * modulations
        f += Double(numLayers) * double + Double(numSingleLayers) * single
        f += 2 * bb * d * 2 * d + 2 * bb * ss * d * Double(outputWidth)
        return f
    }

    /// Estimated bytes of the activations alive at once inside a single-stream block (the largest set):
    /// the joint sequence and its normalised copy, the fused q/k/v/MLP output and its split copies, the
    /// normalised and rotated q and k, the attention output, the activated MLP, the projection and the new
    /// sequence — about `(15·D + 3·M)·T` floats for `T = S + L` tokens — plus one query block of attention
    /// scores per thread.
    /// The product is taken in `Double` and saturates at `Int.max`, so no size can make it trap.
    public func activationBytesEstimate(batch b: Int, imageTokens s: Int, textTokens l: Int) -> Int {
        let t = Double(s) + Double(l)
        let scores = attentionScoreFloats(keys: t) * Double(Parallelism.threadCount)
        let bytes = 4 * (Double(b) * t * (15 * Double(innerDim) + 3 * Double(mlpHiddenDim)) + scores)
        return bytes < 0x1p62 ? Int(bytes) : Int.max
    }
}
