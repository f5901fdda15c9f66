import Foundation
import Tensors

/// The configuration of diffusers' `ConsisIDTransformer3DModel` (diffusers 0.42.1), decoded from
/// `config.json`: the CogVideoX 1.0 backbone (per-frame 2-D patches, no `ofs`, a patch projection with
/// bias — the CogVideoX-5B-I2V layout) and the identity layers (`is_train_face`): the local facial
/// extractor (`LFE_*`) and the perceiver cross-attentions (`cross_attn_*`).
///
/// Field names and defaults are the diffusers constructor's. The backbone fields are decoded and
/// validated by ``CogVideoXConfiguration`` (ConsisID builds the same `CogVideoXPatchEmbed`, timestep
/// embedding, `CogVideoXLayerNormZero` blocks and output head); `patch_size_t`, `ofs_embed_dim` and
/// `patch_bias`, which ConsisID's constructor does not take, are fixed to its values (none, none, true)
/// whatever the file says, as diffusers ignores unknown keys. ``validate()`` rejects with
/// ``ModelLoadError/unsupportedConfig(field:value:reason:)`` every value diffusers cannot run.
///
/// `is_kps` is decoded and kept, but changes nothing in the transformer: in diffusers it only makes the
/// pipeline put a key-point image into the image-latent frames.
public struct ConsisIDConfiguration: DiTConfiguration {
    /// The diffusers class names this configuration builds.
    public static let classNames = ["ConsisIDTransformer3DModel"]

    /// The CogVideoX backbone: every field ConsisID shares with `CogVideoXTransformer3DModel`.
    public var backbone: CogVideoXConfiguration
    /// Whether the model has the identity layers (`local_facial_extractor`, `perceiver_cross_attention`).
    public var isTrainFace: Bool
    /// Whether the pipeline conditions on key points (no effect on the transformer).
    public var isKps: Bool
    /// A perceiver cross-attention follows every block `i` with `i % cross_attn_interval == 0`.
    public var crossAttnInterval: Int
    /// Channels per head of the perceiver cross-attentions.
    public var crossAttnDimHead: Int
    /// Heads of the perceiver cross-attentions.
    public var crossAttnNumHeads: Int
    /// Width of `id_cond` (the face-recognition embedding).
    public var lfeIdDim: Int
    /// Width of each `id_vit_hidden` tensor and of the extractor's latents.
    public var lfeVitDim: Int
    /// Perceiver layers of the extractor, `LFE_depth / LFE_num_scale` per ViT scale.
    public var lfeDepth: Int
    /// Channels per head of the extractor's perceiver attention.
    public var lfeDimHead: Int
    /// Heads of the extractor's perceiver attention.
    public var lfeNumHeads: Int
    /// Identity tokens `id_cond` is mapped to.
    public var lfeNumIdToken: Int
    /// Learned query tokens of the extractor: the rows of the face embedding.
    public var lfeNumQueries: Int
    /// Width of the face embedding (must be the cross-attentions' key width `int(inner_dim / 3 · 2)`).
    public var lfeOutputDim: Int
    /// Feed-forward multiplier of the extractor.
    public var lfeFfMult: Int
    /// ViT scales (`id_vit_hidden` tensors) the extractor reads.
    public var lfeNumScale: Int
    /// The factor of every perceiver cross-attention's contribution.
    public var localFaceScale: Double

