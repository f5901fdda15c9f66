import Foundation
import TeaCache
import Tensors

// MARK: Model

/// FLUX.1 and TangoFlux (diffusers `FluxTransformer2DModel`) in the registry: loading, sampling
/// conventions (timestep = sigma, distilled guidance 3.5 embedded, no CFG), presets, the benchmark shape
/// and the fixture plug-in.
///
/// Both fixture families use the same class; a folder without a `family` field is named `flux` when its
/// config embeds guidance and `tangoflux` otherwise. Fixture arguments are diffusers' forward arguments:
/// `hidden_states`, `encoder_hidden_states`, `pooled_projections`, `timestep`, `img_ids`, `txt_ids` and,
/// with guidance, `guidance`.
public enum FluxFamily: DiTFamilyHarness {
    public typealias Configuration = FluxConfiguration
    public typealias Model = FluxTransformer

    public static let name = "flux"
    public static let summary = "FLUX-shaped DiT (FluxTransformer2DModel), timestep = sigma, guidance 3.5"

    public static func makeModel(_ configuration: FluxConfiguration, weights: WeightScope) throws(ModelLoadError) -> FluxTransformer {
        FluxTransformer(configuration: configuration, weights: weights)
    }

    /// The §6 taper of the timestep and guidance MLPs' first layers, `u = 1000 / steps`.
    public static func randomWeightAdjustment(_ configuration: FluxConfiguration, steps: Int) -> WeightAdjustment? {
        let tapered: Set<String> = ["time_text_embed.timestep_embedder.linear_1.weight",
                                    "time_text_embed.guidance_embedder.linear_1.weight"]
        let frequencies = sinusoidalColumnFrequencies(dim: FluxConfiguration.timestepChannels, downscaleFreqShift: 0)
        let u = Double(FluxTimeTextEmbedding.valueScale) / Double(steps)
        return { name, t in
            if tapered.contains(name) { taperTimestepColumns(&t, frequencies: frequencies, stepSize: u) }
        }
    }

    // MARK: Sampling conventions and presets

    public static let timestepConvention = TimestepConvention.sigma
    /// The distilled guidance value FLUX.1-dev pipelines embed.
    public static let embeddedGuidance: Float = 3.5
    public static var presets: [TeaCachePreset] { [.flux, .tangoFlux] }
    public static var magCachePresets: [MagCachePreset] { [.flux] }
}

/// The reference repository's FLUX and TangoFlux coefficients (ali-vilab/TeaCache @ 7c10efc, copied
/// character for character from teacache-spec.md §2.2) and its published thresholds and speedups.
extension TeaCachePreset {
    static let fluxCoefficients = [4.98651651e+02, -2.83781631e+02, 5.58554382e+01, -3.82021401e+00, 2.64230861e-01]
    static let adaLNZeroModulatedInput =
        "transformer_blocks[0].norm1(h_in, emb=temb)[0] (LayerNorm(x)·(1+scale_msa)+shift_msa, image tokens)"

    /// FLUX.1-dev. Default δ 0.6 (0.25 → 1.5×, 0.4 → 1.8×, 0.6 → 2.0×, 0.8 → 2.25×).
    public static let flux = TeaCachePreset(
        reference: "flux", fluxCoefficients, defaultThreshold: 0.6,
        speedups: [(0.25, 1.5), (0.4, 1.8), (0.6, 2.0), (0.8, 2.25)],
        modulatedInput: adaLNZeroModulatedInput, provenance: "TeaCache4FLUX/teacache_flux.py")

    /// TangoFlux (FLUX coefficients). Default δ 0.25.
    public static let tangoFlux = TeaCachePreset(
        reference: "tangoflux", fluxCoefficients, defaultThreshold: 0.25, speedups: [(0.25, 1.7), (0.4, 2.1)],
        modulatedInput: adaLNZeroModulatedInput + " (audio tokens)",
        provenance: "TeaCache4TangoFlux/teacache_tango_flux.py")
}

