import Foundation
import Tensors

/// The arguments of one `Lumina2Transformer2DModel.forward` call.
public struct Lumina2Input: LatentTimestepInput, Sendable {
    /// The latent `[B, in_channels, H, W]` (H and W multiples of `patch_size`).
    public var hiddenStates: Tensor
    /// The timestep per sample `[B]` (or `[1]`, broadcast), Lumina's `t = 1 − sigma` (0 = noise).
    public var timestep: Tensor
    /// Caption features `[B, L, cap_feat_dim]`.
    public var encoderHiddenStates: Tensor
    /// `encoder_attention_mask` `[B, L]` of zeros and ones. As in diffusers, a sample's caption length
    /// is its number of ones and its first that many tokens enter the joint sequence (a mask is
    /// normally ones followed by padding).
    public var encoderAttentionMask: Tensor

    /// Bundles the arguments.
    public init(hiddenStates: Tensor, timestep: Tensor, encoderHiddenStates: Tensor, encoderAttentionMask: Tensor) {
        self.hiddenStates = hiddenStates
        self.timestep = timestep
        self.encoderHiddenStates = encoderHiddenStates
        self.encoderAttentionMask = encoderAttentionMask
    }
}

/// The joint sequence entering the main layers and everything they read, computed once per call by
/// ``Lumina2Transformer/prepare(_:)`` (embeddings and both refiners).
public struct Lumina2State: Sendable {
    /// The joint sequence `[B, P, D]`: each sample's refined caption tokens, then its refined image
    /// tokens, zero-padded to the longest `P`. After ``Lumina2Transformer/runBlocks(_:)``, the layers' output.
    public var joint: Tensor
    /// The conditioning `temb` `[B, min(D, 1024)]`.
    public var temb: Tensor
    /// Rotary tables over the joint sequence.
    var rope: PerSampleRotary
    /// The key mask `[B, P]` of the joint attention (1 up to each sample's length), nil when no sample
    /// is padded (diffusers passes a mask exactly when the lengths differ).
    public var keyMask: Tensor?
    /// Caption tokens per sample (its mask's ones).
    public var captionLengths: [Int]
    /// The latent height and width.
    public var grid: (h: Int, w: Int)

    /// The padded joint length `P` = `max_seq_len` (TeaCache4Lumina2's cache key).
    public var maxSequenceLength: Int { joint.shape[1] }
}

/// diffusers 0.42.1 `Lumina2Transformer2DModel` (Lumina-Image-2.0) on the CPU in float32.
///
/// The forward is split the way TeaCache needs it: ``prepare(_:)`` runs everything before the main
/// layers — the time and caption embeddings, the multi-axis rotary tables, `x_embedder`, the context
/// refiner (caption tokens, caption key mask) and the noise refiner (image tokens, modulated), and
/// builds the padded joint sequence; ``modulatedInput(_:)`` is `layers[0].norm1(joint, temb)[0]`;
/// ``runBlocks(_:)`` runs `layers`; ``outputHead(_:)`` takes each sample's image part, applies
/// `norm_out` and unpatchifies. ``callAsFunction(_:)`` chains them.
///
/// Numerics: float32 throughout. diffusers keeps the rotary tables in complex128 and rotates in double
/// before rounding back; here the tables are computed in Double, rounded to float32, and applied in
/// float32 (differences of order 1e-7 relative).
public struct Lumina2Transformer: Sendable {
    /// The validated configuration.
    public let configuration: Lumina2Configuration
    /// `x_embedder`: `[D, p²·C]` over `(ph, pw, c)`-ordered patches.
    let xEmbedder: Linear
    /// `time_caption_embed`.
    let timeCaptionEmbed: Lumina2TimeCaptionEmbedding
    /// `noise_refiner` (modulated) and `context_refiner` (not modulated).
    let noiseRefiner: [Lumina2Block]
    let contextRefiner: [Lumina2Block]
    /// `layers`.
    let layers: [Lumina2Block]
    /// `norm_out`.
    let normOut: LuminaLayerNormContinuous
    /// The memory a forward may plan to use: ``prepare(_:)`` estimates the activations of the input shapes
    /// (``Lumina2Configuration/activationBytesEstimate(batch:imageTokens:textTokens:)``) and refuses inputs
    /// beyond it with `TensorError.memoryBudgetExceeded`.
    public var memoryBudget = MemoryBudget.machineDefault
    /// How TeaCache keys its cache entries (`DiffusionTransformer/cacheKey(for:branch:)`); changes nothing else.
    public var teaCacheKeying: Lumina2TeaCacheKeying = .branch

