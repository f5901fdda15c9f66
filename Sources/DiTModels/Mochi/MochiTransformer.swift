import Foundation
import Tensors

/// The arguments of one `MochiTransformer3DModel.forward` call.
public struct MochiInput: LatentTimestepInput, Sendable {
    /// The latent video `[B, C, F, H, W]`.
    public var hiddenStates: Tensor
    /// Text-encoder features `[B, L, text_embed_dim]`.
    public var encoderHiddenStates: Tensor
    /// The timestep per sample `[B]` (or `[1]`, broadcast over the batch), on the 0…1000 scale (Mochi's
    /// scheduler inverts sigmas: `(1 − σ)·1000`).
    public var timestep: Tensor
    /// `[B, L]`: nonzero for caption tokens to attend (diffusers' `encoder_attention_mask`; the pool also
    /// weights the mean by its values).
    public var encoderAttentionMask: Tensor

    /// Bundles the arguments.
    public init(hiddenStates: Tensor, encoderHiddenStates: Tensor, timestep: Tensor, encoderAttentionMask: Tensor) {
        self.hiddenStates = hiddenStates
        self.encoderHiddenStates = encoderHiddenStates
        self.timestep = timestep
        self.encoderAttentionMask = encoderAttentionMask
    }
}

/// Everything computed before the block stack for one call, and the visual tokens as they go through it.
public struct MochiState: Sendable {
    /// The visual tokens `[B, S, D]`: the patch-embedded input h_in after ``MochiTransformer/prepare(_:)``;
    /// after ``MochiTransformer/runBlocks(_:)`` the block-stack output already passed through `norm_out`
    /// (TeaCache4Mochi's cached span ends after the final norm).
    public var tokens: Tensor
    /// The caption tokens `[B, L, P]` (`caption_proj` output), updated by the blocks.
    public var text: Tensor
    /// The conditioning `temb` `[B, D]` (time embedding + pooled caption).
    public var temb: Tensor
    /// The rotary tables `[S, H·Dh]`, shared by the batch.
    public var rotary: (cos: Tensor, sin: Tensor)
    /// The valid caption tokens of each sample.
    var mask: MochiTextMask
    /// The latent grid `(F, H, W)` before patching.
    public var grid: (f: Int, h: Int, w: Int)
}

/// diffusers 0.42.1 `MochiTransformer3DModel` on the CPU in float32.
///
/// The forward is split the way TeaCache4Mochi needs it: ``prepare(_:)`` (patch embedding, timestep +
/// pooled-caption conditioning, caption projection, rotary tables, mask), ``runBlocks(_:)`` (the blocks
/// **and** `norm_out`, since the reference's residual is `norm_out(blocks(h_in), temb) − h_in`),
/// ``outputHead(_:)`` (`proj_out` and unpatchify). ``callAsFunction(_:)`` chains them.
///
/// Precision: diffusers upcasts to float32 inside every norm and rotary step and casts back to the
/// model dtype; with float32 weights (the fixtures, and this port) each cast is the identity. The rotary
/// angles are float32 values (diffusers' float32 einsum), their cos/sin computed in Double.
public struct MochiTransformer: Sendable {
    /// The validated configuration.
    public let configuration: MochiConfiguration
    /// The memory a forward may plan to use: ``prepare(_:)`` estimates the activations of the input shapes
    /// (``MochiConfiguration/activationBytesEstimate(batch:visualTokens:textTokens:)``) and refuses inputs
    /// beyond it with `TensorError.memoryBudgetExceeded`.
    public var memoryBudget = MemoryBudget.machineDefault
    /// `patch_embed`.
    let patchEmbedding: MochiPatchEmbedding
    /// `time_embed`.
    let timeEmbedding: MochiTimestepCaptionEmbedding
    /// `pos_frequencies` `[3, H, Dh/2]`.
    let positionFrequencies: Tensor
    /// `transformer_blocks`; the last one is `context_pre_only`.
    let blocks: [MochiTransformerBlock]
    /// `norm_out` (LayerNorm without affine, ε = 1e-6, modulated by `temb`).
    let normOut: AdaLayerNormContinuous
    /// `proj_out` `[p²·out_channels, D]`.
    let projOut: Linear
    /// The rotary tables of the last grid seen.
    let rotaryCache: MochiRotaryCache

