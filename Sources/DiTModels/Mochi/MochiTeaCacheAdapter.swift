import TeaCache
import Tensors

extension MochiState: BatchSelectableState {
    /// `[visual tokens]`: the one stream TeaCache4Mochi caches. Its residual is `norm_out(blocks(h_in),
    /// temb) − h_in`, so on a skip the output head (`proj_out`) reads `h_in + residual` directly. The
    /// caption tokens are not cached (nothing after the blocks reads them). Assigning an array of another
    /// length leaves the state unchanged (`CachedTransformer` checks stream counts and shapes itself).
    public var streams: [Tensor] {
        get { [tokens] }
        set { if newValue.count == 1 { tokens = newValue[0] } }
    }

    /// The batch size.
    public var batchSize: Int { tokens.shape[0] }

    /// The state of the batch elements `indices` (visual and caption tokens, conditioning and mask rows;
    /// the rotary tables are shared by the batch).
    public func selecting(batch indices: [Int]) throws -> MochiState {
        var s = self
        s.tokens = try tokens.gatheringRows(indices)
        s.text = try text.gatheringRows(indices)
        s.temb = try temb.gatheringRows(indices)
        s.mask = mask.selecting(batch: indices)
        return s
    }
}

/// ``MochiTransformer`` as a TeaCache ``DiffusionTransformer`` (TeaCache4Mochi):
///
/// - modulated input: `transformer_blocks[0].norm1(h_in, temb)[0]` = `RMSNorm(h_in)·(1 + scale_msa)`;
/// - streams: `[visual tokens]`; `runBlocks` ends after `norm_out`, so the residual includes the final
///   norm and a skip reuses the `temb` of the last computed step for it, as the reference does;
/// - counter: the standard rule (first and last step computed); timestep `(1 − σ)·1000`, `v = −output`.
extension MochiTransformer: DiffusionTransformer {
    public typealias Input = MochiInput
    public typealias State = MochiState
}

/// Mochi block by block (First-Block Cache): the blocks, then `norm_out`, which lies outside the blocks as
/// in diffusers (the span First-Block Cache caches is the blocks' alone).
extension MochiTransformer: BlockwiseDiffusionTransformer {
    public func blockCount(_ state: MochiState) -> Int { blocks.count }
    public func runBlock(_ index: Int, _ state: inout MochiState) throws { try runBlock(at: index, &state) }
    public func finishBlocks(_ state: inout MochiState) throws { try applyOutputNorm(&state) }
}

extension MochiTransformer: MemoryBudgeted {}
