import Foundation
import Tensors

/// Where the rotary embedding of a Lumina-Next call comes from.
public enum LuminaNextRotary: Sendable {
    /// Computed here from the token grid (`get_2d_rotary_pos_embed_lumina`) with the pipeline's scaling
    /// factors (see ``LuminaNextTransformer/pipelineSettings(configuration:latentHeight:latentWidth:timestep:scalingWatershed:)``).
    case computed(linearFactor: Double, ntkFactor: Double)
    /// diffusers' `image_rotary_emb` argument as `(real, imaginary)` pairs, `[R, C, Dh/2, 2]` with
    /// `R`, `C` at least the token grid (its top-left corner is used, as diffusers slices it).
    case table(Tensor)

    /// Unscaled: both factors 1 (the pipeline's factors at its default size).
    public static let unscaled = LuminaNextRotary.computed(linearFactor: 1, ntkFactor: 1)
}

/// The arguments of one `LuminaNextDiT2DModel.forward` call.
public struct LuminaNextInput: LatentTimestepInput, Sendable {
    /// The latent `[B, in_channels, H, W]` (H and W multiples of `patch_size`).
    public var hiddenStates: Tensor
    /// The timestep per sample `[B]` (or `[1]`, broadcast), Lumina's `t = 1 − sigma` (0 = noise).
    public var timestep: Tensor
    /// Caption features `[B, L, cross_attention_dim]`.
    public var encoderHiddenStates: Tensor
    /// `encoder_mask` `[B, L]`: 1 for caption tokens, 0 for padding (each sample needs one token).
    public var encoderMask: Tensor
    /// The rotary embedding.
    public var rotary: LuminaNextRotary
    /// `cross_attention_kwargs["base_sequence_length"]`: the proportional-attention base, or nil for
    /// the plain `1/√Dh` self-attention scale.
    public var baseSequenceLength: Double?

    /// Bundles the arguments.
    public init(hiddenStates: Tensor, timestep: Tensor, encoderHiddenStates: Tensor, encoderMask: Tensor,
                rotary: LuminaNextRotary = .unscaled, baseSequenceLength: Double? = nil) {
        self.hiddenStates = hiddenStates
        self.timestep = timestep
        self.encoderHiddenStates = encoderHiddenStates
        self.encoderMask = encoderMask
        self.rotary = rotary
        self.baseSequenceLength = baseSequenceLength
    }
}

/// Everything the Lumina-Next blocks need, computed once per call by ``LuminaNextTransformer/prepare(_:)``.
public struct LuminaNextState: Sendable {
    /// The image tokens `[B, S, D]`: the patch embedding after `prepare`, the block output after `runBlocks`.
    public var tokens: Tensor
    /// What every block reads (conditioning, caption, rotary tables, attention scale).
    var context: LuminaNextBlockContext
    /// The latent height and width.
    public var grid: (h: Int, w: Int)
}

/// diffusers 0.42.1 `LuminaNextDiT2DModel` (Lumina-Next-SFT) on the CPU in float32.
///
/// The forward is split the way TeaCache needs it: ``prepare(_:)`` (patch embedding, the combined
/// timestep + masked-mean caption embedding, rotary tables, the proportional-attention scale),
/// ``modulatedInput(_:)``, ``runBlocks(_:)`` and ``outputHead(_:)`` (`norm_out`, unpatchify).
/// ``callAsFunction(_:)`` chains them. With `learn_sigma` the output has `2·in_channels` channels, the
/// first `in_channels` being the prediction (the velocity is minus those, ``LuminaNextFamily``).
///
/// Numerics: float32 throughout, as diffusers runs float32 weights; the rotary tables are computed in
/// float32 like diffusers' and correctly rounded. `pad_token` is loaded (it is a parameter) and, as in
/// diffusers, never used.
public struct LuminaNextTransformer: Sendable {
    /// The validated configuration.
    public let configuration: LuminaNextConfiguration
    /// `patch_embedder`.
    let patchEmbedder: LuminaNextPatchEmbedding
    /// `pad_token` `[D]` (unused by the forward, as in diffusers).
    let padToken: Tensor
    /// `time_caption_embed`.
    let timeCaptionEmbed: LuminaNextTimeCaptionEmbedding
    /// `layers`.
    let layers: [LuminaNextBlock]
    /// `norm_out`.
    let normOut: LuminaLayerNormContinuous
    /// The memory a forward may plan to use: ``prepare(_:)`` estimates the activations of the input shapes
    /// (``LuminaNextConfiguration/activationBytesEstimate(batch:imageTokens:textTokens:)``) and refuses
    /// inputs beyond it with `TensorError.memoryBudgetExceeded`.
    public var memoryBudget = MemoryBudget.machineDefault

