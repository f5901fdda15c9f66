import Foundation
import Tensors

/// The tensor arguments of one HiDream-I1 forward call, named after diffusers'
/// `HiDreamImageTransformer2DModel.forward`.
public struct HiDreamI1Input: LatentTimestepInput, Sendable {
    /// `hidden_states` `[B, in_channels, H, W]` (H and W multiples of the patch size; a non-square latent
    /// runs in diffusers' padded layout, see ``HiDreamI1Transformer``).
    public var hiddenStates: Tensor
    /// `timesteps` `[B]` (or `[1]`, broadcast), sigma·1000.
    public var timestep: Tensor
    /// `encoder_hidden_states_t5` `[B, L_t5, caption_channels[0]]`.
    public var encoderHiddenStatesT5: Tensor
    /// `encoder_hidden_states_llama3` `[n_llama, B, L_llama, caption_channels[1]]`: the stacked hidden
    /// states of several llama layers, of which block `k` reads layer `llama_layers[k]`.
    public var encoderHiddenStatesLlama3: Tensor
    /// `pooled_embeds` `[B, text_emb_dim]`.
    public var pooledEmbeds: Tensor

    /// The inputs of one forward call (shapes as documented on each property).
    public init(hiddenStates: Tensor, timestep: Tensor, encoderHiddenStatesT5: Tensor,
                encoderHiddenStatesLlama3: Tensor, pooledEmbeds: Tensor) {
        self.hiddenStates = hiddenStates
        self.timestep = timestep
        self.encoderHiddenStatesT5 = encoderHiddenStatesT5
        self.encoderHiddenStatesLlama3 = encoderHiddenStatesLlama3
        self.pooledEmbeds = pooledEmbeds
    }
}

/// Everything HiDream-I1's blocks need, computed once per call by ``HiDreamI1Transformer/prepare(_:)``.
///
/// `image` and `text` are current after every block: the double-stream blocks update both (the text
/// stream enters each of them with that block's llama states appended, which it drops again), the
/// single-stream blocks run on `[image, text, llama states of the block]` and keep the first two parts.
public struct HiDreamI1State: Sendable {
    /// Image tokens `[B, S, D]`: the `x_embedder` output after ``HiDreamI1Transformer/prepare(_:)``, then
    /// the output of the last block run. For a non-square latent `S` is the padded `max_seq`.
    public internal(set) var image: Tensor
    /// The kept text tokens `[B, L_t5 + L_llama, D]`: the projected T5 states followed by the last
    /// block's projected llama states, then the output of the last block run.
    public internal(set) var text: Tensor
    /// Each block's projected llama states `[B, L_llama, D]`, in block order.
    let llama: [Tensor]
    /// The timestep embedding `t_embedder(timesteps)` `[B, D]` (TeaCache's modulated input).
    public let timestepEmbedding: Tensor
    /// The blocks' conditioning `temb = t_embedder(timesteps) + p_embedder(pooled_embeds)` `[B, D]`.
    public let temb: Tensor
    /// Rotary tables `[S + L + L_llama, headDim]` over the sequence every attention sees (image tokens
    /// first; the text tokens sit at position 0, an identity rotation).
    let rope: (cos: Tensor, sin: Tensor)
    /// The latent grid `(H, W)` the output is unpatchified to.
    let latentSize: (height: Int, width: Int)
    /// Non-square latents only: `hidden_states_masks` `[B, max_seq]`, 1 for the real image tokens and 0 for
    /// the padding, by which every attention multiplies the image keys (diffusers zeroes them; it does not
    /// mask them out of the softmax).
    let keyMask: Tensor?
}

/// diffusers' `HiDreamImageTransformer2DModel` (HiDream-I1), float32 on the CPU.
///
/// The forward is split in the order TeaCache needs it: ``prepare(_:)`` (patchify, embeddings, caption
/// projections, rotary tables), ``modulatedInput(_:)``, ``runBlocks(_:)`` (double-stream, then
/// single-stream blocks) and ``outputHead(_:)``; ``callAsFunction(_:)`` runs all but the modulated input.
/// Build one with ``HiDreamI1Family``'s loaders.
///
/// A non-square latent runs as diffusers runs it: its tokens are padded with zero tokens to
/// `max_seq = max_resolution[0]·max_resolution[1] / patch²`, the padding tokens (at position 0) flow
/// through every block with their attention keys zeroed, and the output keeps the real tokens.
public struct HiDreamI1Transformer: Sendable {
    /// The validated configuration.
    public let configuration: HiDreamI1Configuration
    /// The memory a forward may plan to use: ``prepare(_:)`` estimates the activations of the input shapes
    /// (``HiDreamI1Configuration/activationBytesEstimate(batch:imageTokens:t5Tokens:llamaTokens:)``) and
    /// refuses inputs beyond it with `TensorError.memoryBudgetExceeded`.
    public var memoryBudget = MemoryBudget.machineDefault
    /// `t_embedder.timestep_embedder`.
    private let timestepEmbedder: TimestepMLP
    /// `p_embedder.pooled_embedder`.
    private let pooledEmbedder: TimestepMLP
    /// `x_embedder.proj`: patch tokens → width.
    private let xEmbedder: Linear
    /// `caption_projection.k` for the blocks' llama states (one per block, in block order).
    private let llamaProjections: [Linear]
    /// `caption_projection.<blocks>`: T5 states → width.
    private let t5Projection: Linear
    /// `double_stream_blocks`.
    private let doubleBlocks: [HiDreamI1DoubleStreamBlock]
    /// `single_stream_blocks`.
    private let singleBlocks: [HiDreamI1SingleStreamBlock]
    /// `final_layer`.
    private let finalLayer: HiDreamI1OutputHead

