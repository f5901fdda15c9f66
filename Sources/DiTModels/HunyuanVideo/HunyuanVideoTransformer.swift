import Foundation
import Tensors

/// The tensor arguments of one `HunyuanVideoTransformer3DModel.forward` call, named after diffusers'.
public struct HunyuanVideoInput: LatentTimestepInput, Sendable {
    /// `hidden_states` `[B, in_channels, F, H, W]`.
    public var hiddenStates: Tensor
    /// `timestep` `[B]` (or `[1]`, broadcast), on the 0…1000 scale (sigma·1000).
    public var timestep: Tensor
    /// `encoder_hidden_states` `[B, L, text_embed_dim]`.
    public var encoderHiddenStates: Tensor
    /// `encoder_attention_mask` `[B, L]`: 1 for a valid text token, 0 for padding (at least one 1 per sample).
    public var encoderAttentionMask: Tensor
    /// `pooled_projections` `[B, pooled_projection_dim]`.
    public var pooledProjections: Tensor
    /// `guidance` `[B]` (or `[1]`): the pipeline's `guidance_scale · 1000`. Required when the model embeds
    /// guidance; ignored otherwise, as diffusers ignores it (its pipeline always passes one).
    public var guidance: Tensor?

    /// The inputs of one forward call (shapes as documented on each property).
    public init(hiddenStates: Tensor, timestep: Tensor, encoderHiddenStates: Tensor, encoderAttentionMask: Tensor,
                pooledProjections: Tensor, guidance: Tensor? = nil) {
        self.hiddenStates = hiddenStates
        self.timestep = timestep
        self.encoderHiddenStates = encoderHiddenStates
        self.encoderAttentionMask = encoderAttentionMask
        self.pooledProjections = pooledProjections
        self.guidance = guidance
    }
}

/// Everything HunyuanVideo's block stacks need, computed once per call by
/// ``HunyuanVideoTransformer/prepare(_:)``, and the two token streams as they go through the blocks.
public struct HunyuanVideoState: Sendable {
    /// Image tokens `[B, S, D]`: `x_embedder` output (h_in) after `prepare`, the stack's output after `runBlocks`.
    public var image: Tensor
    /// Text tokens `[B, L, D]` (the token refiner's output, then the blocks').
    public var text: Tensor
    /// What every block reads (conditioning, rotary tables, key mask).
    var context: HunyuanVideoBlockContext
    /// The latent grid `(F, H, W)` before patching.
    public var grid: (f: Int, h: Int, w: Int)
}

/// diffusers 0.42.1 `HunyuanVideoTransformer3DModel` (text-to-video, `latent_concat` and `token_replace`
/// image-to-video layouts), float32 on the CPU.
///
/// The forward is split in the order TeaCache needs it: ``prepare(_:)`` (rotary tables, conditioning,
/// patch embedding, token refiner, joint key mask), ``modulatedInput(_:)``, ``runBlocks(_:)`` (dual- then
/// single-stream blocks) and ``outputHead(_:)`` (`norm_out`, `proj_out`, unpatchify);
/// ``callAsFunction(_:)`` runs all four.
///
/// The text mask is honoured as diffusers does: the token refiner masks exactly the zero entries (and
/// pools over the valid tokens); the blocks' joint key mask keeps the first `S + Σ mask` keys — image
/// tokens, then as many text tokens as the mask counts, i.e. diffusers assumes the padding trails.
public struct HunyuanVideoTransformer: Sendable {
    /// The validated configuration.
    public let configuration: HunyuanVideoConfiguration
    /// The memory a forward may plan to use: ``prepare(_:)`` estimates the activations of the input shapes
    /// (``HunyuanVideoConfiguration/activationBytesEstimate(batch:imageTokens:textTokens:)``) and refuses
    /// inputs beyond it with `TensorError.memoryBudgetExceeded`, before computing anything.
    public var memoryBudget = MemoryBudget.machineDefault
    /// `x_embedder.proj`.
    let xEmbedder: PatchEmbedding3D
    /// `context_embedder`.
    let contextEmbedder: HunyuanVideoTokenRefiner
    /// `time_text_embed`.
    let timeTextEmbed: HunyuanVideoConditionEmbedding
    /// `rope`.
    let rotary: HunyuanVideoRotaryEmbedding
    /// `transformer_blocks`.
    let doubleBlocks: [HunyuanVideoDualStreamBlock]
    /// `single_transformer_blocks`.
    let singleBlocks: [HunyuanVideoSingleStreamBlock]
    /// `norm_out`.
    let normOut: AdaLayerNormContinuous
    /// `proj_out`.
    let projOut: Linear