    /// Builds the model, taking every parameter from `weights` (called by ``LuminaNextFamily``'s loading
    /// functions, which check the weights afterwards).
    init(configuration c: LuminaNextConfiguration, weights w: WeightScope) {
        configuration = c
        patchEmbedder = LuminaNextPatchEmbedding(w["patch_embedder"], configuration: c)
        padToken = w["pad_token"].tensor(shape: [c.hiddenSize])
        timeCaptionEmbed = LuminaNextTimeCaptionEmbedding(w["time_caption_embed"], configuration: c)
        layers = (0..<c.numLayers).map { LuminaNextBlock(w["layers"][$0], configuration: c) }
        normOut = LuminaLayerNormContinuous(w["norm_out"], dim: c.hiddenSize, conditioningDim: c.conditioningDim,
                                            outDim: c.patchSize * c.patchSize * c.outChannels)
    }

    /// Builds the model from a diffusers state dict.
    /// - Throws: ``ModelLoadError`` for an invalid configuration or mismatched weights (all listed at once).
    public init(configuration: LuminaNextConfiguration, tensors: [String: Tensor]) throws(ModelLoadError) {
        self = try LuminaNextFamily.load(configuration, tensors: tensors)
    }

    /// Builds the model from the weights at `url`: a safetensors file, a sharded checkpoint's index, or a
    /// diffusers `transformer/` folder (see ``WeightsLocation``).
    public init(configuration: LuminaNextConfiguration, weightsAt url: URL) throws(ModelLoadError) {
        self = try LuminaNextFamily.load(configuration, weightsAt: url)
    }

    /// A randomly initialised model (FORMAT.md §6), its timestep MLP tapered for a `steps`-step run on
    /// Lumina's 0…1 timestep scale (`u = 1 / steps`).
    public static func random(configuration: LuminaNextConfiguration, seed: UInt64, steps: Int = 30) throws(ModelLoadError) -> LuminaNextTransformer {
        try LuminaNextFamily.random(configuration, seed: seed, steps: steps)
    }

    /// The settings `LuminaText2ImgPipeline` passes for a latent of `latentHeight × latentWidth` at
    /// Lumina timestep `timestep`: the proportional-attention base `(8·sample_size // 16)²` and the
    /// rotary scaling `√(H·W) / sample_size` — as a linear factor below `scalingWatershed` (default 1,
    /// so every step), as an NTK factor from it on.
    ///
    /// - Throws: `unsupportedConfig` when the configuration has no `sample_size`.
    public static func pipelineSettings(
        configuration c: LuminaNextConfiguration, latentHeight: Int, latentWidth: Int, timestep: Double,
        scalingWatershed: Double = 1.0
    ) throws(ModelLoadError) -> (rotary: LuminaNextRotary, baseSequenceLength: Double) {
        guard let s = c.sampleSize else {
            throw .unsupportedConfig(field: "sample_size", value: "null", reason: "the pipeline's defaults are derived from it")
        }
        let vaeScale = 8, defaultImage = s * vaeScale
        let base = Double((defaultImage / 16) * (defaultImage / 16))
        let scaling = (Double(latentWidth * vaeScale) * Double(latentHeight * vaeScale)
                       / (Double(defaultImage) * Double(defaultImage))).squareRoot()
        let rotary: LuminaNextRotary = timestep < scalingWatershed
            ? .computed(linearFactor: scaling, ntkFactor: 1) : .computed(linearFactor: 1, ntkFactor: scaling)
        return (rotary, base)
    }

    // MARK: - Forward parts