    /// Builds the model, taking every parameter from `weights` by its diffusers name (called by
    /// ``HiDreamI1Family``'s loading functions, which check the weights afterwards).
    init(configuration c: HiDreamI1Configuration, weights w: WeightScope) {
        configuration = c
        let d = c.innerDim
        timestepEmbedder = TimestepMLP(w["t_embedder.timestep_embedder"], in: HiDreamI1Configuration.timestepChannels,
                                       hidden: d, out: d)
        pooledEmbedder = TimestepMLP(w["p_embedder.pooled_embedder"], in: c.textEmbDim, hidden: d, out: d)
        xEmbedder = Linear(w["x_embedder.proj"], in: c.patchWidth, out: d)
        llamaProjections = (0..<c.blockCount).map {
            Linear(w["caption_projection"][$0]["linear"], in: c.captionChannels[1], out: d, bias: false)
        }
        t5Projection = Linear(w["caption_projection"][c.blockCount]["linear"], in: c.captionChannels[0], out: d, bias: false)
        doubleBlocks = (0..<c.numLayers).map { HiDreamI1DoubleStreamBlock(w["double_stream_blocks"][$0]["block"], configuration: c) }
        singleBlocks = (0..<c.numSingleLayers).map {
            HiDreamI1SingleStreamBlock(w["single_stream_blocks"][$0]["block"], configuration: c)
        }
        finalLayer = HiDreamI1OutputHead(w["final_layer"], configuration: c)
    }

    /// The full forward (`model(**inputs, return_dict=False)[0]`): `[B, out_channels, H, W]`.
    public func callAsFunction(_ inputs: HiDreamI1Input) throws(TensorError) -> Tensor {
        var p = try prepare(inputs)
        try runBlocks(&p)
        return try outputHead(p)
    }

    /// Patchifies and embeds the inputs (after checking their shapes against the configuration).
    public func prepare(_ inputs: HiDreamI1Input) throws(TensorError) -> HiDreamI1State {
        let (b, llamaIndices) = try validate(inputs)
        let c = configuration
        let (h, w) = (inputs.hiddenStates.shape[2], inputs.hiddenStates.shape[3])
        let p = c.patch
        var tokens = try Patches.patchify2D(inputs.hiddenStates, patch: p, order: .channelsLast)
        var keyMask: Tensor? = nil
        if h != w {
            let real = tokens.shape[1]
            tokens = try Tensor.concatenate([tokens, Tensor(zeros: [b, c.maxSequence - real, tokens.shape[2]])], axis: 1)
            var mask = [Float](repeating: 0, count: b * c.maxSequence)
            for r in 0..<b { for t in 0..<real { mask[r * c.maxSequence + t] = 1 } }
            keyMask = try Tensor(shape: [b, c.maxSequence], scalars: mask)
        }
        let image = try xEmbedder(tokens)
        var timesteps = inputs.timestep.scalars
        if timesteps.count == 1 && b > 1 { timesteps = Array(repeating: timesteps[0], count: b) }
        let sinusoid = try sinusoidalTimestepEmbedding(timesteps, dim: HiDreamI1Configuration.timestepChannels,
                                                       flipSinToCos: true, downscaleFreqShift: 0)
        let timestepEmbedding = try timestepEmbedder(sinusoid)
        let temb = try timestepEmbedding + pooledEmbedder(inputs.pooledEmbeds)
        let stacked = inputs.encoderHiddenStatesLlama3.shape
        let (ll, width) = (stacked[2], stacked[3])
        var llama: [Tensor] = []
        for (projection, k) in zip(llamaProjections, llamaIndices) {
            let layer = try inputs.encoderHiddenStatesLlama3.slice(axis: 0, k..<(k + 1)).reshaped([b, ll, width])
            llama.append(try projection(layer))
        }
        let t5 = try t5Projection(inputs.encoderHiddenStatesT5)
        let text = try Tensor.concatenate([t5, llama[llama.count - 1]], axis: 1)
        let grid = (h / p, w / p)
        return HiDreamI1State(
            image: image, text: text, llama: llama, timestepEmbedding: timestepEmbedding, temb: temb,
            rope: try rotaryTables(grid: grid, imageTokens: image.shape[1], textTokens: text.shape[1] + ll),
            latentSize: (h, w), keyMask: keyMask)
    }

    /// TeaCache's modulated input (TeaCache4HiDream-I1): the timestep embedding `t_embedder(timesteps)`
    /// alone, `[B, D]`.
    public func modulatedInput(_ p: HiDreamI1State) throws(TensorError) -> Tensor {
        p.timestepEmbedding
    }

    /// Runs every double-stream block, then every single-stream block, updating `p.image` and `p.text`.
    public func runBlocks(_ p: inout HiDreamI1State) throws(TensorError) {
        for i in 0..<depth { try runBlock(i, &p) }
    }

