import TeaCache
import Tensors

/// FLUX's TeaCache state: the image tokens are the one cached stream; the text tokens, conditioning and
/// rotary tables ride along uncached (the output head only reads the image stream).
extension FluxState: BatchSelectableState {
    /// `[image tokens]`. The state has exactly one stream; assigning an array of another length leaves
    /// the state unchanged (`CachedTransformer` checks stream counts and shapes itself). Between
    /// single-stream blocks run one at a time the image tokens are read from (and written back as) the
    /// image part of the joint sequence.
    public var streams: [Tensor] {
        get {
            guard let joint else { return [image] }
            let l = text.shape[1]
            return [(try? joint.slice(axis: 1, l..<joint.shape[1])) ?? image]
        }
        set {
            guard newValue.count == 1 else { return }
            if let joint, let t = try? joint.slice(axis: 1, 0..<text.shape[1]) { text = t }
            joint = nil
            image = newValue[0]
        }
    }

    /// The batch size.
    public var batchSize: Int { image.shape[0] }

    /// The state of the batch elements `indices` (image, text and conditioning rows; the rotary tables
    /// are shared by the batch).
    public func selecting(batch indices: [Int]) throws -> FluxState {
        FluxState(image: try image.gatheringRows(indices), text: try text.gatheringRows(indices),
                  temb: try temb.gatheringRows(indices), rope: rope, joint: try joint?.gatheringRows(indices))
    }
}

/// FLUX as a TeaCache ``DiffusionTransformer``: `prepare` embeds, the modulated input is
/// `transformer_blocks[0].norm1(h_in, temb)[0]`, `runBlocks` runs both block stacks (so the cached residual
/// is the image-token change across all of them), `outputHead` applies `norm_out` and `proj_out`.
extension FluxTransformer: DiffusionTransformer {
    public typealias Input = FluxInput
    public typealias State = FluxState
}

/// FLUX block by block (First-Block Cache): the double-stream blocks, then the single-stream blocks on the
/// joint sequence, which the last one splits back into the two streams.
extension FluxTransformer: BlockwiseDiffusionTransformer {
    public func blockCount(_ state: FluxState) -> Int { doubleBlocks.count + singleBlocks.count }

    public func runBlock(_ index: Int, _ p: inout FluxState) throws {
        guard (0..<blockCount(p)).contains(index) else {
            throw TensorError.invalidArgument(operation: "FLUX block", reason: "block \(index) is outside 0..<\(blockCount(p))")
        }
        if index < doubleBlocks.count {
            try doubleBlocks[index](image: &p.image, text: &p.text, temb: p.temb, rope: p.rope)
            return
        }
        let j = index - doubleBlocks.count
        var joint = try p.joint ?? Tensor.concatenate([p.text, p.image], axis: 1)
        try singleBlocks[j](&joint, temb: p.temb, rope: p.rope)
        if j == singleBlocks.count - 1 {
            let l = p.text.shape[1]
            let parts = try joint.split(sizes: [l, joint.shape[1] - l], axis: 1)
            (p.text, p.image, p.joint) = (parts[0], parts[1], nil)
        } else {
            p.joint = joint
        }
    }
}

extension FluxTransformer: MemoryBudgeted {}
