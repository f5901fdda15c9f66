import Foundation
import Tensors

/// The arguments of one `ConsisIDTransformer3DModel.forward` call, by their diffusers names:
/// `hidden_states` `[B, F, in_channels, H, W]` — the noisy latent and the image latents concatenated on
/// the channel axis, frames before channels —, `encoder_hidden_states` `[B, L, text_embed_dim]`,
/// `timestep` `[B]` or `[1]` (0…1000 scale), and for a model with identity layers `id_cond`
/// `[B_id, LFE_id_dim]` and `id_vit_hidden`, one `[B_id, N, LFE_vit_dim]` tensor per ViT scale
/// (`B_id` = B, or 1 for one identity shared by the batch, as the pipeline passes it with batched CFG).
///
/// The rotary table is not an argument: the model builds it from the latent size as
/// `ConsisIDPipeline._prepare_rotary_positional_embeddings` does (the CogVideoX 1.0 crop-region grid).
/// `timestep_cond` is not supported (the model has no `cond_proj`).
public struct ConsisIDInput: Sendable {
    /// `hidden_states`, `encoder_hidden_states`, `timestep`.
    public var hiddenStates: Tensor, encoderHiddenStates: Tensor, timestep: Tensor
    /// `id_cond` (identity models only; ignored otherwise, as diffusers ignores it).
    public var idCond: Tensor?
    /// `id_vit_hidden`: the first `LFE_num_scale` tensors are read (identity models only).
    public var idVitHidden: [Tensor]?

    /// Bundles the arguments.
    public init(hiddenStates: Tensor, encoderHiddenStates: Tensor, timestep: Tensor, idCond: Tensor? = nil,
                idVitHidden: [Tensor]? = nil) {
        (self.hiddenStates, self.encoderHiddenStates, self.timestep) = (hiddenStates, encoderHiddenStates, timestep)
        (self.idCond, self.idVitHidden) = (idCond, idVitHidden)
    }
}

/// Everything computed before the block stack for one call: the CogVideoX backbone's state (video and
/// text tokens, `emb`, rotary tables) and the face embedding the cross-attentions read.
public struct ConsisIDState: Sendable {
    /// The backbone's state: the two token streams as they go through the blocks.
    public var backbone: CogVideoXState
    /// `valid_face_emb` `[B_id, LFE_num_querie, LFE_output_dim]`, or nil for a model without identity layers.
    public var faceEmbedding: Tensor?
}

/// diffusers 0.42.1 `ConsisIDTransformer3DModel` on the CPU in float32: the CogVideoX 1.0 network
/// (``CogVideoXTransformer``: patch, time and rotary embeddings, `CogVideoXBlock`s on the joint
/// `[text; video]` sequence, `norm_final`, `norm_out`, `proj_out`) with, when `is_train_face`, the
/// identity layers: the local facial extractor turns `id_cond` and `id_vit_hidden` into the face
/// embedding, and after every block `i` with `i % cross_attn_interval == 0` the video tokens get
/// `local_face_scale · perceiver_cross_attention[i / interval](face, video)`.
///
/// The forward is split for TeaCache: ``prepare(_:)`` (the extractor and the backbone's embeddings),
/// ``runBlocks(_:)`` (blocks and cross-attentions), ``outputHead(_:)`` (the backbone's head).
///
/// Differences from diffusers: as ``CogVideoXTransformer`` (latent sizes not divisible by the patch are
/// rejected, `timestep_cond` is not supported); missing identity inputs for a model with identity layers
/// are a typed error (diffusers fails on `None`), and so are fewer than `LFE_num_scale` ViT tensors.
public struct ConsisIDTransformer: Sendable {
    /// The validated configuration.
    public let configuration: ConsisIDConfiguration
    /// The CogVideoX network every ConsisID block runs on.
    var backbone: CogVideoXTransformer
    /// `local_facial_extractor` (identity models), or nil.
    private let faceExtractor: LocalFacialExtractor?
    /// `perceiver_cross_attention` (`num_layers // cross_attn_interval` of them with identity layers).
    private let crossAttentions: [PerceiverAttention]

    /// The memory a forward may plan to use: ``prepare(_:)`` estimates the activations of the input shapes
    /// (``ConsisIDConfiguration/activationBytesEstimate(batch:videoTokens:textTokens:vitTokens:faceBatch:)``)
    /// and refuses inputs beyond it with `TensorError.memoryBudgetExceeded`.
    public var memoryBudget: MemoryBudget {
        get { backbone.memoryBudget }
        set { backbone.memoryBudget = newValue }
    }