    /// The number of blocks: double-stream, then single-stream.
    var depth: Int { doubleBlocks.count + singleBlocks.count }

    /// Runs block `index` (`0 ..< num_layers + num_single_layers`, the double-stream blocks first, in
    /// order) on `p`: the one loop body of ``runBlocks(_:)`` and of First-Block Cache.
    ///
    /// A double-stream block sees the text stream with the block's llama states appended and keeps only
    /// the text stream's first part; a single-stream block sees `[image, text, llama states]` and keeps
    /// the first two parts, as diffusers truncates after each block.
    public func runBlock(_ index: Int, _ p: inout HiDreamI1State) throws(TensorError) {
        guard (0..<depth).contains(index) else {
            throw .invalidArgument(operation: "HiDream-I1 block", reason: "block \(index) is outside 0..<\(depth)")
        }
        let l = p.text.shape[1]
        if index < doubleBlocks.count {
            var text = try Tensor.concatenate([p.text, p.llama[index]], axis: 1)
            try doubleBlocks[index](image: &p.image, text: &text, temb: p.temb, rope: p.rope, keyMask: p.keyMask)
            p.text = try text.slice(axis: 1, 0..<l)
            return
        }
        let s = p.image.shape[1]
        var joint = try Tensor.concatenate([p.image, p.text, p.llama[index]], axis: 1)
        try singleBlocks[index - doubleBlocks.count](&joint, temb: p.temb, rope: p.rope, keyMask: p.keyMask)
        let parts = try joint.split(sizes: [s, l, joint.shape[1] - s - l], axis: 1)
        (p.image, p.text) = (parts[0], parts[1])
    }

    /// `unpatchify(final_layer(image, temb))`: `[B, out_channels, H, W]`.
    public func outputHead(_ p: HiDreamI1State) throws(TensorError) -> Tensor {
        var tokens = try finalLayer(p.image, temb: p.temb)
        let real = (p.latentSize.height / configuration.patch) * (p.latentSize.width / configuration.patch)
        if tokens.shape[1] != real { tokens = try tokens.slice(axis: 1, 0..<real) }
        return try Patches.unpatchify2D(tokens, height: p.latentSize.height, width: p.latentSize.width,
                                        patch: configuration.patch, order: .channelsLast)
    }

    /// `HiDreamImageEmbedND` over the image ids `(0, row, column)` of the `grid` (padded with zero ids to
    /// `imageTokens`) followed by `textTokens` zero ids, `[imageTokens + textTokens, headDim]` each. When the rotary axes cover half a head, the second
    /// half of every head gets the identity rotation (cos 1, sin 0), which leaves it exactly unchanged,
    /// as diffusers leaves it unrotated.
    private func rotaryTables(grid: (h: Int, w: Int), imageTokens: Int, textTokens: Int) throws(TensorError) -> (cos: Tensor, sin: Tensor) {
        let c = configuration
        let n = imageTokens + textTokens
        var ids = [Float](repeating: 0, count: n * 3)
        for r in 0..<grid.h {
            for col in 0..<grid.w {
                ids[(r * grid.w + col) * 3 + 1] = Float(r)
                ids[(r * grid.w + col) * 3 + 2] = Float(col)
            }
        }
        let tables = try RotaryEmbedding.tables(positions: Tensor(shape: [n, 3], scalars: ids), axesDims: c.axesDimsRope,
                                                theta: HiDreamI1Configuration.ropeTheta, layout: .interleaved)
        if c.rotatesWholeHead { return tables }
        let rest = c.attentionHeadDim - tables.cos.shape[1]
        return (try Tensor.concatenate([tables.cos, Tensor(shape: [n, rest], repeating: 1)], axis: 1),
                try Tensor.concatenate([tables.sin, Tensor(zeros: [n, rest])], axis: 1))
    }