    /// A configuration; the defaults are diffusers' constructor defaults (ConsisID's own, which equal
    /// CogVideoX's for the backbone: a 2B-sized sincos model without identity layers).
    public init(
        backbone: CogVideoXConfiguration = CogVideoXConfiguration(), isTrainFace: Bool = false, isKps: Bool = false,
        crossAttnInterval: Int = 2, crossAttnDimHead: Int = 128, crossAttnNumHeads: Int = 16, lfeIdDim: Int = 1280,
        lfeVitDim: Int = 1024, lfeDepth: Int = 10, lfeDimHead: Int = 64, lfeNumHeads: Int = 16, lfeNumIdToken: Int = 5,
        lfeNumQueries: Int = 32, lfeOutputDim: Int = 2048, lfeFfMult: Int = 4, lfeNumScale: Int = 5,
        localFaceScale: Double = 1
    ) {
        var b = backbone
        (b.patchSizeT, b.ofsEmbedDim, b.patchBias) = (nil, nil, true)
        self.backbone = b
        self.isTrainFace = isTrainFace
        self.isKps = isKps
        self.crossAttnInterval = crossAttnInterval
        self.crossAttnDimHead = crossAttnDimHead
        self.crossAttnNumHeads = crossAttnNumHeads
        self.lfeIdDim = lfeIdDim
        self.lfeVitDim = lfeVitDim
        self.lfeDepth = lfeDepth
        self.lfeDimHead = lfeDimHead
        self.lfeNumHeads = lfeNumHeads
        self.lfeNumIdToken = lfeNumIdToken
        self.lfeNumQueries = lfeNumQueries
        self.lfeOutputDim = lfeOutputDim
        self.lfeFfMult = lfeFfMult
        self.lfeNumScale = lfeNumScale
        self.localFaceScale = localFaceScale
    }

    // MARK: Derived values

    /// The model width `num_attention_heads · attention_head_dim`.
    public var innerDim: Int { backbone.innerDim }
    /// The perceiver cross-attentions' key width, `int(inner_dim / 3 · 2)` in Python's float arithmetic.
    public var crossAttnKVDim: Int { Int(Double(innerDim) / 3 * 2) }
    /// The number of perceiver cross-attentions, `num_layers // cross_attn_interval` (0 without identity layers).
    public var crossAttentionCount: Int { isTrainFace ? backbone.numLayers / crossAttnInterval : 0 }
    /// The extractor's perceiver layers per ViT scale.
    var lfeLayersPerScale: Int { lfeDepth / lfeNumScale }

    // MARK: Validation

    /// Checks every field: the backbone's as ``CogVideoXConfiguration/validate()`` does, then, with
    /// identity layers, the extractor's and the cross-attentions'.
    /// - Throws: ``ModelLoadError/unsupportedConfig(field:value:reason:)`` naming the first bad field.
    public func validate() throws(ModelLoadError) {
        try backbone.validate()
        guard localFaceScale.isFinite else {
            throw .unsupportedConfig(field: "local_face_scale", value: "\(localFaceScale)", reason: "must be finite")
        }
        guard isTrainFace else { return }
        for (field, value) in [("cross_attn_interval", crossAttnInterval), ("cross_attn_dim_head", crossAttnDimHead),
                               ("cross_attn_num_heads", crossAttnNumHeads), ("LFE_id_dim", lfeIdDim),
                               ("LFE_vit_dim", lfeVitDim), ("LFE_dim_head", lfeDimHead), ("LFE_num_heads", lfeNumHeads),
                               ("LFE_num_id_token", lfeNumIdToken), ("LFE_num_querie", lfeNumQueries),
                               ("LFE_output_dim", lfeOutputDim), ("LFE_ff_mult", lfeFfMult), ("LFE_num_scale", lfeNumScale)] {
            guard value > 0 else { throw .unsupportedConfig(field: field, value: "\(value)", reason: "must be a positive integer") }
            try SizeLimits.checkConfig(field, value)
        }
        guard lfeDepth >= 0 else {
            throw .unsupportedConfig(field: "LFE_depth", value: "\(lfeDepth)", reason: "must be 0 or more")
        }
        try SizeLimits.checkConfig("LFE_depth", lfeDepth)
        let limit = Double(SizeLimits.maximumExtent)
        for (field, value, product) in [
            ("cross_attn_num_heads", crossAttnNumHeads, Double(crossAttnNumHeads) * Double(crossAttnDimHead)),
            ("LFE_num_heads", lfeNumHeads, Double(lfeNumHeads) * Double(lfeDimHead)),
            ("LFE_num_id_token", lfeNumIdToken, Double(lfeNumIdToken) * Double(lfeVitDim)),
            ("LFE_ff_mult", lfeFfMult, Double(lfeFfMult) * Double(lfeVitDim)),
        ] where 2 * product > limit {
            throw .unsupportedConfig(field: field, value: "\(value)",
                                     reason: "gives a projection of \(String(format: "%.0f", 2 * product)) rows, more than the supported \(SizeLimits.maximumExtent)")
        }
        guard lfeDepth % lfeNumScale == 0 else {
            throw .unsupportedConfig(field: "LFE_depth", value: "\(lfeDepth)",
                                     reason: "the extractor splits its layers evenly over LFE_num_scale = \(lfeNumScale) scales (diffusers asserts it)")
        }
        guard backbone.numLayers % crossAttnInterval == 0 else {
            throw .unsupportedConfig(field: "cross_attn_interval", value: "\(crossAttnInterval)",
                                     reason: "blocks 0, \(crossAttnInterval), … of num_layers = \(backbone.numLayers) need "
                                        + "\((backbone.numLayers + crossAttnInterval - 1) / crossAttnInterval) cross-attentions but diffusers "
                                        + "builds num_layers // cross_attn_interval = \(backbone.numLayers / crossAttnInterval): it must divide num_layers")
        }
        guard lfeOutputDim == crossAttnKVDim else {
            throw .unsupportedConfig(field: "LFE_output_dim", value: "\(lfeOutputDim)",
                                     reason: "the cross-attentions read the face embedding with width int(inner_dim / 3 · 2) = \(crossAttnKVDim)")
        }
    }
}

