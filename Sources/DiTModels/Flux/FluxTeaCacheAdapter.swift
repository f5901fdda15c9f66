import TeaCache
import Tensors

/// FLUX's TeaCache state: the image tokens are the one cached stream; the text tokens, conditioning and
/// rotary tables ride along uncached (the output head only reads the image stream).
extension FluxState: BatchSelectableState {
    /// `[image tokens]`. The state has exactly one stream; assigning an array of another length leaves
    /// the state unchanged (``CachedTransformer`` checks stream counts and shapes itself).
    public var streams: [Tensor] {
        get { [image] }
        set { if newValue.count == 1 { image = newValue[0] } }
    }

    /// The batch size.
    public var batchSize: Int { image.shape[0] }

    /// The state of the batch elements `indices` (image, text and conditioning rows; the rotary tables
    /// are shared by the batch).
    public func selecting(batch indices: [Int]) throws -> FluxState {
        FluxState(image: try image.gatheringRows(indices), text: try text.gatheringRows(indices),
                  temb: try temb.gatheringRows(indices), rope: rope)
    }
}

/// FLUX as a TeaCache ``DiffusionTransformer``: `prepare` embeds, the modulated input is
/// `transformer_blocks[0].norm1(h_in, temb)[0]`, `runBlocks` runs both block stacks (so the cached residual
/// is the image-token change across all of them), `outputHead` applies `norm_out` and `proj_out`.
extension FluxTransformer: DiffusionTransformer {
    public typealias Input = FluxInput
    public typealias State = FluxState
}