    /// Checks every input against the configuration and the memory budget; returns the batch size and
    /// the llama layer each block reads (negative `llama_layers` resolved).
    private func validate(_ x: HiDreamI1Input) throws(TensorError) -> (batch: Int, llama: [Int]) {
        let c = configuration
        func fail(_ reason: String) -> TensorError { .invalidArgument(operation: "HiDream-I1 forward", reason: reason) }
        let h = x.hiddenStates.shape
        guard h.count == 4, h[1] == c.inChannels, h.allSatisfy({ $0 > 0 }) else {
            throw fail("hidden_states must be [B, \(c.inChannels), H, W] with B, H, W > 0, got \(h)")
        }
        guard h[2] % c.patch == 0, h[3] % c.patch == 0 else {
            throw fail("the latent \(h[2])×\(h[3]) is not a multiple of patch_size = \(c.patch)")
        }
        let real = (h[2] / c.patch) * (h[3] / c.patch)
        guard h[2] == h[3] || real <= c.maxSequence else {
            throw fail("a non-square latent runs padded to max_resolution: \(h[2])×\(h[3]) has \(real) patches, "
                       + "more than max_seq = \(c.maxSequence)")
        }
        let b = h[0]
        let t5 = x.encoderHiddenStatesT5.shape
        guard t5.count == 3, t5[0] == b, t5[1] > 0, t5[2] == c.captionChannels[0] else {
            throw fail("encoder_hidden_states_t5 must be [\(b), L_t5 > 0, \(c.captionChannels[0])], got \(t5)")
        }
        let llama = x.encoderHiddenStatesLlama3.shape
        guard llama.count == 4, llama[0] > 0, llama[1] == b, llama[2] > 0, llama[3] == c.captionChannels[1] else {
            throw fail("encoder_hidden_states_llama3 must be [n_llama > 0, \(b), L_llama > 0, \(c.captionChannels[1])], got \(llama)")
        }
        let n = llama[0]
        var indices: [Int] = []
        for k in c.llamaLayers {
            let i = k < 0 ? n + k : k
            guard (0..<n).contains(i) else {
                throw fail("llama_layers entry \(k) is outside the \(n) stacked llama states of encoder_hidden_states_llama3")
            }
            indices.append(i)
        }
        let s = h[2] == h[3] ? real : c.maxSequence
        try memoryBudget.check("HiDream-I1 forward of batch \(b), \(s) image + \(t5[1]) T5 + \(llama[2]) llama tokens",
                               bytes: Double(c.activationBytesEstimate(batch: b, imageTokens: s, t5Tokens: t5[1],
                                                                       llamaTokens: llama[2])))
        guard x.pooledEmbeds.shape == [b, c.textEmbDim] else {
            throw fail("pooled_embeds must be [\(b), \(c.textEmbDim)], got \(x.pooledEmbeds.shape)")
        }
        guard x.timestep.rank <= 1, x.timestep.count == 1 || x.timestep.count == b else {
            throw fail("timesteps must be [\(b)] or [1], got \(x.timestep.shape)")
        }
        let named: [(String, Tensor)] = [("hidden_states", x.hiddenStates), ("timesteps", x.timestep),
                                         ("encoder_hidden_states_t5", x.encoderHiddenStatesT5),
                                         ("encoder_hidden_states_llama3", x.encoderHiddenStatesLlama3),
                                         ("pooled_embeds", x.pooledEmbeds)]
        for (name, t) in named where !t.isFinite {
            throw fail("\(name) contains NaN or infinity")
        }
        return (b, indices)
    }
}

// MARK: Blocks

/// The per-sample modulation of a HiDream-I1 block: `adaLN_modulation` = `Linear(silu(temb))` split into
/// (shift, scale, gate) of the attention branch, then of the feed-forward branch, per stream.
private struct HiDreamI1Modulation {
    /// Shift, scale and gate of the attention branch, `[B, D]` each.
    let attention: (shift: Tensor, scale: Tensor, gate: Tensor)
    /// Shift, scale and gate of the feed-forward branch, `[B, D]` each.
    let feedForward: (shift: Tensor, scale: Tensor, gate: Tensor)

    /// The stream of chunks `6·stream ..< 6·stream + 6` of `chunks`.
    init(_ chunks: [Tensor], stream: Int) {
        let o = 6 * stream
        attention = (chunks[o], chunks[o + 1], chunks[o + 2])
        feedForward = (chunks[o + 3], chunks[o + 4], chunks[o + 5])
    }
}

/// Epsilon of the blocks' non-affine LayerNorms (`norm1_*`, `norm3_*`).
private let blockNormEps: Float = 1e-6

/// `h + gate·ff(LN(h)·(1 + scale) + shift)`: the feed-forward half of every HiDream-I1 block.
private func feedForwardUpdate(
    _ h: Tensor, _ m: (shift: Tensor, scale: Tensor, gate: Tensor), _ ff: (Tensor) throws(TensorError) -> Tensor
) throws(TensorError) -> Tensor {
    let n = try layerNormModulated(h, eps: blockNormEps, scale: m.scale, shift: m.shift)
    return try addingGated(h, ff(n), gate: m.gate)
}

/// A HiDream-I1 double-stream block (`HiDreamImageTransformerBlock`): separate adaLN modulation,
/// projections and feed-forwards for the image and text streams, joint attention across both (image
/// tokens first); the image feed-forward is a mixture of experts.
private struct HiDreamI1DoubleStreamBlock: Sendable {
    /// `adaLN_modulation.1` `[12D, D]`.
    let modulation: Linear
    /// `attn1`.
    let attention: HiDreamI1Attention
    /// `ff_i`.
    let imageFeedForward: HiDreamI1ImageFeedForward
    /// `ff_t`.
    let textFeedForward: HiDreamI1SwiGLU

    /// Takes the parameters of one block's scope (e.g. `double_stream_blocks.0.block`).
    init(_ w: WeightScope, configuration c: HiDreamI1Configuration) {
        let d = c.innerDim
        modulation = Linear(w["adaLN_modulation.1"], in: d, out: 12 * d)
        attention = HiDreamI1Attention(w["attn1"], configuration: c, single: false)
        imageFeedForward = HiDreamI1ImageFeedForward(w["ff_i"], configuration: c)
        textFeedForward = HiDreamI1SwiGLU(w["ff_t"], dim: d, hidden: c.expertHiddenDim)
    }

