import Foundation
import Tensors

/// The configuration of diffusers' `HiDreamImageTransformer2DModel` (HiDream-I1 Full, Dev and Fast),
/// decoded from the model's `config.json`.
///
/// Field names and defaults are diffusers'. Every field that changes a shape or the computation is
/// honoured; ``validate()`` rejects values the model cannot run with a typed error. `force_inference_output`
/// only changes diffusers' training path and is read but has no effect; `max_resolution` sizes the padded
/// layout of non-square latents (see ``HiDreamI1Transformer``). Keys starting with `_` and unknown keys
/// are ignored.
public struct HiDreamI1Configuration: DiTConfiguration {
    /// The diffusers class this configuration describes.
    public static let classNames = ["HiDreamImageTransformer2DModel"]

    /// Side of the square latent patch folded into each token (diffusers' default is `None`, which
    /// diffusers cannot build; a configuration must set it).
    public var patchSize: Int? = nil
    /// Latent channels.
    public var inChannels: Int = 64
    /// Output channels as configured; `nil` (and `0`) means `inChannels` (diffusers' `out_channels or in_channels`).
    public var outChannelsSetting: Int? = nil
    /// Number of double-stream blocks (`double_stream_blocks`).
    public var numLayers: Int = 16
    /// Number of single-stream blocks (`single_stream_blocks`).
    public var numSingleLayers: Int = 32
    /// Width of one attention head.
    public var attentionHeadDim: Int = 128
    /// Number of attention heads; the model width is `heads · headDim`.
    public var numAttentionHeads: Int = 20
    /// `[T5 width, llama width]`: the input widths of the T5 projection and of the per-block llama
    /// projections (diffusers' default `None` cannot be built; a configuration must set it).
    public var captionChannels: [Int] = []
    /// Width of the pooled text embedding (`pooled_embeds`).
    public var textEmbDim: Int = 2048
    /// Routed experts of each image feed-forward; 0 makes it a plain SwiGLU feed-forward (no gate, no
    /// shared expert).
    public var numRoutedExperts: Int = 4
    /// Experts the gate picks per token (top-k of its softmax, weights not renormalised).
    public var numActivatedExperts: Int = 2
    /// Rotary dimensions of the three position axes (unused, row, column); their sum is the head width,
    /// or half of it (then only the first half of every head is rotated).
    public var axesDimsRope: [Int] = [32, 32]
    /// The largest latent grid of diffusers' padded layout for non-square latents.
    public var maxResolution: [Int] = [128, 128]
    /// Which stacked llama hidden state each block reads (double-stream blocks first, then single-stream
    /// blocks); one entry per block. Negative entries count from the end, as Python indexing does.
    public var llamaLayers: [Int] = []
    /// diffusers' switch for its training path; inference ignores it.
    public var forceInferenceOutput: Bool = false

    /// Rotary base of `HiDreamImageEmbedND` (fixed in diffusers).
    public static let ropeTheta: Double = 10000
    /// Width of the sinusoidal timestep features (fixed in diffusers).
    public static let timestepChannels = 256
    /// SwiGLU hidden widths are rounded up to a multiple of this (fixed in diffusers).
    public static let swiGLUMultiple = 256

    enum CodingKeys: String, CodingKey {
        case patchSize = "patch_size", inChannels = "in_channels", outChannelsSetting = "out_channels"
        case numLayers = "num_layers", numSingleLayers = "num_single_layers"
        case attentionHeadDim = "attention_head_dim", numAttentionHeads = "num_attention_heads"
        case captionChannels = "caption_channels", textEmbDim = "text_emb_dim"
        case numRoutedExperts = "num_routed_experts", numActivatedExperts = "num_activated_experts"
        case axesDimsRope = "axes_dims_rope", maxResolution = "max_resolution", llamaLayers = "llama_layers"
        case forceInferenceOutput = "force_inference_output"
    }