    /// Builds the model, taking every parameter from `weights` by its diffusers name (called by
    /// ``HunyuanVideoFamily``'s loading functions, which check the weights afterwards).
    init(configuration c: HunyuanVideoConfiguration, weights w: WeightScope) {
        configuration = c
        let d = c.innerDim
        xEmbedder = PatchEmbedding3D(w["x_embedder"]["proj"], inChannels: c.inChannels, outChannels: d, patch: c.patch)
        contextEmbedder = HunyuanVideoTokenRefiner(w["context_embedder"], configuration: c)
        timeTextEmbed = HunyuanVideoConditionEmbedding(w["time_text_embed"], configuration: c)
        rotary = HunyuanVideoRotaryEmbedding(configuration: c)
        doubleBlocks = (0..<c.numLayers).map { HunyuanVideoDualStreamBlock(w["transformer_blocks"][$0], configuration: c) }
        singleBlocks = (0..<c.numSingleLayers).map {
            HunyuanVideoSingleStreamBlock(w["single_transformer_blocks"][$0], configuration: c)
        }
        normOut = AdaLayerNormContinuous(w["norm_out"], dim: d, conditioningDim: d, eps: 1e-6)
        projOut = Linear(w["proj_out"], in: d, out: c.outputWidth)
    }

    /// Builds the model from a diffusers state dict (every tensor by parameter name).
    ///
    /// - Throws: `unsupportedConfig` for an invalid configuration; one `weightMismatch` listing every
    ///   missing, unexpected and mis-shaped tensor.
    public init(configuration: HunyuanVideoConfiguration, tensors: [String: Tensor]) throws(ModelLoadError) {
        self = try HunyuanVideoFamily.load(configuration, tensors: tensors)
    }

    /// Builds the model from the weights at `url`: a safetensors file, a sharded checkpoint's index, or a
    /// diffusers `transformer/` folder (see ``WeightsLocation``).
    public init(configuration: HunyuanVideoConfiguration, weightsAt url: URL) throws(ModelLoadError) {
        self = try HunyuanVideoFamily.load(configuration, weightsAt: url)
    }

    /// A randomly initialised model (fixtures FORMAT.md §6 scheme) for demos and benchmarks: every
    /// timestep MLP's first layer (time, guidance, token refiner) gets the §6 taper with `u = 1000 / steps`.
    public static func random(configuration: HunyuanVideoConfiguration, seed: UInt64, steps: Int = 50) throws(ModelLoadError) -> HunyuanVideoTransformer {
        try HunyuanVideoFamily.random(configuration, seed: seed, steps: steps)
    }

    // MARK: - Forward parts

    /// Rotary tables, conditioning, patch embedding, token refiner and the joint key mask, after checking
    /// every input against the configuration.
    /// - Throws: `TensorError` naming the argument at fault.
    public func prepare(_ input: HunyuanVideoInput) throws(TensorError) -> HunyuanVideoState {
        let v = try validate(input)
        let c = configuration
        let (b, l) = (v.batch, v.textTokens)
        let (f, h, w) = (v.grid.f / c.patchSizeT, v.grid.h / c.patchSize, v.grid.w / c.patchSize)
        let s = f * h * w
        try memoryBudget.check("HunyuanVideo forward of batch \(b), \(s) video + \(l) text tokens",
                               bytes: Double(c.activationBytesEstimate(batch: b, imageTokens: s, textTokens: l)))
        let cond = try timeTextEmbed(timesteps: v.timesteps, guidance: v.guidance, pooled: input.pooledProjections)
        let image = try xEmbedder(input.hiddenStates)
        let text = try contextEmbedder(input.encoderHiddenStates, timesteps: v.timesteps, mask: input.encoderAttentionMask)
        let context = HunyuanVideoBlockContext(
            temb: cond.temb, tokenReplaceEmb: cond.tokenReplace, firstFrameTokens: h * w,
            rope: try rotary.jointTables(frames: f, height: h, width: w, textTokens: l),
            keyMask: try Self.jointKeyMask(validText: v.validText, imageTokens: s, textTokens: l, batch: b))
        return HunyuanVideoState(image: image, text: text, context: context, grid: v.grid)
    }

