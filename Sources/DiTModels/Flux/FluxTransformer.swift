import Foundation
import Tensors

/// The tensor arguments of one FLUX forward call, named after diffusers' `FluxTransformer2DModel.forward`.
public struct FluxInput: Sendable {
    /// `hidden_states` `[B, S, in_channels]` (packed latent tokens).
    public var hiddenStates: Tensor
    /// `encoder_hidden_states` `[B, L, joint_attention_dim]`.
    public var encoderHiddenStates: Tensor
    /// `pooled_projections` `[B, pooled_projection_dim]`.
    public var pooledProjections: Tensor
    /// `timestep` `[B]` (or `[1]`, broadcast), in sigma units (the model multiplies by 1000).
    public var timestep: Tensor
    /// `img_ids` `[S, n_axes]` (a batched `[B, S, n_axes]` uses element 0, as diffusers does).
    public var imageIDs: Tensor
    /// `txt_ids` `[L, n_axes]`.
    public var textIDs: Tensor
    /// `guidance` `[B]` (or `[1]`); required exactly when the configuration has `guidance_embeds`.
    public var guidance: Tensor?

    /// The inputs of one forward call (shapes as documented on each property).
    public init(hiddenStates: Tensor, encoderHiddenStates: Tensor, pooledProjections: Tensor, timestep: Tensor,
                imageIDs: Tensor, textIDs: Tensor, guidance: Tensor? = nil) {
        self.hiddenStates = hiddenStates
        self.encoderHiddenStates = encoderHiddenStates
        self.pooledProjections = pooledProjections
        self.timestep = timestep
        self.imageIDs = imageIDs
        self.textIDs = textIDs
        self.guidance = guidance
    }
}

/// Everything FLUX's block stacks need, computed once per call by ``FluxTransformer/prepare(_:)``.
public struct FluxState: Sendable {
    /// Image tokens entering the first block (`x_embedder` output) `[B, S, D]`.
    public var image: Tensor
    /// Text tokens entering the first block (`context_embedder` output) `[B, L, D]`.
    public var text: Tensor
    /// The conditioning `temb` `[B, D]`.
    public var temb: Tensor
    /// Rotary tables over the joint (text, image) sequence, `[L + S, headDim]` each.
    public var rope: (cos: Tensor, sin: Tensor)
    /// Between single-stream blocks run one at a time (``FluxTransformer/runBlock(_:_:)``): the joint
    /// (text, image) sequence they transform; nil otherwise.
    var joint: Tensor? = nil
}

/// diffusers' `FluxTransformer2DModel` (FLUX.1, TangoFlux), float32 on the CPU.
///
/// The forward is split in the order TeaCache needs it: ``prepare(_:)`` (embeddings, rotary tables),
/// ``modulatedInput(_:)``, ``runBlocks(_:)`` (both block stacks) and ``outputHead(_:)``;
/// ``callAsFunction(_:)`` runs all four.
public struct FluxTransformer: Sendable {
    /// The validated configuration.
    public let configuration: FluxConfiguration
    /// The memory a forward may plan to use: ``prepare(_:)`` estimates the activations of the input shapes
    /// (``FluxConfiguration/activationBytesEstimate(batch:imageTokens:textTokens:)``) and refuses inputs
    /// beyond it with `TensorError.memoryBudgetExceeded`.
    public var memoryBudget = MemoryBudget.machineDefault
    /// `time_text_embed`.
    let timeTextEmbed: FluxTimeTextEmbedding
    /// `context_embedder` and `x_embedder`.
    let contextEmbedder: Linear
    /// `x_embedder`: latent tokens → width.
    let xEmbedder: Linear
    /// `transformer_blocks` and `single_transformer_blocks`.
    let doubleBlocks: [FluxDoubleStreamBlock]
    /// `single_transformer_blocks`.
    let singleBlocks: [FluxSingleStreamBlock]
    /// `norm_out` and `proj_out`.
    let normOut: AdaLayerNormContinuous
    /// `proj_out`.
    let projOut: Linear

