import DiTModels
import Foundation
import TeaCache
import Tensors

/// The Wan2.1 family of the demo: `WanTransformer` through ``WanTeaCacheAdapter`` in the script's default
/// mode (modulated input `temb`, first and last step forced), Wan conventions (timestep = sigma·1000,
/// CFG with guidance 5 over a `.cond` and an `.uncond` branch), compared with ``TeaCachePreset/wan21T2V1_3B``.
///
/// The default model is the benchmark shape of `Benchmarks/configs/wan-bench.json` (embedded in
/// ``defaultBenchmarkJSON``) with seeded random weights tapered for the step count (FORMAT.md §6).
public struct WanDemoFamily: DemoModelFamily {
    /// The embedded default: a copy of `Benchmarks/configs/wan-bench.json`.
    public static let defaultBenchmarkJSON = """
    {
      "class": "WanTransformer3DModel",
      "note": "Benchmark shape: Wan2.1-style T2V DiT, 512-wide, 4 blocks; latent 16x4x32x32 with 1x2x2 patches = 1024 video tokens, 128 text tokens, batch 1.",
      "config": {
        "patch_size": [1, 2, 2],
        "num_attention_heads": 8,
        "attention_head_dim": 64,
        "in_channels": 16,
        "out_channels": 16,
        "text_dim": 512,
        "freq_dim": 256,
        "ffn_dim": 2048,
        "num_layers": 4,
        "cross_attn_norm": true,
        "qk_norm": "rms_norm_across_heads",
        "eps": 1e-6,
        "image_dim": null,
        "added_kv_proj_dim": null,
        "rope_max_seq_len": 1024
      },
      "inputs": {"batch": 1, "latent_frames": 4, "latent_height": 32, "latent_width": 32, "text_tokens": 128}
    }
    """

    /// The input sizes used when a configuration file has no `inputs` table (a plain diffusers config).
    public static let defaultInputs = InputSizes(batch: 1, latentFrames: 4, latentHeight: 32, latentWidth: 32,
                                                 textTokens: 128, imageTokens: nil)

    /// The CFG scale of the fixtures' Wan loop.
    public static let guidanceScale: Float = 5

    /// Batch, latent and conditioning sizes of the random inputs.
    public struct InputSizes: Sendable, Equatable, Decodable {
        /// Batch size.
        public var batch: Int
        /// Latent frames.
        public var latentFrames: Int
        /// Latent height.
        public var latentHeight: Int
        /// Latent width.
        public var latentWidth: Int
        /// Text tokens.
        public var textTokens: Int
        /// Image-encoder tokens for image-conditioned configurations (default 257, CLIP ViT-H).
        public var imageTokens: Int?

        enum CodingKeys: String, CodingKey {
            case batch, latentFrames = "latent_frames", latentHeight = "latent_height", latentWidth = "latent_width"
            case textTokens = "text_tokens", imageTokens = "image_tokens"
        }
    }

    /// The family.
    public init() {}

    public var name: String { "wan21" }
    public var summary: String { "Wan2.1-shaped video DiT (WanTransformer3DModel), timestep = sigma·1000, CFG 5" }
    public var builtInPreset: TeaCachePreset { .wan21T2V1_3B }
    public var defaultThresholds: [Double] { [0.1, 0.2, 0.4] }
    public var modulatedInputDescription: String { TeaCachePreset.wan21T2V1_3B.modulatedInput }

    public func makeWorkload(_ source: ModelSource) throws(DemoError) -> any DemoWorkload {
        try source.validate()
        let data = try source.configData() ?? Data(Self.defaultBenchmarkJSON.utf8)
        let configuration: WanConfiguration
        let sizes: InputSizes
        do {
            let (className, body) = try ModelConfigFile.parse(data)
            configuration = try WanConfiguration.parse(body, className: className)
            struct File: Decodable { var inputs: InputSizes? }
            sizes = try JSONDecoder().decode(File.self, from: data).inputs ?? Self.defaultInputs
        } catch { throw .model("\(source.configPath ?? "embedded Wan config"): \(error)") }
        for (name, v) in [("batch", sizes.batch), ("latent_frames", sizes.latentFrames), ("latent_height", sizes.latentHeight),
                          ("latent_width", sizes.latentWidth), ("text_tokens", sizes.textTokens),
                          ("image_tokens", sizes.imageTokens ?? 1)] where v < 1 || v > SizeLimits.maximumExtent {
            throw .model("input size \(name) = \(v) must be between 1 and \(SizeLimits.maximumExtent)")
        }
        let model: WanTransformer
        do {
            if let w = source.weightsPath {
                model = try WanTransformer(configuration: configuration,
                                           loader: WeightLoader(safetensorsAt: URL(fileURLWithPath: w)))
            } else {
                model = try WanTransformer(configuration: configuration, randomSeed: source.seed, samplingSteps: source.steps)
            }
        } catch { throw .model("\(error)") }
        let sampler: FlowMatchEulerSampler
        do {
            sampler = try FlowMatchEulerSampler(steps: source.steps, timestepConvention: .sigmaTimes1000,
                                                guidanceScale: Self.guidanceScale)
        } catch { throw .teaCache(error) }
        let c = configuration
        let imageTokens = c.posEmbedSeqLen ?? sizes.imageTokens ?? 257
        let summary = "Wan2.1 \(c.innerDim)-wide, \(c.numLayers) blocks, latent \(sizes.latentFrames)×\(sizes.latentHeight)"
            + "×\(sizes.latentWidth), \(sizes.textTokens) text tokens, batch \(sizes.batch), CFG \(Self.guidanceScale), "
            + (source.weightsPath == nil ? "random weights (seed \(source.seed), taper for \(source.steps) steps)"
                                         : "weights \(source.weightsPath ?? "")")
        let adapter = WanTeaCacheAdapter(model: model, mode: .standard)
        return SampledWorkload(model: adapter, sampler: sampler, inputSeed: source.seed &+ 1, summary: summary) { seed in
            func inputs(_ s: UInt64) throws -> WanInput {
                try WanTransformer.randomInputs(
                    configuration: c, batch: sizes.batch, frames: sizes.latentFrames, height: sizes.latentHeight,
                    width: sizes.latentWidth, textTokens: sizes.textTokens, imageTokens: imageTokens, seed: s)
            }
            let cond = try inputs(seed)
            let uncond = try inputs(seed &+ 0x5EED)  // a different "negative prompt" embedding
            return SamplingInputs(latent: cond.hiddenStates) { latent, t, branch in
                var x = branch == .uncond ? uncond : cond
                x.hiddenStates = latent
                x.timestep = try Tensor(shape: [sizes.batch], repeating: t)
                return x
            }
        }
    }
}
