import TeaCache
import Tensors

/// FLUX's TeaCache state: the image tokens are the one cached stream; the text tokens, conditioning and
/// rotary tables ride along uncached (the output head only reads the image stream).
extension FluxTransformer.Prepared: BatchSelectableState {
    /// `[image tokens]`. The FLUX state has exactly one stream; assigning an array of another length
    /// leaves the state unchanged (``CachedTransformer`` checks stream counts and shapes itself).
    public var streams: [Tensor] {
        get { [image] }
        set { if newValue.count == 1 { image = newValue[0] } }
    }

    /// The batch size.
    public var batchSize: Int { image.shape[0] }

    /// The state of the batch elements `indices` (image, text and conditioning rows; the rotary tables
    /// are shared by the batch).
    public func selecting(batch indices: [Int]) throws -> FluxTransformer.Prepared {
        func rows(_ t: Tensor) throws -> Tensor {
            try Tensor.concatenate(indices.map { i throws(TensorError) in try t.slice(axis: 0, i..<(i + 1)) }, axis: 0)
        }
        guard !indices.isEmpty else {
            throw TensorError.invalidArgument(operation: "FLUX batch selection", reason: "no batch elements selected")
        }
        return FluxTransformer.Prepared(image: try rows(image), text: try rows(text), temb: try rows(temb), rope: rope)
    }
}

/// FLUX as a TeaCache ``DiffusionTransformer``: `prepare` embeds, the modulated input is
/// `transformer_blocks[0].norm1(h_in, temb)[0]`, `runBlocks` runs both block stacks (so the cached residual
/// is the image-token change across all of them), `outputHead` applies `norm_out` and `proj_out`.
extension FluxTransformer: DiffusionTransformer {
    public typealias Input = FluxInputs
    public typealias State = Prepared

    /// TeaCache4FLUX's preset: FLUX coefficients, default threshold 0.6, and the published
    /// threshold → speedup table (0.25 ≈ 1.5×, 0.4 ≈ 1.8×, 0.6 ≈ 2.0×, 0.8 ≈ 2.25×).
    public static var fluxPreset: TeaCachePreset { .flux }

    /// TeaCache4TangoFlux's preset (the FLUX coefficients).
    public static var tangoFluxPreset: TeaCachePreset { .tangoFlux }
}
