import Foundation
import TeaCache
import Tensors

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
    public static let fixtureNames = ["flux", "tangoflux"]

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
    /// Measured on the default model (28 steps, seed 0): the preset computes 18, 15 and 9 of 28 calls,
    /// coefficients calibrated on the uncached run 6, 4 and 3 (0.05 computed every preset call).
    public static let demoThresholds = [0.2, 0.3, 0.6]

    // MARK: Benchmark shape

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
        var base = try FluxTransformer.randomInputs(
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