/// The MagCache ratios diffusers 0.42.1 ships for FLUX.1 (`diffusers.hooks.mag_cache.FLUX_MAG_RATIOS`,
/// from Zehong-Ma/MagCache), calibrated on 28 steps; `MagCacheConfiguration/ratios(forSteps:)`
/// interpolates them for other step counts as diffusers does.
extension MagCachePreset {
    /// FLUX.1-dev / schnell.
    public static let flux = MagCachePreset(
        name: "flux",
        magRatios: [1.0, 1.21094, 1.11719, 1.07812, 1.0625, 1.03906, 1.03125, 1.03906, 1.02344, 1.03125, 1.02344,
                    0.98047, 1.01562, 1.00781, 1.0, 1.00781, 1.0, 1.00781, 1.0, 1.0, 0.99609, 0.99609, 0.98047,
                    0.98828, 0.96484, 0.95703, 0.93359, 0.89062],
        provenance: "diffusers 0.42.1 hooks/mag_cache.py FLUX_MAG_RATIOS (Zehong-Ma/MagCache)")
}

// MARK: TeaCache adapter

/// FLUX's TeaCache state: the image tokens are the one cached stream; the text tokens, conditioning and
/// rotary tables ride along uncached (the output head only reads the image stream).
extension FluxState: BatchSelectableState {
    /// `[image tokens]`, current after every block (``FluxState/image``).
    ///
    /// Assigning replaces the image tokens (the joint sequence kept between single-stream blocks is
    /// dropped; the next single-stream block joins the text and the new image tokens again). The state
    /// has exactly one stream: `CachedTransformer` only assigns arrays of the count and shapes it read.
    public var streams: [Tensor] {
        get { [image] }
        set {
            image = newValue.soleStream(of: "FLUX")
            joint = nil
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
/// joint sequence (``FluxTransformer/runBlock(_:_:)``, the loop body of ``FluxTransformer/runBlocks(_:)``).
extension FluxTransformer: BlockwiseDiffusionTransformer {
    /// `num_layers + num_single_layers`.
    public func blockCount(_ state: FluxState) -> Int { depth }
}

extension FluxTransformer: MemoryBudgeted {}

// MARK: Harness

extension FluxFamily {
    public static let fixtureNames = ["flux", "tangoflux"]
    /// Measured on the default model (28 steps, seed 0): the preset computes 18, 15 and 9 of 28 calls,
    /// coefficients calibrated on the uncached run 6, 4 and 3 (0.05 computed every preset call).
    public static let demoThresholds = [0.2, 0.3, 0.6]

    public static let benchmarkFileName = "flux-bench.json"

    /// `Benchmarks/configs/flux-bench.json`: 512 wide, 2 double + 4 single blocks, a 64×64 latent packed
    /// 2×2 into 1024 image tokens, 128 text tokens, batch 1.
    public static var benchmarkDefault: BenchmarkShape<FluxConfiguration> {
        var c = FluxConfiguration()
        c.patchSize = 1
        c.inChannels = 64
        c.numLayers = 2
        c.numSingleLayers = 4
        c.attentionHeadDim = 64
        c.numAttentionHeads = 8
        c.jointAttentionDim = 512
        c.pooledProjectionDim = 256
        c.guidanceEmbeds = true
        c.axesDimsRope = [16, 24, 24]
        return BenchmarkShape(configuration: c, inputs: BenchmarkInputs(
            ["batch": 1, "latent_height": 64, "latent_width": 64, "text_tokens": 128]))
    }

    /// `batch`, `latent_height`, `latent_width` (even) and `text_tokens`; the guidance is 3.5.
    public static func randomInputs(_ c: FluxConfiguration, sizes: BenchmarkInputs, seed: UInt64) throws -> SamplingInputs<FluxInput> {
        let b = try sizes.positive("batch")
        var base = try randomInputs(
            configuration: c, batch: b, latentHeight: sizes.positive("latent_height"),
            latentWidth: sizes.positive("latent_width"), textTokens: sizes.positive("text_tokens"), seed: seed)
        if c.guidanceEmbeds { base.guidance = try Tensor(shape: [b], repeating: embeddedGuidance) }
        return SamplingInputs(cond: base, batch: b)
    }

    public static func cost(_ c: FluxConfiguration, sizes: BenchmarkInputs) throws -> ForwardCost {
        let b = try sizes.positive("batch"), l = try sizes.positive("text_tokens")
        let s = (try sizes.positive("latent_height") / 2) * (try sizes.positive("latent_width") / 2)
        // Bounded before the estimates multiply them further.
        try SizeLimits.checkInputElements("hidden_states", [b, s, c.inChannels])
        try SizeLimits.checkInputElements("encoder_hidden_states", [b, l, c.jointAttentionDim])
        return ForwardCost(
            summary: "FLUX \(c.innerDim)-wide, \(c.numLayers) double + \(c.numSingleLayers) single blocks, "
                + "\(s) image + \(l) text tokens, batch \(b)",
            flops: c.forwardFLOPs(batch: b, imageTokens: s, textTokens: l),
            activationBytes: c.activationBytesEstimate(batch: b, imageTokens: s, textTokens: l))
    }

    /// Position ids `[h·w, n]` of a packed `h × w` latent grid, FLUX style: all zeros except the last two
    /// columns, which hold the row and the column (a single-axis configuration gets the token index).
    public static func packedImageIDs(height h: Int, width w: Int, axes n: Int) throws(TensorError) -> Tensor {
        var ids = [Float](repeating: 0, count: h * w * n)
        for r in 0..<h {
            for col in 0..<w {
                let tok = r * w + col
                if n >= 2 {
                    ids[tok * n + n - 2] = Float(r)
                    ids[tok * n + n - 1] = Float(col)
                } else {
                    ids[tok * n] = Float(tok)
                }
            }
        }
        return try Tensor(shape: [h * w, n], scalars: ids)
    }

    /// Random inputs of a FLUX pipeline shape: a `latentHeight × latentWidth` latent packed 2×2 into
    /// `(H/2)(W/2)` tokens, `textTokens` text tokens, sigma 0.5 and guidance 3.5.
    ///
    /// - Throws: `malformedConfig` for odd latent sizes, or sizes outside ``SizeLimits``.
    public static func randomInputs(
        configuration c: FluxConfiguration, batch: Int, latentHeight: Int, latentWidth: Int, textTokens: Int,
        seed: UInt64
    ) throws(ModelLoadError) -> FluxInput {
        for (field, v) in [("batch", batch), ("latent_height", latentHeight), ("latent_width", latentWidth),
                           ("text_tokens", textTokens)] {
            try SizeLimits.checkInput(field, v)
        }
        try SizeLimits.checkInputElements("hidden_states", [batch, latentHeight / 2, latentWidth / 2, c.inChannels])
        try SizeLimits.checkInputElements("encoder_hidden_states", [batch, textTokens, c.jointAttentionDim])
        guard latentHeight % 2 == 0, latentWidth % 2 == 0 else {
            throw .malformedConfig(reason: "latent_height and latent_width must be even (FLUX packs 2×2 patches)")
        }
        let (h, w) = (latentHeight / 2, latentWidth / 2)
        var g = SeededGenerator(seed: seed)
        do {
            return FluxInput(
                hiddenStates: try .randomNormal(shape: [batch, h * w, c.inChannels], using: &g),
                encoderHiddenStates: try .randomNormal(shape: [batch, textTokens, c.jointAttentionDim], using: &g),
                pooledProjections: try .randomNormal(shape: [batch, c.pooledProjectionDim], using: &g),
                timestep: try Tensor(shape: [batch], repeating: 0.5),
                imageIDs: try packedImageIDs(height: h, width: w, axes: c.axesDimsRope.count),
                textIDs: try Tensor(zeros: [textTokens, c.axesDimsRope.count]),
                guidance: c.guidanceEmbeds ? try Tensor(shape: [batch], repeating: 3.5) : nil)
        } catch {
            throw .tensor(error)
        }
    }

    // MARK: Fixtures

    public static func fixtureName(configuration: FluxConfiguration) -> String? {
        configuration.guidanceEmbeds ? "flux" : "tangoflux"
    }

    public static func forwardInput(_ a: FixtureArguments, configuration: FluxConfiguration) throws -> FluxInput {
        try inputs(hiddenStates: a.tensor("hidden_states"), timestep: a.tensor("timestep"), a)
    }

    public static func samplingInput(latent: Tensor, timestep: Float, conditioning a: FixtureArguments,
                                     configuration: FluxConfiguration) throws -> FluxInput {
        try inputs(hiddenStates: latent, timestep: a.timestep(timestep, batchOf: latent), a)
    }

    private static func inputs(hiddenStates: Tensor, timestep: Tensor, _ a: FixtureArguments) throws -> FluxInput {
        FluxInput(hiddenStates: hiddenStates, encoderHiddenStates: try a.tensor("encoder_hidden_states"),
                  pooledProjections: try a.tensor("pooled_projections"), timestep: timestep,
                  imageIDs: try a.tensor("img_ids"), textIDs: try a.tensor("txt_ids"),
                  guidance: a.optionalTensor("guidance"))
    }
}