    /// Updates `image` `[B, S, D]` and `text` `[B, L', D]` with conditioning `temb` `[B, D]`.
    func callAsFunction(
        image: inout Tensor, text: inout Tensor, temb: Tensor, rope: (cos: Tensor, sin: Tensor), keyMask: Tensor?
    ) throws(TensorError) {
        let chunks = try modulationChunks(modulation, temb, count: 12)
        let mi = HiDreamI1Modulation(chunks, stream: 0), mt = HiDreamI1Modulation(chunks, stream: 1)
        let ni = try layerNormModulated(image, eps: blockNormEps, scale: mi.attention.scale, shift: mi.attention.shift)
        let nt = try layerNormModulated(text, eps: blockNormEps, scale: mt.attention.scale, shift: mt.attention.shift)
        let (ai, at) = try attention.joint(image: ni, text: nt, rope: rope, keyMask: keyMask)
        image = try feedForwardUpdate(addingGated(image, ai, gate: mi.attention.gate), mi.feedForward) { x throws(TensorError) in
            try imageFeedForward(x)
        }
        text = try feedForwardUpdate(addingGated(text, at, gate: mt.attention.gate), mt.feedForward) { x throws(TensorError) in
            try textFeedForward(x)
        }
    }
}

/// A HiDream-I1 single-stream block (`HiDreamImageSingleTransformerBlock`) on the joint sequence
/// `[image, text, llama states]`: adaLN-modulated self-attention and mixture-of-experts feed-forward.
private struct HiDreamI1SingleStreamBlock: Sendable {
    /// `adaLN_modulation.1` `[6D, D]`.
    let modulation: Linear
    /// `attn1` (single: no text projections).
    let attention: HiDreamI1Attention
    /// `ff_i`.
    let feedForward: HiDreamI1ImageFeedForward

    /// Takes the parameters of one block's scope (e.g. `single_stream_blocks.0.block`).
    init(_ w: WeightScope, configuration c: HiDreamI1Configuration) {
        modulation = Linear(w["adaLN_modulation.1"], in: c.innerDim, out: 6 * c.innerDim)
        attention = HiDreamI1Attention(w["attn1"], configuration: c, single: true)
        feedForward = HiDreamI1ImageFeedForward(w["ff_i"], configuration: c)
    }

    /// Updates the joint sequence `x` `[B, T, D]` (`keyMask` covers its first, image, tokens).
    func callAsFunction(_ x: inout Tensor, temb: Tensor, rope: (cos: Tensor, sin: Tensor), keyMask: Tensor?) throws(TensorError) {
        let m = HiDreamI1Modulation(try modulationChunks(modulation, temb, count: 6), stream: 0)
        let n = try layerNormModulated(x, eps: blockNormEps, scale: m.attention.scale, shift: m.attention.shift)
        let a = try attention.single(n, rope: rope, keyMask: keyMask)
        x = try feedForwardUpdate(addingGated(x, a, gate: m.attention.gate), m.feedForward) { y throws(TensorError) in
            try feedForward(y)
        }
    }
}

/// `HiDreamAttention` with `HiDreamAttnProcessor`: q/k/v projections with RMS norms over the whole
/// width (ε = 1e-5) for the image stream (and, in a double-stream block, the text stream), rotary
/// embedding on the joint sequence (image first), attention, and separate output projections.
private struct HiDreamI1Attention: Sendable {
    /// `to_q`, `to_k`, `to_v` of the image (or joint) stream.
    let projection: FusedLinear
    /// `q_rms_norm.weight`, `k_rms_norm.weight` `[D]`.
    let normQ: Tensor, normK: Tensor
    /// `to_out`.
    let toOut: Linear
    /// The text stream's `to_q_t`, `to_k_t`, `to_v_t`, `q_rms_norm_t`, `k_rms_norm_t` and `to_out_t`
    /// (double-stream blocks only).
    let text: (projection: FusedLinear, normQ: Tensor, normK: Tensor, toOut: Linear)?
    /// Number of heads.
    let heads: Int
    /// Epsilon of the q/k RMS norms (`nn.RMSNorm(eps=1e-5)`).
    static let eps: Float = 1e-5

    /// Takes the parameters of an `attn1` scope.
    init(_ w: WeightScope, configuration c: HiDreamI1Configuration, single: Bool) {
        let d = c.innerDim
        projection = FusedLinear([w["to_q"], w["to_k"], w["to_v"]], in: d, out: [d, d, d])
        normQ = w["q_rms_norm"].tensor("weight", shape: [d])
        normK = w["k_rms_norm"].tensor("weight", shape: [d])
        toOut = Linear(w["to_out"], in: d, out: d)
        text = single ? nil : (FusedLinear([w["to_q_t"], w["to_k_t"], w["to_v_t"]], in: d, out: [d, d, d]),
                               w["q_rms_norm_t"].tensor("weight", shape: [d]),
                               w["k_rms_norm_t"].tensor("weight", shape: [d]),
                               Linear(w["to_out_t"], in: d, out: d))
        heads = c.numAttentionHeads
    }

