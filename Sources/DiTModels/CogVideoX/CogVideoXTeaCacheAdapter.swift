import TeaCache
import Tensors

/// CogVideoX's TeaCache state: two cached streams, the video and the text tokens (TeaCache4CogVideoX1.5
/// caches `previous_residual` and `previous_residual_encoder`); a skip adds both residuals.
extension CogVideoXState: BatchSelectableState {
    /// `[video tokens, text tokens]`. Assigning an array of another length leaves the state unchanged
    /// (`CachedTransformer` checks stream counts and shapes itself).
    public var streams: [Tensor] {
        get { [video, text] }
        set {
            guard newValue.count == 2 else { return }
            video = newValue[0]
            text = newValue[1]
        }
    }

    /// The batch size.
    public var batchSize: Int { video.shape[0] }

    /// The state of the batch elements `indices` (tokens and embeddings; the rotary tables are shared).
    public func selecting(batch indices: [Int]) throws -> CogVideoXState {
        var s = self
        s.video = try video.gatheringRows(indices)
        s.text = try text.gatheringRows(indices)
        s.emb = try emb.gatheringRows(indices)
        s.latentShape[0] = indices.count
        return s
    }
}

/// ``CogVideoXTransformer`` as a TeaCache ``DiffusionTransformer``.
///
/// - modulated input: the time embedding `emb` `[B, time_embed_dim]`, plus the ofs embedding when the
///   model has one (TeaCache4CogVideoX1.5's `emb`); it depends only on the timestep (and ofs).
/// - streams: `[video tokens, text tokens]` after the patch embedding; each residual is its stream after
///   the last block minus before the first. `norm_final`, `norm_out` and `proj_out` run on every call.
/// - counter: the standard one (first and last step computed).
extension CogVideoXTransformer: DiffusionTransformer {
    public typealias Input = CogVideoXInput
    public typealias State = CogVideoXState

    /// `emb` `[B, time_embed_dim]`.
    public func modulatedInput(_ state: CogVideoXState) throws -> Tensor { state.emb }
}

/// CogVideoX block by block (First-Block Cache): each block joins the two streams, runs on the joint
/// sequence and splits it again, so the streams read `[video, text]` after every block, as diffusers'
/// block hooks see `(hidden_states, encoder_hidden_states)`. `norm_final` lies outside the blocks, as in
/// diffusers, so ``finishBlocks(_:)`` does nothing.
extension CogVideoXTransformer: BlockwiseDiffusionTransformer {
    /// `num_layers` (the same for every state).
    public func blockCount(_ state: CogVideoXState) -> Int { blocks.count }
}

extension CogVideoXTransformer: MemoryBudgeted {}