    /// Builds the model, taking every parameter from `weights` (called by ``MochiFamily``'s loading
    /// functions, which check the weights afterwards).
    init(configuration c: MochiConfiguration, weights w: WeightScope) {
        configuration = c
        rotaryCache = MochiRotaryCache()
        let d = c.innerDim
        patchEmbedding = MochiPatchEmbedding(w["patch_embed"], configuration: c)
        timeEmbedding = MochiTimestepCaptionEmbedding(w["time_embed"], configuration: c)
        positionFrequencies = w.tensor("pos_frequencies", shape: [3, c.numAttentionHeads, c.attentionHeadDim / 2])
        blocks = (0..<c.numLayers).map {
            MochiTransformerBlock(w["transformer_blocks"][$0], configuration: c, contextPreOnly: $0 == c.numLayers - 1)
        }
        normOut = AdaLayerNormContinuous(w["norm_out"], dim: d, conditioningDim: d, eps: MochiConfiguration.outputEps)
        projOut = Linear(w["proj_out"], in: d, out: c.outputTokenWidth)
    }

    /// Builds the model from stored weights (diffusers names).
    /// - Throws: ``ModelLoadError`` for an invalid configuration or mismatched weights (all listed at once).
    public init(configuration: MochiConfiguration, tensors: [String: Tensor]) throws(ModelLoadError) {
        self = try MochiFamily.load(configuration, tensors: tensors)
    }

    /// Builds the model from the weights at `url`: a safetensors file, a sharded checkpoint's index, or a
    /// diffusers `transformer/` folder (see ``WeightsLocation``).
    public init(configuration: MochiConfiguration, weightsAt url: URL) throws(ModelLoadError) {
        self = try MochiFamily.load(configuration, weightsAt: url)
    }

    /// A model with random weights following the fixtures' scheme (FORMAT.md §6), including the taper
    /// of `time_embed.timestep_embedder.linear_1.weight` for a `steps`-step run on the 0…1000 scale.
    public static func random(configuration: MochiConfiguration, seed: UInt64, steps: Int = 64) throws(ModelLoadError) -> MochiTransformer {
        try MochiFamily.random(configuration, seed: seed, steps: steps)
    }

    /// Patch embedding, conditioning, caption tokens, rotary tables and mask.
    /// - Throws: `TensorError` naming the argument for wrong shapes, a mask of the wrong length, or
    ///   NaN/infinite values, before anything large is allocated.
    public func prepare(_ input: MochiInput) throws(TensorError) -> MochiState {
        let (grid, timesteps) = try validate(input)
        let p = configuration.patchSize
        let (fh, fw) = (grid.h / p, grid.w / p)
        let (b, l) = (input.hiddenStates.shape[0], input.encoderHiddenStates.shape[1])
        try memoryBudget.check("Mochi forward of batch \(b), \(grid.f * fh * fw) video + \(l) text tokens",
                               bytes: Double(configuration.activationBytesEstimate(batch: b, visualTokens: grid.f * fh * fw, textTokens: l)))
        let tokens = try patchEmbedding(input.hiddenStates)
        let (temb, caption) = try timeEmbedding(timesteps: timesteps, text: input.encoderHiddenStates,
                                                mask: input.encoderAttentionMask)
        let rotary = try rotaryCache.tables(frequencies: positionFrequencies, frames: grid.f, height: fh, width: fw)
        let mask = MochiTextMask(input.encoderAttentionMask)
        return MochiState(tokens: tokens, text: caption, temb: temb, rotary: rotary, mask: mask, grid: grid)
    }

    /// TeaCache4Mochi's modulated input: `transformer_blocks[0].norm1(h_in, temb)[0]` =
    /// `RMSNorm(h_in)·(1 + scale_msa)` `[B, S, D]`.
    /// - Throws: for a configuration without blocks (`num_layers = 0`), which has no such tensor.
    public func modulatedInput(_ state: MochiState) throws(TensorError) -> Tensor {
        guard let first = blocks.first else {
            throw .invalidArgument(operation: "Mochi modulated input",
                                   reason: "the configuration has no transformer block (num_layers = 0)")
        }
        return try first.norm1(state.tokens, emb: state.temb).normalized
    }