    /// TeaCache's modulated input: `transformer_blocks[0].norm1(h_in, emb=temb)[0]` —
    /// `LN(h)·(1 + scale_msa) + shift_msa`, `[B, S, D]` (token-replace models modulate the first frame's
    /// tokens with their own parameters, as that block's norm does). Requires at least one dual-stream block.
    public func modulatedInput(_ state: HunyuanVideoState) throws(TensorError) -> Tensor {
        guard let first = doubleBlocks.first else {
            throw .invalidArgument(operation: "HunyuanVideo modulated input",
                                   reason: "the configuration has no dual-stream block (num_layers = 0)")
        }
        return try first.modulatedImage(state.image, state.context)
    }

    /// Runs every dual-stream block, then every single-stream block on the joint `[image; text]`
    /// sequence, updating `state.image` and `state.text`.
    ///
    /// The joint sequence is split back into the two streams once at the end, which gives the same values
    /// as diffusers' per-block concatenate/split.
    public func runBlocks(_ state: inout HunyuanVideoState) throws(TensorError) {
        for block in doubleBlocks {
            try block(image: &state.image, text: &state.text, context: state.context)
        }
        guard !singleBlocks.isEmpty else { return }
        let s = state.image.shape[1]
        var joint = try Tensor.concatenate([state.image, state.text], axis: 1)
        for block in singleBlocks { try block(&joint, context: state.context) }
        let parts = try joint.split(sizes: [s, joint.shape[1] - s], axis: 1)
        state.image = parts[0]
        state.text = parts[1]
    }

    /// The number of blocks, dual-stream then single-stream, as one index range.
    var blockCount: Int { doubleBlocks.count + singleBlocks.count }

    /// Runs block `index` of ``blockCount`` (dual-stream blocks first) on the state in place. A
    /// single-stream block joins the two streams, runs, and splits them again (as diffusers does per
    /// block), so `state.image` holds the stream after every block.
    func runBlock(at index: Int, _ state: inout HunyuanVideoState) throws(TensorError) {
        guard index >= 0, index < blockCount else {
            throw .invalidArgument(operation: "HunyuanVideo block", reason: "block index \(index) is not in 0..<\(blockCount)")
        }
        if index < doubleBlocks.count {
            try doubleBlocks[index](image: &state.image, text: &state.text, context: state.context)
            return
        }
        let s = state.image.shape[1]
        var joint = try Tensor.concatenate([state.image, state.text], axis: 1)
        try singleBlocks[index - doubleBlocks.count](&joint, context: state.context)
        let parts = try joint.split(sizes: [s, joint.shape[1] - s], axis: 1)
        state.image = parts[0]
        state.text = parts[1]
    }

    /// `proj_out(norm_out(image, temb))` unpatchified to `[B, out_channels, F, H, W]` (each token holds
    /// `(c, pt, ph, pw)`, channel outermost, as diffusers' reshape reads it).
    public func outputHead(_ state: HunyuanVideoState) throws(TensorError) -> Tensor {
        let tokens = try projOut(normOut(state.image, conditioning: state.context.temb))
        return try Patches.unpatchify3D(tokens, grid: state.grid, patch: configuration.patch, order: .channelsFirst)
    }

    /// The full forward (`model(**inputs, return_dict=False)[0]`).
    public func callAsFunction(_ input: HunyuanVideoInput) throws(TensorError) -> Tensor {
        var state = try prepare(input)
        try runBlocks(&state)
        return try outputHead(state)
    }

    // MARK: - Masks and validation

    /// The blocks' key mask `[B, S + L]`: key j is attended when `j < S + validText[b]` (diffusers builds
    /// it from the mask's sum, so trailing padding is assumed); nil when every key is attended.
    static func jointKeyMask(validText: [Int], imageTokens s: Int, textTokens l: Int, batch b: Int) throws(TensorError) -> Tensor? {
        guard validText.contains(where: { $0 < l }) else { return nil }
        var m = [Float](repeating: 0, count: b * (s + l))
        for (bi, valid) in validText.enumerated() {
            for j in 0..<(s + valid) { m[bi * (s + l) + j] = 1 }
        }
        return try Tensor(shape: [b, s + l], scalars: m)
    }