    /// Builds the model, taking every parameter from `weights` (called by ``Lumina2Family``'s loading
    /// functions, which check the weights afterwards).
    init(configuration c: Lumina2Configuration, weights w: WeightScope) {
        configuration = c
        let d = c.hiddenSize
        xEmbedder = Linear(w["x_embedder"], in: c.patchSize * c.patchSize * c.inChannels, out: d)
        timeCaptionEmbed = Lumina2TimeCaptionEmbedding(w["time_caption_embed"], configuration: c)
        noiseRefiner = (0..<c.numRefinerLayers).map { Lumina2Block(w["noise_refiner"][$0], configuration: c, modulation: true) }
        contextRefiner = (0..<c.numRefinerLayers).map {
            Lumina2Block(w["context_refiner"][$0], configuration: c, modulation: false)
        }
        layers = (0..<c.numLayers).map { Lumina2Block(w["layers"][$0], configuration: c, modulation: true) }
        normOut = LuminaLayerNormContinuous(w["norm_out"], dim: d, conditioningDim: c.conditioningDim,
                                            outDim: c.patchSize * c.patchSize * c.outChannels)
    }

    /// Builds the model from a diffusers state dict.
    /// - Throws: ``ModelLoadError`` for an invalid configuration or mismatched weights (all listed at once).
    public init(configuration: Lumina2Configuration, tensors: [String: Tensor]) throws(ModelLoadError) {
        self = try Lumina2Family.load(configuration, tensors: tensors)
    }

    /// Builds the model from the weights at `url`: a safetensors file, a sharded checkpoint's index, or a
    /// diffusers `transformer/` folder (see ``WeightsLocation``).
    public init(configuration: Lumina2Configuration, weightsAt url: URL) throws(ModelLoadError) {
        self = try Lumina2Family.load(configuration, weightsAt: url)
    }

    /// A randomly initialised model (FORMAT.md §6), its timestep MLP tapered for a `steps`-step run on
    /// Lumina's 0…1 timestep scale (`u = 1 / steps`).
    public static func random(configuration: Lumina2Configuration, seed: UInt64, steps: Int = 30) throws(ModelLoadError) -> Lumina2Transformer {
        try Lumina2Family.random(configuration, seed: seed, steps: steps)
    }

    /// This model with another TeaCache keying.
    public func withTeaCacheKeying(_ keying: Lumina2TeaCacheKeying) -> Lumina2Transformer {
        var m = self
        m.teaCacheKeying = keying
        return m
    }

    // MARK: - Forward parts

    /// Embeddings, rotary tables, both refiners and the padded joint sequence.
    /// - Throws: `TensorError` naming the argument that is wrong.
    public func prepare(_ input: Lumina2Input) throws(TensorError) -> Lumina2State {
        let c = configuration
        let (b, h, w, l, timesteps) = try validate(input)
        let (rows, cols) = (h / c.patchSize, w / c.patchSize)
        let s = rows * cols
        let mask = input.encoderAttentionMask.scalars
        let captionLengths = (0..<b).map { i in Int(mask[(i * l)..<((i + 1) * l)].reduce(0, +)) }
        let rope = try Lumina2RotaryTables(configuration: c, captionLengths: captionLengths, captionTokens: l,
                                           rows: rows, cols: cols)
        let temb = try timeCaptionEmbed.time(timesteps)
        var caption = try timeCaptionEmbed.caption(input.encoderHiddenStates)
        var image = try xEmbedder(Patches.patchify2D(input.hiddenStates, patch: c.patchSize, order: .channelsLast))
        for block in contextRefiner {
            caption = try block(caption, rope: rope.caption, keyMask: input.encoderAttentionMask, temb: nil)
        }
        for block in noiseRefiner { image = try block(image, rope: rope.image, keyMask: nil, temb: temb) }
        let lengths = captionLengths.map { $0 + s }
        let p = lengths.max() ?? s
        let joint = try Self.joint(caption: caption, image: image, captionLengths: captionLengths, length: p)
        var keyMask: Tensor? = nil
        if lengths.contains(where: { $0 < p }) {
            var m = [Float](repeating: 0, count: b * p)
            for (i, n) in lengths.enumerated() { for j in 0..<n { m[i * p + j] = 1 } }
            keyMask = try Tensor(shape: [b, p], scalars: m)
        }
        return Lumina2State(joint: joint, temb: temb, rope: rope.joint, keyMask: keyMask, captionLengths: captionLengths,
                            grid: (h, w))
    }

