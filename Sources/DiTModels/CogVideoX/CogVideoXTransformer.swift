import Foundation
import Tensors

/// The arguments of one `CogVideoXTransformer3DModel.forward` call, by their diffusers names:
/// `hidden_states` — the latent video `[B, F, C, H, W]`, frames before channels —,
/// `encoder_hidden_states` `[B, L, text_embed_dim]`, `timestep` `[B]` or `[1]` (0…1000 scale), and `ofs`
/// `[B]` or `[1]`, required exactly when the model has an ofs embedding (the I2V pipelines pass 2.0).
///
/// The rotary table is not an argument: the model builds it from the latent size as the CogVideoX
/// pipelines do.
public struct CogVideoXInput: LatentTimestepInput, Sendable {
    /// `hidden_states`, `encoder_hidden_states`, `timestep`.
    public var hiddenStates: Tensor, encoderHiddenStates: Tensor, timestep: Tensor
    /// `ofs` (ofs models only).
    public var ofs: Tensor?

    /// Bundles the arguments.
    public init(hiddenStates: Tensor, encoderHiddenStates: Tensor, timestep: Tensor, ofs: Tensor? = nil) {
        (self.hiddenStates, self.encoderHiddenStates, self.timestep, self.ofs) = (hiddenStates, encoderHiddenStates, timestep, ofs)
    }
}

/// Everything computed before the block stack for one call, and the two token streams as they go
/// through it.
public struct CogVideoXState: Sendable {
    /// The video tokens `[B, S, D]`: after the patch embedding, then after the last block.
    public var video: Tensor
    /// The text tokens `[B, L, D]`: after the patch embedding, then after the last block.
    public var text: Tensor
    /// The time embedding `emb` `[B, time_embed_dim]` (plus the ofs embedding when the model has one).
    public var emb: Tensor
    /// The rotary tables `[S, head_dim]` of the video tokens, or nil for the sincos (2B) layout.
    public var rope: (cos: Tensor, sin: Tensor)?
    /// The latent shape `[B, F, C, H, W]` of the call.
    public var latentShape: [Int]
}

/// diffusers 0.42.1 `CogVideoXTransformer3DModel` (CogVideoX 1.0 2B/5B/5B-I2V and 1.5 T2V/I2V) on the
/// CPU in float32.
///
/// The forward is split for TeaCache: ``prepare(_:)`` (time and ofs embeddings, patch embedding with
/// its positional table, the rotary tables), ``runBlocks(_:)`` (the blocks, on the joint
/// `[text; video]` sequence), ``outputHead(_:)`` (`norm_final`, `norm_out` modulated by `emb`,
/// `proj_out`, unpatchify to `[B, F, C, H, W]`).
///
/// Precision: diffusers computes all of it in the model dtype (float32 here) except the sincos table
/// (float64, rounded) and the rotary table (float32, by the pipeline), which this port computes the
/// same way.
///
/// Differences from diffusers: `timestep_cond` is not supported (the model has no `cond_proj`, so
/// diffusers fails with it too); latent sizes not divisible by the patch sizes are rejected (diffusers
/// fails for the 1.5 layout and crops silently for 1.0); an `ofs` given to a model without an ofs
/// embedding is rejected (diffusers ignores it).
public struct CogVideoXTransformer: Sendable {
    /// The validated configuration.
    public let configuration: CogVideoXConfiguration
    /// The memory a forward may plan to use: ``prepare(_:)`` estimates the activations of the input shapes
    /// (``CogVideoXConfiguration/activationBytesEstimate(batch:videoTokens:textTokens:)``) and refuses
    /// inputs beyond it with `TensorError.memoryBudgetExceeded`.
    public var memoryBudget = MemoryBudget.machineDefault
    /// `patch_embed`.
    let patchEmbed: CogVideoXPatchEmbedding
    /// `time_proj` + `time_embedding`.
    let timeEmbedding: CogVideoXTimestepEmbedding
    /// `ofs_proj` + `ofs_embedding` (CogVideoX1.5 I2V), or nil.
    let ofsEmbedding: CogVideoXTimestepEmbedding?
    /// `transformer_blocks`.
    let blocks: [CogVideoXBlock]
    /// `norm_final` weight and bias (nil without elementwise affine).
    let normFinal: (weight: Tensor?, bias: Tensor?)
    /// `norm_out.linear` `[2D, time_embed_dim]`: (shift, scale) — shift first (`chunk_dim=1`).
    let normOutLinear: Linear
    /// `norm_out.norm` weight and bias (nil without elementwise affine).
    let normOutNorm: (weight: Tensor?, bias: Tensor?)
    /// `proj_out`.
    let projOut: Linear