    /// The checked sizes and per-sample values of one input.
    struct CheckedInput {
        var batch: Int
        var textTokens: Int
        var grid: (f: Int, h: Int, w: Int)
        var timesteps: [Float]
        var guidance: [Float]?
        var validText: [Int]
    }

    /// Checks every argument against the configuration, before anything large is allocated.
    func validate(_ x: HunyuanVideoInput) throws(TensorError) -> CheckedInput {
        let c = configuration
        func fail(_ reason: String) -> TensorError { .invalidArgument(operation: "HunyuanVideo forward", reason: reason) }
        let hs = x.hiddenStates.shape
        guard hs.count == 5, hs[1] == c.inChannels, hs[0] > 0 else {
            throw fail("hidden_states must be [B, in_channels = \(c.inChannels), F, H, W] with B > 0, got \(hs)")
        }
        let (b, f, h, w) = (hs[0], hs[2], hs[3], hs[4])
        guard f > 0, h > 0, w > 0, f % c.patchSizeT == 0, h % c.patchSize == 0, w % c.patchSize == 0 else {
            throw fail("the latent grid \(f)×\(h)×\(w) must be non-empty and divisible by (patch_size_t, patch_size, patch_size) "
                       + "= (\(c.patchSizeT), \(c.patchSize), \(c.patchSize))")
        }
        let e = x.encoderHiddenStates.shape
        guard e.count == 3, e[0] == b, e[2] == c.textEmbedDim, e[1] > 0 else {
            throw fail("encoder_hidden_states must be [\(b), L, text_embed_dim = \(c.textEmbedDim)] with L > 0, got \(e)")
        }
        let l = e[1]
        guard x.encoderAttentionMask.shape == [b, l] else {
            throw fail("encoder_attention_mask must be [\(b), \(l)] (one entry per text token), got \(x.encoderAttentionMask.shape)")
        }
        guard x.pooledProjections.shape == [b, c.pooledProjectionDim] else {
            throw fail("pooled_projections must be [\(b), \(c.pooledProjectionDim)], got \(x.pooledProjections.shape)")
        }
        func perSample(_ t: Tensor, _ name: String) throws(TensorError) -> [Float] {
            guard t.rank <= 1, t.count == 1 || t.count == b else {
                throw fail("\(name) must be [\(b)] or [1], got \(t.shape)")
            }
            let v = t.scalars
            return v.count == b ? v : Array(repeating: v[0], count: b)
        }
        let timesteps = try perSample(x.timestep, "timestep")
        var guidance: [Float]? = nil
        if c.guidanceEmbeds {
            guard let g = x.guidance else {
                throw fail("this model embeds guidance (guidance_embeds = true): pass guidance (guidance_scale · 1000)")
            }
            guidance = try perSample(g, "guidance")
        }
        let named: [(String, Tensor?)] = [
            ("hidden_states", x.hiddenStates), ("encoder_hidden_states", x.encoderHiddenStates),
            ("pooled_projections", x.pooledProjections), ("timestep", x.timestep),
            ("guidance", c.guidanceEmbeds ? x.guidance : nil)]
        for case let (name, t?) in named where !t.isFinite {
            throw fail("\(name) contains NaN or infinity")
        }
        let mask = x.encoderAttentionMask.scalars
        guard mask.allSatisfy({ $0 == 0 || $0 == 1 }) else {
            throw fail("encoder_attention_mask must hold only 0 (padding) and 1 (valid token)")
        }
        var valid = [Int]()
        for bi in 0..<b {
            let n = mask[(bi * l)..<((bi + 1) * l)].reduce(0) { $0 + Int($1) }
            guard n > 0 else {
                throw fail("encoder_attention_mask of sample \(bi) has no valid token (diffusers would divide by zero when pooling)")
            }
            valid.append(n)
        }
        return CheckedInput(batch: b, textTokens: l, grid: (f, h, w), timesteps: timesteps, guidance: guidance, validText: valid)
    }
}
