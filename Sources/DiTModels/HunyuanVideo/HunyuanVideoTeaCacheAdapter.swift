import TeaCache
import Tensors

/// HunyuanVideo's TeaCache state: the image tokens are the one cached stream; the text tokens, the
/// conditioning, the rotary tables and the key mask ride along uncached (the output head only reads the
/// image stream), as TeaCache4HunyuanVideo caches `img` alone.
extension HunyuanVideoState: BatchSelectableState {
    /// `[image tokens]`. The state has exactly one stream; assigning an array of another length leaves
    /// the state unchanged (`CachedTransformer` checks stream counts and shapes itself).
    public var streams: [Tensor] {
        get { [image] }
        set { if newValue.count == 1 { image = newValue[0] } }
    }

    /// The batch size.
    public var batchSize: Int { image.shape[0] }

    /// The state of the batch elements `indices` (tokens, conditioning and key-mask rows; the rotary tables
    /// are shared by the batch).
    public func selecting(batch indices: [Int]) throws -> HunyuanVideoState {
        var s = self
        s.image = try image.gatheringRows(indices)
        s.text = try text.gatheringRows(indices)
        s.context.temb = try context.temb.gatheringRows(indices)
        s.context.tokenReplaceEmb = try context.tokenReplaceEmb.map { t throws(TensorError) in try t.gatheringRows(indices) }
        s.context.keyMask = try context.keyMask.map { t throws(TensorError) in try t.gatheringRows(indices) }
        return s
    }
}

/// HunyuanVideo as a TeaCache ``DiffusionTransformer``: `prepare` embeds (and refines the text), the
/// modulated input is `transformer_blocks[0].norm1(h_in, temb)[0]` (the reference's
/// `modulate(img_norm1(img), shift1, scale1)` of double block 0), `runBlocks` runs the dual- and the
/// single-stream stacks (so the cached residual is the image-token change across all of them), and
/// `outputHead` applies `norm_out`, `proj_out` and the unpatchify.
extension HunyuanVideoTransformer: DiffusionTransformer {
    public typealias Input = HunyuanVideoInput
    public typealias State = HunyuanVideoState
}

/// HunyuanVideo block by block (First-Block Cache): the dual-stream blocks, then the single-stream ones,
/// as one index range (`num_layers + num_single_layers` blocks). `norm_out` lies outside the cached span
/// (TeaCache4HunyuanVideo's residual and diffusers' block hooks both end at the last single block), so
/// ``finishBlocks(_:)`` does nothing and ``HunyuanVideoTransformer/outputHead(_:)`` applies it.
extension HunyuanVideoTransformer: BlockwiseDiffusionTransformer {
    public func blockCount(_ state: HunyuanVideoState) -> Int { blockCount }
    public func runBlock(_ index: Int, _ state: inout HunyuanVideoState) throws { try runBlock(at: index, &state) }
}

extension HunyuanVideoTransformer: MemoryBudgeted {}