    /// `[B, P, D]`: sample i's first `c_i` caption rows, then its image rows, then zeros.
    static func joint(caption: Tensor, image: Tensor, captionLengths: [Int], length p: Int) throws(TensorError) -> Tensor {
        let (b, l, d) = (caption.shape[0], caption.shape[1], caption.shape[2])
        let s = image.shape[1]
        var out = try Tensor(zeros: [b, p, d])
        caption.withUnsafeBufferPointer { pc in
            image.withUnsafeBufferPointer { pi in
                out.withUnsafeMutableBufferPointer { po in
                    for (i, cl) in captionLengths.enumerated() {
                        let o = po.baseAddress! + i * p * d
                        if cl > 0 { o.update(from: pc.baseAddress! + i * l * d, count: cl * d) }
                        (o + cl * d).update(from: pi.baseAddress! + i * s * d, count: s * d)
                    }
                }
            }
        }
        return out
    }

    /// TeaCache's modulated input: `layers[0].norm1(joint, temb)[0]`, `[B, P, D]`. Requires at least one layer.
    public func modulatedInput(_ state: Lumina2State) throws(TensorError) -> Tensor {
        guard let norm = layers.first?.modulatedNorm else {
            throw .invalidArgument(operation: "Lumina2 modulated input", reason: "the configuration has no layer (num_layers = 0)")
        }
        return try norm(state.joint, emb: state.temb).normalized
    }

    /// Runs `layers` on the joint sequence, in place.
    public func runBlocks(_ state: inout Lumina2State) throws(TensorError) {
        var x = state.joint
        for layer in layers { x = try layer(x, rope: state.rope, keyMask: state.keyMask, temb: state.temb) }
        state.joint = x
    }

    /// Each sample's image tokens through `norm_out`, unpatchified: `[B, out_channels, H, W]`.
    ///
    /// (`norm_out` works row by row, so applying it to the image rows only gives diffusers' values.)
    public func outputHead(_ state: Lumina2State) throws(TensorError) -> Tensor {
        let (b, p, d) = (state.joint.shape[0], state.joint.shape[1], state.joint.shape[2])
        let c = configuration
        let s = (state.grid.h / c.patchSize) * (state.grid.w / c.patchSize)
        let image = state.joint.withUnsafeBufferPointer { pj in
            Tensor(uninitializedShape: [b, s, d]) { out in
                for (i, cl) in state.captionLengths.enumerated() {
                    (out.baseAddress! + i * s * d).update(from: pj.baseAddress! + (i * p + cl) * d, count: s * d)
                }
            }
        }
        let y = try normOut(image, conditioning: state.temb)
        return try Patches.unpatchify2D(y, height: state.grid.h, width: state.grid.w, patch: c.patchSize, order: .channelsLast)
    }

    /// The full forward (`model(**inputs, return_dict=False)[0]`).
    public func callAsFunction(_ input: Lumina2Input) throws(TensorError) -> Tensor {
        var state = try prepare(input)
        try runBlocks(&state)
        return try outputHead(state)
    }

    /// Checks every argument; returns the batch, latent size, caption length and the timestep values.
    private func validate(_ x: Lumina2Input) throws(TensorError) -> (Int, Int, Int, Int, [Float]) {
        let c = configuration
        let op = "Lumina2 forward"
        let z = try LuminaInputChecks.latentAndCaption(x.hiddenStates, x.encoderHiddenStates, inChannels: c.inChannels,
                                                       patch: c.patchSize, captionWidth: (c.capFeatDim, "cap_feat_dim"),
                                                       operation: op)
        try memoryBudget.check("\(op) of batch \(z.batch), \(z.imageTokens) image + \(z.textTokens) text tokens",
                               bytes: Double(c.activationBytesEstimate(batch: z.batch, imageTokens: z.imageTokens, textTokens: z.textTokens)))
        try LuminaInputChecks.binaryMask(x.encoderAttentionMask, batch: z.batch, length: z.textTokens,
                                         name: "encoder_attention_mask", operation: op, requireToken: false)
        let t = try LuminaInputChecks.timesteps(x.timestep, batch: z.batch, operation: op)
        return (z.batch, z.height, z.width, z.textTokens, t)
    }
}