    /// Patch, time-caption and rotary embeddings: everything before the first block.
    /// - Throws: `TensorError` naming the argument that is wrong.
    public func prepare(_ input: LuminaNextInput) throws(TensorError) -> LuminaNextState {
        let c = configuration
        let (_, h, w, timesteps) = try validate(input)
        let (rows, cols) = (h / c.patchSize, w / c.patchSize)
        let rope: (cos: Tensor, sin: Tensor)
        switch input.rotary {
        case let .computed(linear, ntk):
            rope = try LuminaNextRotaryEmbedding.tables(headDim: c.headDim, rows: rows, cols: cols,
                                                        linearFactor: linear, ntkFactor: ntk)
        case let .table(t):
            rope = try LuminaNextRotaryEmbedding.tables(fromTable: t, rows: rows, cols: cols, headDim: c.headDim)
        }
        let scale = try proportionalAttentionScale(sequenceLength: rows * cols, baseSequenceLength: input.baseSequenceLength,
                                                   headDim: c.headDim)
        let temb = try timeCaptionEmbed(timesteps: timesteps, caption: input.encoderHiddenStates, mask: input.encoderMask)
        return LuminaNextState(
            tokens: try patchEmbedder(input.hiddenStates),
            context: LuminaNextBlockContext(temb: temb, caption: input.encoderHiddenStates, captionMask: input.encoderMask,
                                            rope: rope, selfAttentionScale: scale),
            grid: (h, w))
    }

    /// TeaCache's modulated input: `layers[0].norm1(tokens, temb)[0]` = `RMSNorm(h)·(1 + scale_msa)`, `[B, S, D]`.
    /// Requires at least one layer.
    public func modulatedInput(_ state: LuminaNextState) throws(TensorError) -> Tensor {
        guard let first = layers.first else {
            throw .invalidArgument(operation: "Lumina-Next modulated input", reason: "the configuration has no layer (num_layers = 0)")
        }
        return try first.norm1(state.tokens, emb: state.context.temb).normalized
    }

    /// Runs every block on `state.tokens`, in place.
    public func runBlocks(_ state: inout LuminaNextState) throws(TensorError) {
        var x = state.tokens
        for layer in layers { x = try layer(x, state.context) }
        state.tokens = x
    }

    /// `norm_out` and unpatchify: `[B, out_channels, H, W]`.
    public func outputHead(_ state: LuminaNextState) throws(TensorError) -> Tensor {
        let y = try normOut(state.tokens, conditioning: state.context.temb)
        return try Patches.unpatchify2D(y, height: state.grid.h, width: state.grid.w, patch: configuration.patchSize,
                                        order: .channelsLast)
    }

    /// The full forward (`model(**inputs, return_dict=False)[0]`).
    public func callAsFunction(_ input: LuminaNextInput) throws(TensorError) -> Tensor {
        var state = try prepare(input)
        try runBlocks(&state)
        return try outputHead(state)
    }

    /// Checks every argument; returns the batch, the latent size and the timestep values.
    private func validate(_ x: LuminaNextInput) throws(TensorError) -> (Int, Int, Int, [Float]) {
        let c = configuration
        let op = "Lumina-Next forward"
        let z = try LuminaInputChecks.latentAndCaption(x.hiddenStates, x.encoderHiddenStates, inChannels: c.inChannels,
                                                       patch: c.patchSize, captionWidth: (c.crossAttentionDim, "cross_attention_dim"),
                                                       operation: op)
        try memoryBudget.check("\(op) of batch \(z.batch), \(z.imageTokens) image + \(z.textTokens) text tokens",
                               bytes: Double(c.activationBytesEstimate(batch: z.batch, imageTokens: z.imageTokens, textTokens: z.textTokens)))
        try LuminaInputChecks.binaryMask(x.encoderMask, batch: z.batch, length: z.textTokens, name: "encoder_mask",
                                         operation: op, requireToken: true)
        let t = try LuminaInputChecks.timesteps(x.timestep, batch: z.batch, operation: op)
        if case let .table(table) = x.rotary, !table.isFinite {
            throw .invalidArgument(operation: op, reason: "image_rotary_emb holds NaN or infinite values")
        }
        return (z.batch, z.height, z.width, t)
    }
}

