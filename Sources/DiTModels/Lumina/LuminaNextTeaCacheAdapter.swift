import TeaCache
import Tensors

/// Lumina-Next's TeaCache state: the image tokens are the one cached stream (the caption enters through
/// cross-attention inside the blocks and rides along uncached).
extension LuminaNextState: BatchSelectableState {
    /// `[image tokens]`. Assigning an array of another length leaves the state unchanged
    /// (`CachedTransformer` checks stream counts and shapes itself).
    public var streams: [Tensor] {
        get { [tokens] }
        set { if newValue.count == 1 { tokens = newValue[0] } }
    }

    /// The batch size.
    public var batchSize: Int { tokens.shape[0] }

    /// The state of the batch elements `indices` (tokens, conditioning, captions and masks; the rotary
    /// tables and the attention scale are shared by the batch).
    public func selecting(batch indices: [Int]) throws -> LuminaNextState {
        var s = self
        s.tokens = try tokens.gatheringRows(indices)
        s.context.temb = try context.temb.gatheringRows(indices)
        s.context.caption = try context.caption.gatheringRows(indices)
        s.context.captionMask = try context.captionMask.gatheringRows(indices)
        return s
    }
}

/// Lumina-Next as a TeaCache ``DiffusionTransformer`` (TeaCache4Lumina-T2X): `prepare` embeds, the
/// modulated input is `layers[0].norm1(h_in, temb)[0]`, `runBlocks` runs every layer (the cached residual
/// is the image-token change across all of them), `outputHead` applies `norm_out` and unpatchifies.
/// One cache entry per CFG branch, the standard counter.
extension LuminaNextTransformer: DiffusionTransformer {
    public typealias Input = LuminaNextInput
    public typealias State = LuminaNextState
}

/// Lumina-Next block by block (First-Block Cache): `layers`, nothing after them (`norm_out` lies outside
/// the cached span, as diffusers' hooks see it).
extension LuminaNextTransformer: BlockwiseDiffusionTransformer {
    public func blockCount(_ state: LuminaNextState) -> Int { layers.count }
    public func runBlock(_ index: Int, _ state: inout LuminaNextState) throws {
        state.tokens = try layers[index](state.tokens, state.context)
    }
}

extension LuminaNextTransformer: MemoryBudgeted {}
