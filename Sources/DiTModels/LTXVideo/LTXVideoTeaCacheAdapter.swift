import TeaCache
import Tensors

extension LTXVideoState: BatchSelectableState {
    /// `[video tokens]`: the only stream TeaCache caches for LTX-Video (the caption enters through
    /// cross-attention and is recomputed on every call). Assigning an array of another length leaves the
    /// state unchanged (`CachedTransformer` checks stream counts and shapes itself).
    public var streams: [Tensor] {
        get { [tokens] }
        set { if newValue.count == 1 { tokens = newValue[0] } }
    }

    /// The batch size.
    public var batchSize: Int { tokens.shape[0] }

    /// The state of the batch elements `indices` (rotary tables shared by the batch stay shared).
    public func selecting(batch indices: [Int]) throws -> LTXVideoState {
        var s = self
        s.tokens = try tokens.gatheringRows(indices)
        s.embeddedTimestep = try embeddedTimestep.gatheringRows(indices)
        s.blocks.temb = try blocks.temb.gatheringRows(indices)
        s.blocks.context = try blocks.context.gatheringRows(indices)
        s.blocks.attentionBias = try blocks.attentionBias.map { t throws(TensorError) in try t.gatheringRows(indices) }
        s.blocks.rotary = try blocks.rotary.selecting(batch: indices)
        return s
    }
}

/// ``LTXVideoTransformer`` as a TeaCache ``DiffusionTransformer`` (TeaCache4LTX-Video, spec §2.3.10).
///
/// - modulated input: block 0's `norm1(h_in)·(1 + scale_msa) + shift_msa` with (shift_msa, scale_msa)
///   from `scale_shift_table + temb` (``LTXVideoTransformer/modulatedInput(_:)``).
/// - stream: `[video tokens]`; the residual **includes the output norm and its modulation**:
///   `norm_out(blocks(h_in))·(1 + scale) + shift − h_in`, so ``LTXVideoTransformer/runBlocks(_:)`` ends
///   with that norm and a skipped call goes straight to `proj_out` (``LTXVideoTransformer/outputHead(_:)``).
/// - counter: the standard one (first and last step computed).
extension LTXVideoTransformer: DiffusionTransformer {
    public typealias Input = LTXVideoInput
    public typealias State = LTXVideoState
}

/// LTX-Video block by block (First-Block Cache): the transformer blocks, then the output norm and its
/// modulation, which lie outside the blocks as in diffusers (the span First-Block Cache caches is the
/// blocks' alone).
extension LTXVideoTransformer: BlockwiseDiffusionTransformer {
    public func blockCount(_ state: LTXVideoState) -> Int { blocks.count }

    public func runBlock(_ index: Int, _ state: inout LTXVideoState) throws {
        guard blocks.indices.contains(index) else {
            throw TensorError.invalidArgument(operation: "LTX-Video block", reason: "block \(index) is outside 0..<\(blocks.count)")
        }
        state.tokens = try blocks[index](state.tokens, state.blocks)
    }

    public func finishBlocks(_ state: inout LTXVideoState) throws { try applyOutputNorm(&state) }
}

extension LTXVideoTransformer: MemoryBudgeted {}