    /// Builds the model, taking every parameter from `weights` by its diffusers name (called by
    /// ``FluxFamily``'s loading functions, which check the weights afterwards).
    init(configuration c: FluxConfiguration, weights w: WeightScope) {
        configuration = c
        let d = c.innerDim
        timeTextEmbed = FluxTimeTextEmbedding(w["time_text_embed"], configuration: c)
        contextEmbedder = Linear(w["context_embedder"], in: c.jointAttentionDim, out: d)
        xEmbedder = Linear(w["x_embedder"], in: c.inChannels, out: d)
        doubleBlocks = (0..<c.numLayers).map { FluxDoubleStreamBlock(w["transformer_blocks"][$0], configuration: c) }
        singleBlocks = (0..<c.numSingleLayers).map {
            FluxSingleStreamBlock(w["single_transformer_blocks"][$0], configuration: c)
        }
        normOut = AdaLayerNormContinuous(w["norm_out"], dim: d, conditioningDim: d, eps: 1e-6)
        projOut = Linear(w["proj_out"], in: d, out: c.outputWidth)
    }

    /// Builds the model from a diffusers state dict (every tensor by parameter name).
    ///
    /// - Throws: `unsupportedConfig` for an invalid configuration; one `weightMismatch` listing every
    ///   missing, unexpected and mis-shaped tensor.
    public init(configuration: FluxConfiguration, tensors: [String: Tensor]) throws(ModelLoadError) {
        self = try FluxFamily.load(configuration, tensors: tensors)
    }

    /// Builds the model from the weights at `url`: a safetensors file, a sharded checkpoint's index, or a
    /// diffusers `transformer/` folder (see ``WeightsLocation``).
    public init(configuration: FluxConfiguration, weightsAt url: URL) throws(ModelLoadError) {
        self = try FluxFamily.load(configuration, weightsAt: url)
    }

    /// A randomly initialised model (fixtures FORMAT.md §6 scheme) for demos and benchmarks.
    ///
    /// The timestep and guidance MLPs' first layers get the §6 taper with `u = 1000 / steps`
    /// (FLUX multiplies sigma by 1000, and a run of `steps` steps moves sigma by `1/steps`).
    public static func random(configuration: FluxConfiguration, seed: UInt64, steps: Int = 28) throws(ModelLoadError) -> FluxTransformer {
        try FluxFamily.random(configuration, seed: seed, steps: steps)
    }

    /// Embeds the inputs (after checking their shapes against the configuration).
    public func prepare(_ inputs: FluxInput) throws(TensorError) -> FluxState {
        try validate(inputs)
        let c = configuration
        let guidance = c.guidanceEmbeds ? inputs.guidance : nil
        let temb = try timeTextEmbed(timestep: inputs.timestep, guidance: guidance, pooled: inputs.pooledProjections)
        return FluxState(
            image: try xEmbedder(inputs.hiddenStates),
            text: try contextEmbedder(inputs.encoderHiddenStates),
            temb: temb,
            rope: try FluxPositionEmbedding.tables(textIDs: inputs.textIDs, imageIDs: inputs.imageIDs,
                                                   axesDims: c.axesDimsRope))
    }

    /// TeaCache's modulated input: `transformer_blocks[0].norm1(image, temb)` — `LN(h)·(1 + scale_msa) + shift_msa`,
    /// `[B, S, D]`. Requires at least one double-stream block.
    public func modulatedInput(_ p: FluxState) throws(TensorError) -> Tensor {
        guard let first = doubleBlocks.first else {
            throw .invalidArgument(operation: "FLUX modulated input",
                                   reason: "the configuration has no double-stream block (num_layers = 0)")
        }
        return try first.norm1(p.image, emb: p.temb).normalized
    }