    /// Runs every block on the visual and text streams, then `norm_out` on the visual tokens, in place.
    public func runBlocks(_ state: inout MochiState) throws(TensorError) {
        var h = state.tokens, c = state.text
        for block in blocks {
            try block(visual: &h, text: &c, temb: state.temb, rotary: state.rotary, mask: state.mask)
        }
        state.tokens = try normOut(h, conditioning: state.temb)
        state.text = c
    }

    /// Block `index` on the visual and text streams in place.
    func runBlock(at index: Int, _ state: inout MochiState) throws(TensorError) {
        guard blocks.indices.contains(index) else {
            throw .invalidArgument(operation: "Mochi block", reason: "block \(index) is outside 0..<\(blocks.count)")
        }
        try blocks[index](visual: &state.tokens, text: &state.text, temb: state.temb, rotary: state.rotary, mask: state.mask)
    }

    /// `norm_out` on the visual tokens: the end of the span TeaCache caches.
    func applyOutputNorm(_ state: inout MochiState) throws(TensorError) {
        state.tokens = try normOut(state.tokens, conditioning: state.temb)
    }

    /// `proj_out` and unpatchify to `[B, out_channels, F, H, W]`.
    public func outputHead(_ state: MochiState) throws(TensorError) -> Tensor {
        let p = configuration.patchSize
        return try Patches.unpatchify3D(projOut(state.tokens), grid: state.grid, patch: (1, p, p), order: .channelsLast)
    }

    /// The full forward: `output` of diffusers' `forward(..., return_dict=False)[0]`.
    public func callAsFunction(_ input: MochiInput) throws(TensorError) -> Tensor {
        var state = try prepare(input)
        try runBlocks(&state)
        return try outputHead(state)
    }

    /// Checks every argument; returns the latent grid and the per-sample timesteps.
    private func validate(_ x: MochiInput) throws(TensorError) -> (grid: (f: Int, h: Int, w: Int), timesteps: [Float]) {
        let c = configuration
        func fail(_ reason: String) -> TensorError { .invalidArgument(operation: "Mochi forward", reason: reason) }
        let h = x.hiddenStates.shape
        guard h.count == 5, h[1] == c.inChannels, h[0] > 0, h[2] > 0, h[3] > 0, h[4] > 0 else {
            throw fail("hidden_states must be [B, \(c.inChannels), F, H, W] with every extent > 0, got \(h)")
        }
        let (b, f, hh, ww) = (h[0], h[2], h[3], h[4])
        guard hh % c.patchSize == 0, ww % c.patchSize == 0 else {
            throw fail("latent height and width \(hh)×\(ww) must be divisible by patch_size \(c.patchSize)")
        }
        let e = x.encoderHiddenStates.shape
        guard e.count == 3, e[0] == b, e[1] > 0, e[2] == c.textEmbedDim else {
            throw fail("encoder_hidden_states must be [B = \(b), L > 0, text_embed_dim = \(c.textEmbedDim)], got \(e)")
        }
        let l = e[1]
        guard x.encoderAttentionMask.shape == [b, l] else {
            throw fail("encoder_attention_mask must be [B, L] = [\(b), \(l)] (one entry per caption token), "
                       + "got \(x.encoderAttentionMask.shape)")
        }
        let t = x.timestep
        guard t.rank == 1, t.count == b || t.count == 1 else {
            throw fail("timestep must be [B = \(b)] or [1], got \(t.shape)")
        }
        for (name, tensor) in [("hidden_states", x.hiddenStates), ("encoder_hidden_states", x.encoderHiddenStates),
                               ("timestep", t), ("encoder_attention_mask", x.encoderAttentionMask)]
            where !tensor.isFinite {
            throw fail("\(name) holds NaN or infinite values")
        }
        return ((f, hh, ww), t.scalars)
    }
}
