import DiTModels
import Foundation
import TeaCache
import Tensors

/// The FLUX family of the demo: `FluxTransformer` with FLUX sampling conventions (timestep = sigma,
/// distilled guidance 3.5 embedded, no CFG), compared with ``TeaCachePreset/flux``.
///
/// The default model is the benchmark shape of `Benchmarks/configs/flux-bench.json` (embedded in
/// ``defaultBenchmarkJSON``) with seeded random weights tapered for the step count (FORMAT.md §6).
public struct FluxDemoFamily: DemoModelFamily {
    /// The embedded default: a copy of `Benchmarks/configs/flux-bench.json`.
    public static let defaultBenchmarkJSON = """
    {
      "class": "FluxTransformer2DModel",
      "note": "Benchmark shape: FLUX-style DiT, 512-wide, 2 double + 4 single blocks; 1024 image tokens (64x64 latent packed 2x2), 128 text tokens, batch 1.",
      "config": {
        "patch_size": 1,
        "in_channels": 64,
        "out_channels": null,
        "num_layers": 2,
        "num_single_layers": 4,
        "attention_head_dim": 64,
        "num_attention_heads": 8,
        "joint_attention_dim": 512,
        "pooled_projection_dim": 256,
        "guidance_embeds": true,
        "axes_dims_rope": [16, 24, 24]
      },
      "inputs": {"batch": 1, "latent_height": 64, "latent_width": 64, "text_tokens": 128}
    }
    """

    /// The input sizes used when a configuration file has no `inputs` table (a plain diffusers config).
    public static let defaultInputs = InputSizes(batch: 1, latentHeight: 64, latentWidth: 64, textTokens: 128)

    /// The distilled guidance value FLUX.1-dev pipelines embed.
    public static let guidance: Float = 3.5

    /// Batch, latent and text sizes of the random inputs.
    public struct InputSizes: Sendable, Equatable, Decodable {
        /// Batch size.
        public var batch: Int
        /// Latent height (even).
        public var latentHeight: Int
        /// Latent width (even).
        public var latentWidth: Int
        /// Text tokens.
        public var textTokens: Int

        /// Sizes.
        public init(batch: Int, latentHeight: Int, latentWidth: Int, textTokens: Int) {
            self.batch = batch
            self.latentHeight = latentHeight
            self.latentWidth = latentWidth
            self.textTokens = textTokens
        }

        enum CodingKeys: String, CodingKey {
            case batch, latentHeight = "latent_height", latentWidth = "latent_width", textTokens = "text_tokens"
        }
    }

    /// The family.
    public init() {}

    public var name: String { "flux" }
    public var summary: String { "FLUX-shaped DiT (FluxTransformer2DModel), timestep = sigma, guidance 3.5" }
    public var builtInPreset: TeaCachePreset { .flux }
    /// Measured on the default model (28 steps, seed 0): see the demo's README section.
    public var defaultThresholds: [Double] { [0.05, 0.2, 0.3, 0.6] }
    public var modulatedInputDescription: String { TeaCachePreset.flux.modulatedInput }

    public func makeWorkload(_ source: ModelSource) throws(DemoError) -> any DemoWorkload {
        try source.validate()
        let data = try source.configData() ?? Data(Self.defaultBenchmarkJSON.utf8)
        let configuration: FluxConfiguration
        let sizes: InputSizes
        do {
            let (className, body) = try ModelConfigFile.parse(data)
            configuration = try FluxConfiguration.parse(body, className: className)
            sizes = try Self.inputSizes(data)
        } catch { throw .model("\(source.configPath ?? "embedded FLUX config"): \(error)") }
        for (name, v) in [("batch", sizes.batch), ("latent_height", sizes.latentHeight),
                          ("latent_width", sizes.latentWidth), ("text_tokens", sizes.textTokens)]
            where v < 1 || v > SizeLimits.maximumExtent {
            throw .model("input size \(name) = \(v) must be between 1 and \(SizeLimits.maximumExtent)")
        }
        let model: FluxTransformer
        do {
            if let w = source.weightsPath {
                model = try FluxTransformer(configuration: configuration,
                                            loader: WeightLoader(safetensorsAt: URL(fileURLWithPath: w)))
            } else {
                model = try FluxTransformer.random(configuration: configuration, seed: source.seed, taperSteps: source.steps)
            }
        } catch { throw .model("\(error)") }
        let sampler: FlowMatchEulerSampler
        do { sampler = try FlowMatchEulerSampler(steps: source.steps, timestepConvention: .sigma) } catch {
            throw .teaCache(error)
        }
        let tokens = (sizes.latentHeight / 2) * (sizes.latentWidth / 2)
        let c = configuration
        let summary = "FLUX \(c.innerDim)-wide, \(c.numLayers) double + \(c.numSingleLayers) single blocks, "
            + "\(tokens) image + \(sizes.textTokens) text tokens, batch \(sizes.batch), "
            + (source.weightsPath == nil ? "random weights (seed \(source.seed), taper for \(source.steps) steps)"
                                         : "weights \(source.weightsPath ?? "")")
        return SampledWorkload(model: model, sampler: sampler, inputSeed: source.seed &+ 1, summary: summary) { seed in
            let base = try FluxTransformer.randomInputs(
                configuration: c, batch: sizes.batch, latentHeight: sizes.latentHeight, latentWidth: sizes.latentWidth,
                textTokens: sizes.textTokens, seed: seed)
            return SamplingInputs(latent: base.hiddenStates) { latent, t, _ in
                var x = base
                x.hiddenStates = latent
                x.timestep = try Tensor(shape: [sizes.batch], repeating: t)
                if c.guidanceEmbeds { x.guidance = try Tensor(shape: [sizes.batch], repeating: Self.guidance) }
                return x
            }
        }
    }

    /// The `inputs` table of a benchmark-style file, or ``defaultInputs`` when absent.
    static func inputSizes(_ data: Data) throws -> InputSizes {
        struct File: Decodable { var inputs: InputSizes? }
        return try JSONDecoder().decode(File.self, from: data).inputs ?? defaultInputs
    }
}