extension ConsisIDConfiguration {
    private enum Keys: String, CodingKey {
        case isTrainFace = "is_train_face", isKps = "is_kps", crossAttnInterval = "cross_attn_interval"
        case crossAttnDimHead = "cross_attn_dim_head", crossAttnNumHeads = "cross_attn_num_heads"
        case lfeIdDim = "LFE_id_dim", lfeVitDim = "LFE_vit_dim", lfeDepth = "LFE_depth", lfeDimHead = "LFE_dim_head"
        case lfeNumHeads = "LFE_num_heads", lfeNumIdToken = "LFE_num_id_token", lfeNumQueries = "LFE_num_querie"
        case lfeOutputDim = "LFE_output_dim", lfeFfMult = "LFE_ff_mult", lfeNumScale = "LFE_num_scale"
        case localFaceScale = "local_face_scale"
    }

    /// Decodes diffusers' keys (the backbone's through ``CogVideoXConfiguration``); absent keys take
    /// diffusers' defaults.
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: Keys.self)
        let d = ConsisIDConfiguration()
        self.init(
            backbone: try CogVideoXConfiguration(from: decoder),
            isTrainFace: try c.diffusersFlag(.isTrainFace, d.isTrainFace),
            isKps: try c.diffusersFlag(.isKps, d.isKps),
            crossAttnInterval: try c.diffusersValue(.crossAttnInterval, default: d.crossAttnInterval),
            crossAttnDimHead: try c.diffusersValue(.crossAttnDimHead, default: d.crossAttnDimHead),
            crossAttnNumHeads: try c.diffusersValue(.crossAttnNumHeads, default: d.crossAttnNumHeads),
            lfeIdDim: try c.diffusersValue(.lfeIdDim, default: d.lfeIdDim),
            lfeVitDim: try c.diffusersValue(.lfeVitDim, default: d.lfeVitDim),
            lfeDepth: try c.diffusersValue(.lfeDepth, default: d.lfeDepth),
            lfeDimHead: try c.diffusersValue(.lfeDimHead, default: d.lfeDimHead),
            lfeNumHeads: try c.diffusersValue(.lfeNumHeads, default: d.lfeNumHeads),
            lfeNumIdToken: try c.diffusersValue(.lfeNumIdToken, default: d.lfeNumIdToken),
            lfeNumQueries: try c.diffusersValue(.lfeNumQueries, default: d.lfeNumQueries),
            lfeOutputDim: try c.diffusersValue(.lfeOutputDim, default: d.lfeOutputDim),
            lfeFfMult: try c.diffusersValue(.lfeFfMult, default: d.lfeFfMult),
            lfeNumScale: try c.diffusersValue(.lfeNumScale, default: d.lfeNumScale),
            localFaceScale: try c.diffusersValue(.localFaceScale, default: d.localFaceScale)
        )
    }
}

// MARK: - Cost model