    /// Builds the model, taking every parameter from `weights` (called by ``CogVideoXFamily``'s loading
    /// functions, which check the weights afterwards).
    init(configuration c: CogVideoXConfiguration, weights w: WeightScope) {
        configuration = c
        let d = c.innerDim
        patchEmbed = CogVideoXPatchEmbedding(w["patch_embed"], configuration: c)
        timeEmbedding = CogVideoXTimestepEmbedding(w["time_embedding"], channels: d, out: c.timeEmbedDim, configuration: c)
        ofsEmbedding = c.ofsEmbedDim.map { CogVideoXTimestepEmbedding(w["ofs_embedding"], channels: $0, out: $0, configuration: c) }
        blocks = (0..<c.numLayers).map { CogVideoXBlock(w["transformer_blocks"][$0], configuration: c) }
        func norm(_ s: WeightScope) -> (Tensor?, Tensor?) {
            c.normElementwiseAffine ? (s.tensor("weight", shape: [d]), s.tensor("bias", shape: [d])) : (nil, nil)
        }
        normFinal = norm(w["norm_final"])
        normOutLinear = Linear(w["norm_out"]["linear"], in: c.timeEmbedDim, out: 2 * d)
        normOutNorm = norm(w["norm_out"]["norm"])
        projOut = Linear(w["proj_out"], in: d, out: c.outputTokenWidth)
    }

    /// Builds the model from a diffusers state dict (every tensor by parameter name).
    /// - Throws: ``ModelLoadError`` for an invalid configuration or mismatched weights (all listed at once).
    public init(configuration: CogVideoXConfiguration, tensors: [String: Tensor]) throws(ModelLoadError) {
        self = try CogVideoXFamily.load(configuration, tensors: tensors)
    }

    /// Builds the model from the weights at `url`: a safetensors file, a sharded checkpoint's index, or a
    /// diffusers `transformer/` folder (see ``WeightsLocation``).
    public init(configuration: CogVideoXConfiguration, weightsAt url: URL) throws(ModelLoadError) {
        self = try CogVideoXFamily.load(configuration, weightsAt: url)
    }

    // MARK: - Forward parts

    /// Time (and ofs) embedding, patch embedding and rotary tables: everything before the first block.
    /// - Throws: `TensorError` naming the argument that is wrong and what it must be.
    public func prepare(_ input: CogVideoXInput) throws(TensorError) -> CogVideoXState {
        let c = configuration
        let x = input.hiddenStates, text = input.encoderHiddenStates
        try validate(input)
        let b = x.shape[0]
        let timesteps = try Self.perSample(input.timestep, batch: b, name: "timestep")
        var emb = try timeEmbedding(timesteps)
        if let ofsEmbedding, let ofs = input.ofs {
            emb = try emb + ofsEmbedding(Self.perSample(ofs, batch: b, name: "ofs"))
        }
        let (textTokens, videoTokens) = try patchEmbed(text: text, video: x)
        var rope: (cos: Tensor, sin: Tensor)? = nil
        if c.useRotaryPositionalEmbeddings {
            rope = try CogVideoXRotaryEmbedding.tables(configuration: c, frames: x.shape[1], height: x.shape[3],
                                                       width: x.shape[4])
        }
        return CogVideoXState(video: videoTokens, text: textTokens, emb: emb, rope: rope, latentShape: x.shape)
    }

    /// Runs every block on the joint `[text; video]` sequence (joined once) and splits it back into the
    /// two streams; the same numbers as ``runBlock(_:_:)`` for every index in order.
    public func runBlocks(_ state: inout CogVideoXState) throws(TensorError) {
        try runJoint(blocks.indices, &state)
    }

    /// Runs block `index` (`0 ..< configuration.numLayers`) on the state's two streams.
    /// - Throws: `TensorError` for an index outside the stack.
    public func runBlock(_ index: Int, _ state: inout CogVideoXState) throws(TensorError) {
        guard blocks.indices.contains(index) else {
            throw .invalidArgument(operation: "CogVideoX block", reason: "block \(index) is outside 0..<\(blocks.count)")
        }
        try runJoint(index..<(index + 1), &state)
    }

    /// Joins `[text; video]`, runs the blocks `range`, splits the result back into the streams.
    private func runJoint(_ range: Range<Int>, _ state: inout CogVideoXState) throws(TensorError) {
        guard !range.isEmpty else { return }
        let l = state.text.shape[1]
        var h = try Tensor.concatenate([state.text, state.video], axis: 1)
        let activated = silu(state.emb)
        for i in range { try blocks[i](&h, textLength: l, activatedEmb: activated, rope: state.rope) }
        let parts = try h.split(sizes: [l, h.shape[1] - l], axis: 1)
        state.text = parts[0]
        state.video = parts[1]
    }