    /// Builds the model, taking every parameter from `weights` (called by ``ConsisIDFamily``'s loading
    /// functions, which check the weights afterwards).
    init(configuration c: ConsisIDConfiguration, weights w: WeightScope) {
        configuration = c
        backbone = CogVideoXTransformer(configuration: c.backbone, weights: w)
        faceExtractor = c.isTrainFace ? LocalFacialExtractor(w["local_facial_extractor"], configuration: c) : nil
        crossAttentions = (0..<c.crossAttentionCount).map {
            PerceiverAttention(w["perceiver_cross_attention"][$0], dim: c.innerDim, contextDim: c.crossAttnKVDim,
                               headDim: c.crossAttnDimHead, heads: c.crossAttnNumHeads, latentsInKeys: false)
        }
    }

    // MARK: - Forward parts

    /// The face embedding and the backbone's time, patch and rotary embeddings: everything before the
    /// first block.
    /// - Throws: `TensorError` naming the argument that is wrong and what it must be.
    public func prepare(_ input: ConsisIDInput) throws(TensorError) -> ConsisIDState {
        let identity = try identityArguments(input)
        let x = input.hiddenStates, text = input.encoderHiddenStates, p = configuration.backbone.patchSize
        if x.rank == 5, text.rank == 3 {
            let tokens = x.shape[1] * (x.shape[3] / p) * (x.shape[4] / p)
            let n = identity?.vit.map { $0.shape[1] }.max() ?? 0
            try memoryBudget.check("ConsisID forward of batch \(x.shape[0]), \(tokens) video + \(text.shape[1]) text tokens",
                                   bytes: configuration.activationBytes(batch: x.shape[0], videoTokens: tokens, textTokens: text.shape[1],
                                                                        vitTokens: n, faceBatch: identity?.idCond.shape[0] ?? 0))
        }
        var face: Tensor?
        if let identity, let faceExtractor { face = try faceExtractor(idCond: identity.idCond, vitHidden: identity.vit) }
        let state = try backbone.prepare(CogVideoXInput(hiddenStates: x, encoderHiddenStates: text, timestep: input.timestep))
        return ConsisIDState(backbone: state, faceEmbedding: face)
    }

    /// Runs every block in order, each followed by its cross-attention where there is one.
    public func runBlocks(_ state: inout ConsisIDState) throws(TensorError) {
        for i in 0..<configuration.backbone.numLayers { try runBlock(i, &state) }
    }

    /// Runs block `index` (`0 ..< num_layers`) on the state's two streams, then, when `index` is a multiple
    /// of `cross_attn_interval` and the model has identity layers, adds the scaled cross-attention of the
    /// video tokens to the face embedding.
    /// - Throws: `TensorError` for an index outside the stack.
    public func runBlock(_ index: Int, _ state: inout ConsisIDState) throws(TensorError) {
        try backbone.runBlock(index, &state.backbone)
        guard let face = state.faceEmbedding, index % configuration.crossAttnInterval == 0 else { return }
        let video = state.backbone.video
        let attended = try crossAttentions[index / configuration.crossAttnInterval](context: face, video)
        state.backbone.video = try video + Float(configuration.localFaceScale) * attended
    }

    /// `norm_final`, `norm_out`, `proj_out` and unpatchify to `[B, F, out_channels, H, W]` (the backbone's head).
    public func outputHead(_ state: ConsisIDState) throws(TensorError) -> Tensor {
        try backbone.outputHead(state.backbone)
    }

    /// The full forward: `output` of diffusers' `forward(..., return_dict=False)[0]`.
    public func callAsFunction(_ input: ConsisIDInput) throws(TensorError) -> Tensor {
        var state = try prepare(input)
        try runBlocks(&state)
        return try outputHead(state)
    }

    // MARK: - Input checks

    /// `id_cond` and the first `LFE_num_scale` ViT tensors of an identity model (checked), or nil for a
    /// model without identity layers (diffusers ignores the arguments then).
    private func identityArguments(_ input: ConsisIDInput) throws(TensorError) -> (idCond: Tensor, vit: [Tensor])? {
        let c = configuration
        guard c.isTrainFace else { return nil }
        func fail(_ reason: String) -> TensorError { .invalidArgument(operation: "ConsisID forward", reason: reason) }
        guard let idCond = input.idCond, let vitAll = input.idVitHidden else {
            throw fail("this model has identity layers (is_train_face): pass id_cond and id_vit_hidden")
        }
        let b = input.hiddenStates.rank >= 1 ? input.hiddenStates.shape[0] : 0
        guard idCond.rank == 2, idCond.shape[1] == c.lfeIdDim, idCond.shape[0] == b || idCond.shape[0] == 1 else {
            throw .shapeMismatch(operation: "ConsisID forward", shapes: [idCond.shape],
                                 reason: "id_cond must be [B = \(b) or 1, LFE_id_dim = \(c.lfeIdDim)]")
        }
        guard vitAll.count >= c.lfeNumScale else {
            throw fail("id_vit_hidden holds \(vitAll.count) tensors; the extractor reads LFE_num_scale = \(c.lfeNumScale)")
        }
        let vit = Array(vitAll.prefix(c.lfeNumScale))
        let fb = idCond.shape[0]
        for (i, t) in vit.enumerated() where !(t.rank == 3 && t.shape[0] == fb && t.shape[1] > 0 && t.shape[2] == c.lfeVitDim) {
            throw .shapeMismatch(operation: "ConsisID forward", shapes: [t.shape],
                                 reason: "id_vit_hidden[\(i)] must be [B_id = \(fb) (id_cond's batch), N > 0, LFE_vit_dim = \(c.lfeVitDim)]")
        }
        for (name, t) in [("id_cond", idCond)] + vit.enumerated().map({ ("id_vit_hidden[\($0)]", $1) }) where !t.isFinite {
            throw fail("\(name) holds NaN or infinite values")
        }
        return (idCond, vit)
    }
}