    /// Image and text stream attended jointly (image tokens first); returns both projected outputs.
    func joint(
        image: Tensor, text t: Tensor, rope: (cos: Tensor, sin: Tensor), keyMask: Tensor?
    ) throws(TensorError) -> (image: Tensor, text: Tensor) {
        guard let text else {
            throw .invalidArgument(operation: "HiDream-I1 attention", reason: "a single-stream attention has no text projections")
        }
        let (pi, pt) = (try projection.stacked(image), try text.projection.stacked(t))
        let o = try rotaryAttention(queries: [segment(pi, 0, normQ), segment(pt, 0, text.normQ)],
                                    keys: [segment(pi, 1, normK), segment(pt, 1, text.normK)],
                                    values: [segment(pi, 2, nil), segment(pt, 2, nil)], rope: rope, keyMask: keyMask)
        let s = image.shape[1]
        let parts = try o.split(sizes: [s, o.shape[1] - s], axis: 1)
        return (try toOut(parts[0]), try text.toOut(parts[1]))
    }

    /// Self-attention of the joint sequence `x` `[B, T, D]`, projected out.
    func single(_ x: Tensor, rope: (cos: Tensor, sin: Tensor), keyMask: Tensor?) throws(TensorError) -> Tensor {
        let p = try projection.stacked(x)
        return try toOut(rotaryAttention(queries: [segment(p, 0, normQ)], keys: [segment(p, 1, normK)],
                                         values: [segment(p, 2, nil)], rope: rope, keyMask: keyMask))
    }

    /// Block `index` (0 q, 1 k, 2 v) of a stacked projection, RMS-normalised over the whole width with
    /// `norm` (nil: as it is).
    private func segment(_ p: Tensor, _ index: Int, _ norm: Tensor?) -> HeadSegment {
        let d = p.shape[2] / 3
        return HeadSegment(p, column: index * d,
                           norm: norm.map { HeadNormalisation(.rms, weight: $0, eps: Self.eps, perHead: false) })
    }

    /// `k` `[B, T, D]` with its first `mask.shape[1]` tokens multiplied by `mask` `[B, S]` (diffusers'
    /// `key * hidden_states_masks`; the text tokens' mask is all ones).
    private func masked(_ k: Tensor, _ mask: Tensor?) throws(TensorError) -> Tensor {
        guard let mask else { return k }
        let (b, t, d) = (k.shape[0], k.shape[1], k.shape[2])
        let s = mask.shape[1]
        guard mask.shape[0] == b, s <= t else {
            throw .shapeMismatch(operation: "HiDream-I1 key mask", shapes: [k.shape, mask.shape],
                                 reason: "the mask must be [B, S] with S at most the keys' length")
        }
        var values = k.scalars
        let m = mask.scalars
        for r in 0..<b {
            for i in 0..<s {
                let f = m[r * s + i]
                let base = (r * t + i) * d
                for j in 0..<d { values[base + j] *= f }
            }
        }
        return try Tensor(shape: k.shape, scalars: values)
    }

    /// Attention of the joined segments (in order along the sequence): q and k normalised and rotated in
    /// one pass (``preparedHeads(_:width:heads:rope:rotatedFrom:)``); with a key mask the keys are multiplied by it
    /// between their norm and their rotation, as diffusers does. A single value segment is read in place.
    private func rotaryAttention(
        queries: [HeadSegment], keys: [HeadSegment], values: [HeadSegment], rope: (cos: Tensor, sin: Tensor),
        keyMask: Tensor?
    ) throws(TensorError) -> Tensor {
        let width = queries[0].tensor.shape[2] / 3
        let tables = (cos: rope.cos, sin: rope.sin, layout: RotaryEmbedding.Layout.interleaved)
        let q = try preparedHeads(queries, width: width, heads: heads, rope: tables)
        let k = keyMask == nil
            ? try preparedHeads(keys, width: width, heads: heads, rope: tables)
            : try RotaryEmbedding.apply(masked(preparedHeads(keys, width: width, heads: heads), keyMask),
                                        cos: rope.cos, sin: rope.sin, heads: heads, layout: .interleaved)
        let v = try AttentionOperand(joining: values, width: width, heads: heads)
        return try attention(query: AttentionOperand(q), key: AttentionOperand(k), value: v, width: width, heads: heads,
                             precision: toOut.weight.precision)
    }
}

// MARK: Feed-forwards

/// `HiDreamImageFeedForwardSwiGLU`: `w2(silu(w1·x) · w3·x)`, no biases; `w1` and `w3` run as one
/// stacked product.
private struct HiDreamI1SwiGLU: Sendable {
    /// `[w3; w1]` stacked, so that `swiglu` reads `[value, gate]`.
    let valueAndGate: Linear
    /// `w2`.
    let down: Linear

    /// Takes `w1`, `w2`, `w3` of the scope.
    init(_ w: WeightScope, dim: Int, hidden: Int) {
        valueAndGate = Linear.stacking([Linear(w["w3"], in: dim, out: hidden, bias: false),
                                        Linear(w["w1"], in: dim, out: hidden, bias: false)])
        down = Linear(w["w2"], in: hidden, out: dim, bias: false)
    }

    /// Applies the feed-forward to `[..., dim]`.
    func callAsFunction(_ x: Tensor) throws(TensorError) -> Tensor {
        try down(swiglu(valueAndGate(x)))
    }
}