    /// A configuration with diffusers' defaults (which need `patch_size`, `caption_channels` and
    /// `llama_layers` set before they validate).
    public init() {}

    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        let d = HiDreamI1Configuration()
        patchSize = try c.decodeIfPresent(Int.self, forKey: .patchSize)
        inChannels = try c.decodeIfPresent(Int.self, forKey: .inChannels) ?? d.inChannels
        // diffusers: `out_channels or in_channels`, so null, absent and 0 all mean in_channels.
        let out = try c.decodeIfPresent(Int.self, forKey: .outChannelsSetting)
        outChannelsSetting = out == 0 ? nil : out
        numLayers = try c.decodeIfPresent(Int.self, forKey: .numLayers) ?? d.numLayers
        numSingleLayers = try c.decodeIfPresent(Int.self, forKey: .numSingleLayers) ?? d.numSingleLayers
        attentionHeadDim = try c.decodeIfPresent(Int.self, forKey: .attentionHeadDim) ?? d.attentionHeadDim
        numAttentionHeads = try c.decodeIfPresent(Int.self, forKey: .numAttentionHeads) ?? d.numAttentionHeads
        captionChannels = try c.decodeIfPresent([Int].self, forKey: .captionChannels) ?? d.captionChannels
        textEmbDim = try c.decodeIfPresent(Int.self, forKey: .textEmbDim) ?? d.textEmbDim
        numRoutedExperts = try c.decodeIfPresent(Int.self, forKey: .numRoutedExperts) ?? d.numRoutedExperts
        numActivatedExperts = try c.decodeIfPresent(Int.self, forKey: .numActivatedExperts) ?? d.numActivatedExperts
        axesDimsRope = try c.decodeIfPresent([Int].self, forKey: .axesDimsRope) ?? d.axesDimsRope
        maxResolution = try c.decodeIfPresent([Int].self, forKey: .maxResolution) ?? d.maxResolution
        llamaLayers = try c.decodeIfPresent([Int].self, forKey: .llamaLayers) ?? d.llamaLayers
        forceInferenceOutput = try c.decodeIfPresent(Bool.self, forKey: .forceInferenceOutput) ?? d.forceInferenceOutput
    }

    /// The model width `numAttentionHeads · attentionHeadDim`.
    public var innerDim: Int { numAttentionHeads * attentionHeadDim }
    /// Output channels (`out_channels`, or `in_channels` when it is null or 0).
    public var outChannels: Int { outChannelsSetting ?? inChannels }
    /// The patch side (1 before validation when unset; ``validate()`` refuses that).
    var patch: Int { patchSize ?? 1 }
    /// Values per patch token: `patch² · in_channels`.
    public var patchWidth: Int { patch * patch * inChannels }
    /// Width of the output projection: `patch² · out_channels`.
    public var outputWidth: Int { patch * patch * outChannels }
    /// `max_seq`: the padded image-token count of a non-square latent, `max_resolution[0]·max_resolution[1] / patch²`.
    public var maxSequence: Int { (maxResolution.first ?? 0) * (maxResolution.last ?? 0) / (patch * patch) }
    /// Number of blocks, double-stream then single-stream.
    public var blockCount: Int { numLayers + numSingleLayers }
    /// Whether every head is rotated whole (the rotary axes add up to the head width) rather than its
    /// first half only.
    var rotatesWholeHead: Bool { axesDimsRope.reduce(0, +) == attentionHeadDim }

    /// diffusers' SwiGLU hidden width for a nominal `hidden`: two thirds of it, rounded up to a
    /// multiple of 256.
    static func swiGLUHidden(_ hidden: Int) -> Int {
        let h = 2 * hidden / 3
        return swiGLUMultiple * ((h + swiGLUMultiple - 1) / swiGLUMultiple)
    }
    /// Hidden width of a routed expert, of the text feed-forward and of a plain image feed-forward (nominal `4·D`).
    public var expertHiddenDim: Int { Self.swiGLUHidden(4 * innerDim) }
    /// Hidden width of the shared expert (nominal `2·D`).
    public var sharedExpertHiddenDim: Int { Self.swiGLUHidden(2 * innerDim) }
    /// Whether the image feed-forwards are mixtures of experts.
    public var usesExperts: Bool { numRoutedExperts > 0 }

    /// Throws ``ModelLoadError/unsupportedConfig(field:value:reason:)`` for the first value this model
    /// cannot run with.
    public func validate() throws(ModelLoadError) {
        guard let patchSize else {
            throw .unsupportedConfig(field: "patch_size", value: "null", reason: "set the latent patch size (HiDream-I1 uses 2)")
        }
        let positive: [(String, Int?)] = [
            ("patch_size", patchSize), ("in_channels", inChannels), ("out_channels", outChannelsSetting),
            ("attention_head_dim", attentionHeadDim), ("num_attention_heads", numAttentionHeads),
            ("text_emb_dim", textEmbDim),
        ]
        for (field, value) in positive {
            if let value, value <= 0 {
                throw .unsupportedConfig(field: field, value: "\(value)", reason: "must be a positive integer")
            }
        }
        for (field, value) in [("num_layers", numLayers), ("num_single_layers", numSingleLayers),
                               ("num_routed_experts", numRoutedExperts)] where value < 0 {
            throw .unsupportedConfig(field: field, value: "\(value)", reason: "must not be negative")
        }
        // Bounded before any product or sum of them is formed (see SizeLimits).
        for (field, value) in positive + [("num_layers", numLayers), ("num_single_layers", numSingleLayers),
                                          ("num_routed_experts", numRoutedExperts),
                                          ("num_activated_experts", numActivatedExperts)] {
            if let value { try SizeLimits.checkConfig(field, value) }
        }
        guard captionChannels.count == 2, captionChannels.allSatisfy({ $0 > 0 }) else {
            throw .unsupportedConfig(field: "caption_channels", value: "\(captionChannels)",
                                     reason: "needs two positive widths: [T5 width, llama width]")
        }
        for v in captionChannels { try SizeLimits.checkConfig("caption_channels", v) }
        if usesExperts {
            guard (1...numRoutedExperts).contains(numActivatedExperts) else {
                throw .unsupportedConfig(field: "num_activated_experts", value: "\(numActivatedExperts)",
                                         reason: "must be in 1...num_routed_experts = \(numRoutedExperts)")
            }
        }
        let axes = "\(axesDimsRope)"
        guard axesDimsRope.count == 3 else {
            throw .unsupportedConfig(field: "axes_dims_rope", value: axes,
                                     reason: "needs three axes (the image position ids have three columns)")
        }
        for a in axesDimsRope { try SizeLimits.checkConfig("axes_dims_rope", a) }
        guard axesDimsRope.allSatisfy({ $0 > 0 && $0 % 2 == 0 }) else {
            throw .unsupportedConfig(field: "axes_dims_rope", value: axes,
                                     reason: "every rotary axis dimension must be positive and even")
        }
        let rotary = axesDimsRope.reduce(0, +)
        guard rotary == attentionHeadDim || 2 * rotary == attentionHeadDim else {
            throw .unsupportedConfig(field: "axes_dims_rope", value: axes,
                                     reason: "the axes must add up to attention_head_dim = \(attentionHeadDim) or half of it")
        }
        guard maxResolution.count == 2, maxResolution.allSatisfy({ $0 > 0 }) else {
            throw .unsupportedConfig(field: "max_resolution", value: "\(maxResolution)", reason: "needs two positive sizes")
        }
        for v in maxResolution { try SizeLimits.checkConfig("max_resolution", v) }
        guard maxSequence >= 1, maxSequence <= SizeLimits.maximumExtent else {
            throw .unsupportedConfig(field: "max_resolution", value: "\(maxResolution)",
                                     reason: "max_resolution[0]·max_resolution[1] / patch_size² must be in 1...\(SizeLimits.maximumExtent)")
        }
        guard blockCount >= 1 else {
            throw .unsupportedConfig(field: "num_layers", value: "\(numLayers)",
                                     reason: "num_layers + num_single_layers must be at least 1")
        }
        guard llamaLayers.count == blockCount else {
            throw .unsupportedConfig(field: "llama_layers", value: "\(llamaLayers.count) entries",
                                     reason: "needs one entry per block: num_layers + num_single_layers = \(blockCount)")
        }
        for k in llamaLayers { try SizeLimits.checkConfig("llama_layers", abs(k)) }
        // Each factor is at most 2¹⁶ here, so these products cannot overflow.
        guard innerDim <= SizeLimits.maximumExtent else {
            throw .unsupportedConfig(field: "num_attention_heads", value: "\(numAttentionHeads)",
                                     reason: "the model width num_attention_heads · attention_head_dim = \(innerDim) "
                                        + "exceeds the supported maximum of \(SizeLimits.maximumExtent)")
        }
        for (field, width) in [("in_channels", patchWidth), ("out_channels", outputWidth)]
        where width > SizeLimits.maximumExtent {
            throw .unsupportedConfig(field: field, value: "\(width)",
                                     reason: "patch_size² · \(field) = \(width) exceeds the supported maximum of \(SizeLimits.maximumExtent)")
        }
    }
}