// MARK: - Identity layers

/// diffusers' `PerceiverAttention` (the extractor's, `latentsInKeys`: keys and values over
/// `[norm1(context); norm2(latents)]`) and `PerceiverCrossAttention` (the blocks', keys and values over
/// `norm1(context)` only): queries `to_q(norm2(x))`, keys and values the two halves of `to_kv`, softmax
/// attention with scale `1/√head_dim` (diffusers scales q and k by its fourth root each, the same
/// product), `to_out`. No projection has a bias; both norms are affine LayerNorms (ε = 1e-5).
private struct PerceiverAttention: Sendable {
    /// `norm1` (over the context), `norm2` (over the queries' input).
    let norm1: AffineLayerNorm, norm2: AffineLayerNorm
    /// `to_q`, `to_kv` (keys then values), `to_out`.
    let toQ: Linear, toKV: Linear, toOut: Linear
    /// Attention heads, and whether the keys include the normalised queries' input.
    let heads: Int, latentsInKeys: Bool

    /// Takes `norm1`, `norm2`, `to_q`, `to_kv` and `to_out` of the scope.
    init(_ w: WeightScope, dim: Int, contextDim: Int, headDim: Int, heads: Int, latentsInKeys: Bool) {
        let inner = headDim * heads
        norm1 = AffineLayerNorm(w["norm1"], dim: contextDim, eps: 1e-5)
        norm2 = AffineLayerNorm(w["norm2"], dim: dim, eps: 1e-5)
        toQ = Linear(w["to_q"], in: dim, out: inner, bias: false)
        toKV = Linear(w["to_kv"], in: contextDim, out: 2 * inner, bias: false)
        toOut = Linear(w["to_out"], in: inner, out: dim, bias: false)
        (self.heads, self.latentsInKeys) = (heads, latentsInKeys)
    }

    /// Attends `x` `[B, S, dim]` to `context` `[B or 1, N, contextDim]` (a context of batch 1 serves
    /// every row, as torch broadcasts it); returns `[B, S, dim]`.
    func callAsFunction(context: Tensor, _ x: Tensor) throws(TensorError) -> Tensor {
        let c = try norm1(context), h = try norm2(x)
        let kv = try toKV(latentsInKeys ? Tensor.concatenate([c, h], axis: 1) : c).chunked(2, axis: 2)
        var (k, v) = (kv[0], kv[1])
        if k.shape[0] != h.shape[0] {
            let rows = Array(repeating: 0, count: h.shape[0])
            (k, v) = (try k.gatheringRows(rows), try v.gatheringRows(rows))
        }
        return try toOut(attention(query: toQ(h), key: k, value: v, heads: heads, precision: toOut.weight.precision))
    }
}

/// diffusers' `LocalFacialExtractor`: learned query latents, joined by the identity tokens
/// (`id_embedding_mapping(id_cond)` reshaped to `LFE_num_id_token` rows); for each ViT scale `i` the
/// context `[identity tokens; mapping_i(id_vit_hidden[i])]` and `LFE_depth / LFE_num_scale` perceiver
/// layers (`latents += attn(context, latents)`, `latents += ff(latents)`); the query rows, times `proj_out`.
private struct LocalFacialExtractor: Sendable {
    /// `latents` `[1, LFE_num_querie, LFE_vit_dim]`.
    let latents: Tensor
    /// `proj_out` `[LFE_vit_dim, LFE_output_dim]` (a matrix multiplied on the right), as a layer.
    let projOut: Linear
    /// `layers.<i>.0` and `layers.<i>.1`.
    let layers: [(attention: PerceiverAttention, feedForward: FeedForwardLayer)]
    /// `mapping_<i>` per scale, and `id_embedding_mapping`.
    let mappings: [MappingMLP], idMapping: MappingMLP
    /// `LFE_num_id_token`, `LFE_vit_dim`, the layers per scale.
    let idTokens: Int, vitDim: Int, layersPerScale: Int