    /// Runs every double-stream block, then every single-stream block, updating `p.image` and `p.text`.
    ///
    /// The single blocks see the joint sequence (text first); it is split back into the two streams at
    /// the end, which gives the same values as diffusers' per-block concatenate/split.
    public func runBlocks(_ p: inout FluxState) throws(TensorError) {
        for block in doubleBlocks {
            try block(image: &p.image, text: &p.text, temb: p.temb, rope: p.rope)
        }
        guard !singleBlocks.isEmpty else { return }
        let l = p.text.shape[1]
        var joint = try Tensor.concatenate([p.text, p.image], axis: 1)
        for block in singleBlocks {
            try block(&joint, temb: p.temb, rope: p.rope)
        }
        let parts = try joint.split(sizes: [l, joint.shape[1] - l], axis: 1)
        p.text = parts[0]
        p.image = parts[1]
    }

    /// `proj_out(norm_out(image, temb))`: `[B, S, patch² · out_channels]`.
    public func outputHead(_ p: FluxState) throws(TensorError) -> Tensor {
        try projOut(normOut(p.image, conditioning: p.temb))
    }

    /// The full forward (`model(**inputs, return_dict=False)[0]`).
    public func callAsFunction(_ inputs: FluxInput) throws(TensorError) -> Tensor {
        var p = try prepare(inputs)
        try runBlocks(&p)
        return try outputHead(p)
    }

    private func validate(_ x: FluxInput) throws(TensorError) {
        let c = configuration
        func fail(_ reason: String) -> TensorError { .invalidArgument(operation: "FLUX forward", reason: reason) }
        let h = x.hiddenStates.shape
        guard h.count == 3, h[2] == c.inChannels, h[0] > 0, h[1] > 0 else {
            throw fail("hidden_states must be [B, S, \(c.inChannels)] with B, S > 0, got \(h)")
        }
        let (b, s) = (h[0], h[1])
        let e = x.encoderHiddenStates.shape
        guard e.count == 3, e[0] == b, e[2] == c.jointAttentionDim else {
            throw fail("encoder_hidden_states must be [\(b), L, \(c.jointAttentionDim)], got \(e)")
        }
        let l = e[1]
        try memoryBudget.check("FLUX forward of batch \(b), \(s) image + \(l) text tokens",
                               bytes: Double(c.activationBytesEstimate(batch: b, imageTokens: s, textTokens: l)))
        guard x.pooledProjections.shape == [b, c.pooledProjectionDim] else {
            throw fail("pooled_projections must be [\(b), \(c.pooledProjectionDim)], got \(x.pooledProjections.shape)")
        }
        func checkPerSample(_ t: Tensor, _ name: String) throws(TensorError) {
            guard t.rank <= 1, t.count == 1 || t.count == b else {
                throw fail("\(name) must be [\(b)] or [1], got \(t.shape)")
            }
        }
        try checkPerSample(x.timestep, "timestep")
        if c.guidanceEmbeds {
            guard let g = x.guidance else { throw fail("this model embeds guidance (guidance_embeds = true): pass guidance") }
            try checkPerSample(g, "guidance")
        } else if x.guidance != nil {
            throw fail("this model has no guidance embedder (guidance_embeds = false): do not pass guidance")
        }
        let n = c.axesDimsRope.count
        for (ids, name, tokens) in [(x.imageIDs, "img_ids", s), (x.textIDs, "txt_ids", l)] {
            let sh = ids.shape
            guard (sh.count == 2 && sh == [tokens, n]) || (sh.count == 3 && Array(sh.dropFirst()) == [tokens, n]) else {
                throw fail("\(name) must be [\(tokens), \(n)], got \(sh)")
            }
        }
        let named: [(String, Tensor?)] = [("hidden_states", x.hiddenStates), ("encoder_hidden_states", x.encoderHiddenStates),
                                          ("pooled_projections", x.pooledProjections), ("timestep", x.timestep),
                                          ("guidance", x.guidance), ("img_ids", x.imageIDs), ("txt_ids", x.textIDs)]
        for case let (name, t?) in named where !t.isFinite {
            throw fail("\(name) contains NaN or infinity")
        }
    }
}