    /// `norm_final`, `norm_out` (LayerNorm modulated by `emb`), `proj_out`, and unpatchify to
    /// `[B, F, out_channels, H, W]`.
    public func outputHead(_ state: CogVideoXState) throws(TensorError) -> Tensor {
        let c = configuration
        let v = try layerNorm(state.video, weight: normFinal.weight, bias: normFinal.bias, eps: c.normEps)
        let m = try normOutLinear.fewRows(silu(state.emb))
        let chunks = JointSequence.Chunks(shift: 0, scale: 1)
        let n = try JointSequence.layerNormModulated(v, leadingRows: 0, eps: c.normEps, weight: normOutNorm.weight,
                                                     bias: normOutNorm.bias, modulation: m, leading: chunks, trailing: chunks)
        let s = state.latentShape
        let out = try Patches.unpatchify3D(projOut(n), grid: (s[1], s[3], s[4]),
                                           patch: (c.temporalPatch, c.patchSize, c.patchSize), order: .channelsFirst)
        return try out.permuted([0, 2, 1, 3, 4])
    }

    /// The full forward (`DiffusionTransformer/forward(_:)`): `output` of diffusers'
    /// `forward(..., return_dict=False)[0]`. Errors are `TensorError`s.
    public func callAsFunction(_ input: CogVideoXInput) throws -> Tensor { try forward(input) }

    // MARK: - Input checks

    private func validate(_ input: CogVideoXInput) throws(TensorError) {
        let c = configuration
        let x = input.hiddenStates, text = input.encoderHiddenStates
        func fail(_ reason: String) -> TensorError { .invalidArgument(operation: "CogVideoX forward", reason: reason) }
        guard x.rank == 5, x.shape[2] == c.inChannels, x.shape[0] > 0, x.shape[1] > 0, x.shape[3] > 0, x.shape[4] > 0 else {
            throw .shapeMismatch(operation: "CogVideoX forward", shapes: [x.shape],
                                 reason: "hidden_states must be [B, F, in_channels = \(c.inChannels), H, W] (frames before channels)")
        }
        let (b, f, h, w) = (x.shape[0], x.shape[1], x.shape[3], x.shape[4])
        guard f % c.temporalPatch == 0, h % c.patchSize == 0, w % c.patchSize == 0 else {
            throw fail("latent \(f)×\(h)×\(w) (frames × height × width) is not divisible by the patch "
                       + "\(c.temporalPatch)×\(c.patchSize)×\(c.patchSize) (patch_size_t × patch_size²)")
        }
        guard text.rank == 3, text.shape[0] == b, text.shape[2] == c.textEmbedDim else {
            throw .shapeMismatch(operation: "CogVideoX forward", shapes: [x.shape, text.shape],
                                 reason: "encoder_hidden_states must be [B = \(b), L, text_embed_dim = \(c.textEmbedDim)]")
        }
        if c.usesPositionalTable, text.shape[1] != c.maxTextSeqLength {
            throw fail("this model adds a joint positional table of max_text_seq_length = \(c.maxTextSeqLength) text rows: "
                       + "pass exactly that many text tokens (got \(text.shape[1]))")
        }
        let tokens = (f / c.temporalPatch) * (h / c.patchSize) * (w / c.patchSize)
        try memoryBudget.check("CogVideoX forward of batch \(b), \(tokens) video + \(text.shape[1]) text tokens",
                               bytes: c.activationBytes(batch: b, videoTokens: tokens, textTokens: text.shape[1]))
        if c.useLearnedPositionalEmbeddings, h != c.sampleHeight || w != c.sampleWidth {
            throw fail("learned positional embeddings only cover the configured latent size "
                       + "\(c.sampleHeight)×\(c.sampleWidth) (sample_height × sample_width), got \(h)×\(w)")
        }
        switch (ofsEmbedding != nil, input.ofs != nil) {
        case (true, false): throw fail("this model embeds ofs (ofs_embed_dim = \(c.ofsEmbedDim ?? 0)): pass ofs (the I2V pipelines use 2.0)")
        case (false, true): throw fail("this model has no ofs embedding (ofs_embed_dim is null): do not pass ofs")
        default: break
        }
        for (name, t) in [("hidden_states", x), ("encoder_hidden_states", text)] where !t.isFinite {
            throw fail("\(name) holds NaN or infinite values")
        }
    }

    /// The values of a per-sample argument: `[B]`, or `[1]` repeated over the batch (diffusers broadcasts it).
    static func perSample(_ t: Tensor, batch b: Int, name: String) throws(TensorError) -> [Float] {
        guard t.rank == 1, t.shape[0] == b || t.shape[0] == 1 else {
            throw .shapeMismatch(operation: "CogVideoX forward", shapes: [t.shape], reason: "\(name) must be [B = \(b)] or [1]")
        }
        let v = t.scalars
        guard v.allSatisfy(\.isFinite) else {
            throw .invalidArgument(operation: "CogVideoX forward", reason: "\(name) holds NaN or infinite values: \(v)")
        }
        return v.count == b ? v : Array(repeating: v[0], count: b)
    }
}