// MARK: Cost model

extension HiDreamI1Configuration {
    /// Matmul and attention FLOPs of one forward (2 per multiply-add; norms, activations, softmax and
    /// the gate's routing are not counted).
    ///
    /// With `S` image tokens, `L = L_t5 + L_llama` kept text tokens and `T = S + L + L_llama` tokens in
    /// every attention: a double-stream block costs `8·D²·T` (q, k, v, out of both streams) plus the
    /// image feed-forward on `S` tokens (the shared and `k` routed experts: `3·D·(h_s + k·h)`) and the
    /// text feed-forward on `L + L_llama` tokens (`3·D·h`), plus `4·T²·D` attention; a single-stream block
    /// costs `4·D²·T` plus the image feed-forward on all `T` tokens plus the attention.
    public func forwardFLOPs(batch b: Int, imageTokens s: Int, t5Tokens l5: Int, llamaTokens ll: Int) -> Double {
        let d = Double(innerDim), bb = Double(b), ss = Double(s)
        let text = Double(l5 + 2 * ll), t = ss + text
        let routed = usesExperts ? Double(numActivatedExperts) * Double(expertHiddenDim) + Double(sharedExpertHiddenDim)
                                 : Double(expertHiddenDim)
        let gate = usesExperts ? Double(numRoutedExperts) : 0
        let imageFF = 2 * 3 * d * routed + 2 * d * gate
        let textFF = 2 * 3 * d * Double(expertHiddenDim)
        let attentionFLOPs = 4 * bb * t * t * d
        let double = 2 * bb * t * 4 * d * d + bb * ss * imageFF + bb * text * textFF + attentionFLOPs
        let single = 2 * bb * t * 4 * d * d + bb * t * imageFF + attentionFLOPs
        var f = 2 * bb * ss * Double(patchWidth) * d
        f += 2 * bb * (Double(Self.timestepChannels) * d + d * d) + 2 * bb * (Double(textEmbDim) * d + d * d)
        f += 2 * bb * Double(l5) * Double(captionChannels.first ?? 0) * d
        f += 2 * bb * Double(blockCount * ll) * Double(captionChannels.last ?? 0) * d
        f += Double(numLayers) * (double + 2 * bb * d * 12 * d) + Double(numSingleLayers) * (single + 2 * bb * d * 6 * d)
        f += 2 * bb * d * 2 * d + 2 * bb * ss * d * Double(outputWidth)
        return f
    }

    /// Estimated bytes of the activations alive at once inside a single-stream block (the largest set):
    /// the `T`-token sequence, its normalised copy, q, k, v, their rotated copies, the attention output
    /// and the block output (about `10·T·D` floats), the widest feed-forward hidden pair `2·T·h`, the
    /// per-block llama projections `blocks·L_llama·D` that live through the whole forward, and one query
    /// block of attention scores per thread.
    public func activationBytesEstimate(batch b: Int, imageTokens s: Int, t5Tokens l5: Int, llamaTokens ll: Int) -> Int {
        let t = s + l5 + 2 * ll
        let hidden = max(expertHiddenDim, sharedExpertHiddenDim)
        let scores = attentionScoreFloats(keys: t) * Parallelism.threadCount
        return 4 * (b * t * (10 * innerDim + 2 * hidden) + b * blockCount * ll * innerDim + scores)
    }
}