extension ConsisIDConfiguration {
    /// Matmul and attention FLOPs of one forward (2 per multiply-add), for `s` video and `l` text tokens
    /// per sample, `vitTokens` tokens per `id_vit_hidden` scale and `faceBatch` identity rows (1 or the batch).
    ///
    /// The backbone's count (``CogVideoXConfiguration/forwardFLOPs(batch:videoTokens:textTokens:)``) plus,
    /// with identity layers, the extractor (the id mapping, one mapping per scale, per perceiver layer
    /// q/kv/out, its attention over `[context; latents]` and the feed-forward, the output projection) and
    /// every cross-attention (q and out on the video tokens, k/v on the face embedding, attention over
    /// `LFE_num_querie` keys).
    public func forwardFLOPs(batch b: Int, videoTokens s: Int, textTokens l: Int, vitTokens n: Int, faceBatch fb: Int) -> Double {
        var f = backbone.forwardFLOPs(batch: b, videoTokens: s, textTokens: l)
        guard isTrainFace else { return f }
        let (bb, fbb, ss, nn) = (Double(b), Double(fb), Double(s), Double(n))
        let (v, idd, k) = (Double(lfeVitDim), Double(lfeIdDim), Double(lfeNumIdToken))
        let (q, lfeInner) = (Double(lfeNumQueries), Double(lfeNumHeads * lfeDimHead))
        f += 2 * fbb * (idd * v + v * v + v * v * k)
        f += Double(lfeNumScale) * 2 * fbb * nn * 3 * v * v
        let latents = q + k, context = k + nn
        let perLayer = 2 * fbb * (latents * v * lfeInner + (context + latents) * v * 2 * lfeInner + latents * lfeInner * v)
            + 4 * fbb * latents * (context + latents) * lfeInner + 2 * fbb * latents * 2 * v * v * Double(lfeFfMult)
        f += Double(lfeDepth) * perLayer + 2 * fbb * q * v * Double(lfeOutputDim)
        let caInner = Double(crossAttnNumHeads * crossAttnDimHead), d = Double(innerDim)
        let perCross = 2 * bb * ss * 2 * d * caInner + 2 * fbb * q * Double(crossAttnKVDim) * 2 * caInner + 4 * bb * ss * q * caInner
        return f + Double(crossAttentionCount) * perCross
    }

    /// Estimated bytes of the activations alive at once: the backbone's block estimate
    /// (``CogVideoXConfiguration/activationBytesEstimate(batch:videoTokens:textTokens:)``) plus, with
    /// identity layers, the larger of a cross-attention's set (normalised video tokens, q and the
    /// attention output, `to_out` and the sum, scores over the queries) and the extractor's (context and
    /// latents with their projections and the feed-forward's hidden rows), with the face embedding.
    public func activationBytesEstimate(batch b: Int, videoTokens s: Int, textTokens l: Int, vitTokens n: Int, faceBatch fb: Int) -> Int {
        Int(min(activationBytes(batch: b, videoTokens: s, textTokens: l, vitTokens: n, faceBatch: fb), Double(Int.max / 2)))
    }

    /// ``activationBytesEstimate(batch:videoTokens:textTokens:vitTokens:faceBatch:)`` in Double.
    func activationBytes(batch b: Int, videoTokens s: Int, textTokens l: Int, vitTokens n: Int, faceBatch fb: Int) -> Double {
        let backboneBytes = backbone.activationBytes(batch: b, videoTokens: s, textTokens: l)
        guard isTrainFace else { return backboneBytes }
        let (bb, fbb) = (Double(b), Double(fb))
        let caInner = Double(crossAttnNumHeads * crossAttnDimHead), d = Double(innerDim), q = Double(lfeNumQueries)
        let cross = bb * Double(s) * (3 * d + 2 * caInner + Double(crossAttnNumHeads) * q)
        let v = Double(lfeVitDim), tokens = Double(n) + q + 2 * Double(lfeNumIdToken)
        let lfeInner = Double(lfeNumHeads * lfeDimHead)
        let extractor = fbb * tokens * (4 * v + 3 * lfeInner + v * Double(lfeFfMult) + Double(lfeNumHeads) * tokens)
        let face = fbb * q * Double(lfeOutputDim)
        return backboneBytes + 4 * (max(cross, extractor) + face)
    }
}