/// The image feed-forward `ff_i`: `MOEFeedForwardSwiGLU` (shared expert + gated routed experts) when
/// `num_routed_experts > 0`, else a plain SwiGLU.
private enum HiDreamI1ImageFeedForward: Sendable {
    case plain(HiDreamI1SwiGLU)
    case experts(HiDreamI1MixtureOfExperts)

    init(_ w: WeightScope, configuration c: HiDreamI1Configuration) {
        self = c.usesExperts ? .experts(HiDreamI1MixtureOfExperts(w, configuration: c))
                             : .plain(HiDreamI1SwiGLU(w, dim: c.innerDim, hidden: c.expertHiddenDim))
    }

    func callAsFunction(_ x: Tensor) throws(TensorError) -> Tensor {
        switch self {
        case .plain(let ff): return try ff(x)
        case .experts(let moe): return try moe(x)
        }
    }
}

/// `MOEFeedForwardSwiGLU` on its inference path (`moe_infer`): per token, the gate's softmax over the
/// routed experts picks the top `k` (`MoEGate`, weights not renormalised, ties broken as
/// `torch.topk` breaks them on the CPU, ``TorchTopK``); the token's output is the sum of
/// `weight · expert(x)` over its experts in ascending expert order, plus the shared expert's output.
struct HiDreamI1MixtureOfExperts: Sendable {
    /// `gate.weight` `[E, D]` (no bias), always float32: the router's top-k is a discrete choice, and
    /// rounding its small weight to 16 or 8 bits flipped tokens to other experts (a jump in the output,
    /// not a rounding error); E·D values cost nothing to keep.
    let gate: Linear
    /// `experts.e`.
    private let experts: [HiDreamI1SwiGLU]
    /// `shared_experts`.
    private let shared: HiDreamI1SwiGLU
    /// Experts per token.
    let activated: Int

    init(_ w: WeightScope, configuration c: HiDreamI1Configuration) {
        let d = c.innerDim
        gate = Linear(weight: w["gate"].tensor("weight", shape: [c.numRoutedExperts, d]), bias: nil)
        experts = (0..<c.numRoutedExperts).map { HiDreamI1SwiGLU(w["experts"][$0], dim: d, hidden: c.expertHiddenDim) }
        shared = HiDreamI1SwiGLU(w["shared_experts"], dim: d, hidden: c.sharedExpertHiddenDim)
        activated = c.numActivatedExperts
    }

    /// The routing of the rows of `x` `[N, D]`: for each expert (in order), the rows it serves and each
    /// row's gate weight.
    func routing(_ x: Tensor) throws(TensorError) -> [(rows: [Int], weights: [Float])] {
        let scores = try softmax(gate(x)).scalars
        let e = gate.outFeatures
        var routes = Array(repeating: (rows: [Int](), weights: [Float]()), count: e)
        for r in 0..<(e == 0 ? 0 : scores.count / e) {
            let row = Array(scores[(r * e)..<((r + 1) * e)])
            for i in TorchTopK.indices(row, k: activated).sorted() {
                routes[i].rows.append(r)
                routes[i].weights.append(row[i])
            }
        }
        return routes
    }

    /// Applies the mixture to `[..., D]`.
    func callAsFunction(_ x: Tensor) throws(TensorError) -> Tensor {
        let d = x.shape[x.rank - 1]
        let flat = try x.reshaped([x.count / max(d, 1), d])
        // Routed outputs summed in expert order (each weighted by its gate), then the shared expert added.
        var y = try Tensor(zeros: flat.shape)
        for (i, route) in try routing(flat).enumerated() where !route.rows.isEmpty {
            let out = try experts[i](flat.gatheringRows(route.rows))
            // An expert serves each row at most once: its rows are updated in parallel.
            y.withUnsafeMutableBufferPointer { py in
                out.withUnsafeBufferPointer { po in
                    route.rows.withUnsafeBufferPointer { rows in
                        route.weights.withUnsafeBufferPointer { weights in
                            Parallelism.forEachChunk(rows.count, costPerItem: 2 * d) { part in
                                for j in part {
                                    let w = weights[j], dst = py.baseAddress! + rows[j] * d, src = po.baseAddress! + j * d
                                    for c in 0..<d { dst[c] += src[c] * w }
                                }
                            }
                        }
                    }
                }
            }
        }
        let common = try shared(flat)
        let n = y.count
        y.withUnsafeMutableBufferPointer { py in
            common.withUnsafeBufferPointer { ps in
                Parallelism.forEachBlock(n) { r in
                    for i in r { py[i] += ps[i] }
                }
            }
        }
        return try y.reshaped(x.shape)
    }
}

/// The indices `torch.topk(values, k, largest=True, sorted=False)` returns on the CPU for one row — the
/// set that matters, including which of several equal values are taken.
///
/// PyTorch's CPU kernel pairs every value with its index and runs `std::partial_sort` over the first `k`
/// when `64·k <= n`, else `std::nth_element` at `k − 1`, with "larger value (NaN largest) first" as the
/// ordering; the first `k` pairs afterwards are the result. Which tied values land there is decided by
/// libstdc++'s introselect and heap select, reproduced here step for step.
enum TorchTopK {
    private typealias Element = (value: Float, index: Int)