    /// Takes every parameter of the scope (`local_facial_extractor`).
    init(_ w: WeightScope, configuration c: ConsisIDConfiguration) {
        let v = c.lfeVitDim
        latents = w["latents"].tensor(shape: [1, c.lfeNumQueries, v])
        let stored = w["proj_out"].tensor(shape: [v, c.lfeOutputDim])
        // Only a loader's placeholder for a missing or mis-shaped tensor fails to transpose; the load reports it.
        projOut = Linear(weight: (try? stored.transposed(0, 1)) ?? stored, bias: nil)
        layers = (0..<c.lfeDepth).map { i in
            (PerceiverAttention(w["layers"][i]["0"], dim: v, contextDim: v, headDim: c.lfeDimHead, heads: c.lfeNumHeads,
                                latentsInKeys: true),
             FeedForwardLayer(w["layers"][i]["1"], dim: v, mult: c.lfeFfMult))
        }
        mappings = (0..<c.lfeNumScale).map { MappingMLP(w["mapping_\($0)"], in: v, width: v, out: v) }
        idMapping = MappingMLP(w["id_embedding_mapping"], in: c.lfeIdDim, width: v, out: v * c.lfeNumIdToken)
        (idTokens, vitDim, layersPerScale) = (c.lfeNumIdToken, v, c.lfeLayersPerScale)
    }

    /// `valid_face_emb` `[B_id, LFE_num_querie, LFE_output_dim]` of `id_cond` `[B_id, LFE_id_dim]` and one
    /// ViT tensor `[B_id, N, LFE_vit_dim]` per scale (shapes checked).
    func callAsFunction(idCond: Tensor, vitHidden: [Tensor]) throws(TensorError) -> Tensor {
        let b = idCond.shape[0], queries = latents.shape[1]
        let ids = try idMapping(idCond).reshaped([b, idTokens, vitDim])
        var x = try Tensor.concatenate([latents.gatheringRows(Array(repeating: 0, count: b)), ids], axis: 1)
        for (scale, hidden) in vitHidden.enumerated() {
            let context = try Tensor.concatenate([ids, mappings[scale](hidden)], axis: 1)
            for (attention, feedForward) in layers[(scale * layersPerScale)..<((scale + 1) * layersPerScale)] {
                x = try attention(context: context, x) + x
                x = try feedForward(x) + x
            }
        }
        return try projOut(x.slice(axis: 1, 0..<queries))
    }
}

/// The extractor's feed-forward `nn.Sequential(LayerNorm, Linear, GELU, Linear)` (indices 0, 1, 3; exact
/// GELU; no biases).
private struct FeedForwardLayer: Sendable {
    let norm: AffineLayerNorm, up: Linear, down: Linear

    init(_ w: WeightScope, dim: Int, mult: Int) {
        norm = AffineLayerNorm(w["0"], dim: dim, eps: 1e-5)
        up = Linear(w["1"], in: dim, out: dim * mult, bias: false)
        down = Linear(w["3"], in: dim * mult, out: dim, bias: false)
    }

    func callAsFunction(_ x: Tensor) throws(TensorError) -> Tensor {
        try down(up(norm(x), activation: .gelu(.none)))
    }
}

/// The extractor's `mapping_<i>` and `id_embedding_mapping`: `nn.Sequential(Linear, LayerNorm, LeakyReLU,
/// Linear, LayerNorm, LeakyReLU, Linear)` (indices 0, 1, 3, 4, 6; biases; LeakyReLU slope 0.01).
private struct MappingMLP: Sendable {
    let first: Linear, norm1: AffineLayerNorm, second: Linear, norm2: AffineLayerNorm, last: Linear

    init(_ w: WeightScope, in inFeatures: Int, width: Int, out: Int) {
        first = Linear(w["0"], in: inFeatures, out: width)
        norm1 = AffineLayerNorm(w["1"], dim: width, eps: 1e-5)
        second = Linear(w["3"], in: width, out: width)
        norm2 = AffineLayerNorm(w["4"], dim: width, eps: 1e-5)
        last = Linear(w["6"], in: width, out: out)
    }

    func callAsFunction(_ x: Tensor) throws(TensorError) -> Tensor {
        let h = try Self.leakyReLU(norm1(first(x)))
        return try last(Self.leakyReLU(norm2(second(h))))
    }

    /// `nn.LeakyReLU()`: `x` for `x ≥ 0`, `0.01·x` below.
    static func leakyReLU(_ x: Tensor) -> Tensor {
        x.mapVector { $0.replacing(with: $0 * 0.01, where: $0 .< 0) }
    }
}