    /// The selected indices (in the order the kernel leaves them).
    static func indices(_ values: [Float], k: Int) -> [Int] {
        let n = values.count
        guard k > 0, n > 0 else { return [] }
        guard k < n else { return Array(0..<n) }
        var a: [Element] = values.enumerated().map { ($0.element, $0.offset) }
        if k * 64 <= n {
            heapSelect(&a, 0, k, n)
        } else {
            var depth = 2 * (Int.bitWidth - 1 - n.leadingZeroBitCount)
            introselect(&a, 0, k - 1, n, &depth)
        }
        return a[0..<k].map(\.index)
    }

    /// PyTorch's ordering for `largest=True`: NaN before numbers, then larger before smaller.
    private static func before(_ x: Element, _ y: Element) -> Bool {
        (x.value.isNaN && !y.value.isNaN) || x.value > y.value
    }

    private static func introselect(_ a: inout [Element], _ first: Int, _ nth: Int, _ last: Int, _ depth: inout Int) {
        var (first, last) = (first, last)
        while last - first > 3 {
            if depth == 0 {
                heapSelect(&a, first, nth + 1, last)
                a.swapAt(first, nth)
                return
            }
            depth -= 1
            let cut = partitionPivot(&a, first, last)
            if cut <= nth { first = cut } else { last = cut }
        }
        insertionSort(&a, first, last)
    }

    private static func partitionPivot(_ a: inout [Element], _ first: Int, _ last: Int) -> Int {
        let mid = first + (last - first) / 2
        moveMedianToFirst(&a, first, first + 1, mid, last - 1)
        var (lo, hi) = (first + 1, last)
        while true {
            while before(a[lo], a[first]) { lo += 1 }
            hi -= 1
            while before(a[first], a[hi]) { hi -= 1 }
            if !(lo < hi) { return lo }
            a.swapAt(lo, hi)
            lo += 1
        }
    }

    private static func moveMedianToFirst(_ a: inout [Element], _ result: Int, _ x: Int, _ y: Int, _ z: Int) {
        if before(a[x], a[y]) {
            if before(a[y], a[z]) { a.swapAt(result, y) }
            else if before(a[x], a[z]) { a.swapAt(result, z) }
            else { a.swapAt(result, x) }
        } else if before(a[x], a[z]) { a.swapAt(result, x) }
        else if before(a[y], a[z]) { a.swapAt(result, z) }
        else { a.swapAt(result, y) }
    }

    private static func insertionSort(_ a: inout [Element], _ first: Int, _ last: Int) {
        guard first < last else { return }
        var i = first + 1
        while i < last {
            let v = a[i]
            if before(v, a[first]) {
                var j = i
                while j > first { a[j] = a[j - 1]; j -= 1 }
                a[first] = v
            } else {
                var j = i
                while before(v, a[j - 1]) { a[j] = a[j - 1]; j -= 1 }
                a[j] = v
            }
            i += 1
        }
    }

    private static func heapSelect(_ a: inout [Element], _ first: Int, _ middle: Int, _ last: Int) {
        let len = middle - first
        if len >= 2 {
            var parent = (len - 2) / 2
            while true {
                adjustHeap(&a, first, parent, len, a[first + parent])
                if parent == 0 { break }
                parent -= 1
            }
        }
        for i in middle..<last where before(a[i], a[first]) {
            let v = a[i]
            a[i] = a[first]
            adjustHeap(&a, first, 0, len, v)
        }
    }

    private static func adjustHeap(_ a: inout [Element], _ first: Int, _ hole: Int, _ len: Int, _ value: Element) {
        var hole = hole
        let top = hole
        var child = hole
        while child < (len - 1) / 2 {
            child = 2 * (child + 1)
            if before(a[first + child], a[first + child - 1]) { child -= 1 }
            a[first + hole] = a[first + child]
            hole = child
        }
        if len & 1 == 0 && child == (len - 2) / 2 {
            child = 2 * (child + 1)
            a[first + hole] = a[first + child - 1]
            hole = child - 1
        }
        var parent = (hole - 1) / 2
        while hole > top && before(a[first + parent], value) {
            a[first + hole] = a[first + parent]
            hole = parent
            parent = (hole - 1) / 2
        }
        a[first + hole] = value
    }
}

// MARK: Output head

/// `HiDreamImageOutEmbed`: `linear(LN(x)·(1 + scale) + shift)` with `(shift, scale)` = `adaLN_modulation(temb)`
/// (shift first), LayerNorm without affine, ε = 1e-6.
private struct HiDreamI1OutputHead: Sendable {
    /// `adaLN_modulation.1` `[2D, D]`.
    let modulation: Linear
    /// `linear` `[patch²·out_channels, D]`.
    let linear: Linear

    init(_ w: WeightScope, configuration c: HiDreamI1Configuration) {
        modulation = Linear(w["adaLN_modulation.1"], in: c.innerDim, out: 2 * c.innerDim)
        linear = Linear(w["linear"], in: c.innerDim, out: c.outputWidth)
    }

    /// The output tokens `[B, S, patch²·out_channels]`.
    func callAsFunction(_ x: Tensor, temb: Tensor) throws(TensorError) -> Tensor {
        let c = try modulationChunks(modulation, temb, count: 2)
        return try linear(layerNormModulated(x, eps: 1e-6, scale: c[1], shift: c[0]))
    }
}
