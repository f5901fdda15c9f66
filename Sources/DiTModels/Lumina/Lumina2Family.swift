import Foundation
import TeaCache
import Tensors

/// Lumina-Image-2.0 (diffusers `Lumina2Transformer2DModel`) in the registry: loading, sampling
/// conventions (timestep = 1 − sigma, velocity = −out, CFG 4 in the demo as `Lumina2Pipeline`), the v1
/// and v2 TeaCache4Lumina2 presets, the benchmark shape and the fixture plug-in.
///
/// TeaCache keying: the library's default (``Lumina2TeaCacheKeying/branch`` with the standard schedule)
/// keeps one cache entry per CFG branch, so it skips with or without CFG. Fixture records of kind
/// `lumina2` are replayed faithfully instead: entries keyed by `max_seq_len`
/// (``Lumina2TeaCacheKeying/sequenceLength``) and the reference's shared counter
/// (`TeaCacheSchedule/lumina2Reference`), which never advances — so never skips — when every call has
/// the same length (no CFG, or equal cond/uncond caption lengths).
///
/// Fixture arguments are diffusers' forward arguments: `hidden_states`, `timestep`,
/// `encoder_hidden_states` and `encoder_attention_mask` (cond and uncond differ).
public enum Lumina2Family: DiTFamilyHarness {
    public typealias Configuration = Lumina2Configuration
    public typealias Model = Lumina2Transformer

    public static let name = "lumina2"
    public static let summary = "Lumina-Image-2.0-shaped DiT (Lumina2Transformer2DModel), timestep = 1 − sigma, v = −out, CFG 4"

    public static func makeModel(_ configuration: Lumina2Configuration, weights: WeightScope) throws(ModelLoadError) -> Lumina2Transformer {
        Lumina2Transformer(configuration: configuration, weights: weights)
    }

    /// The §6 taper of `time_caption_embed.timestep_embedder.linear_1.weight`, `u = 1 / steps`.
    public static func randomWeightAdjustment(_ c: Lumina2Configuration, steps: Int) -> WeightAdjustment? {
        luminaTimestepTaper(steps: steps)
    }

    // MARK: Sampling conventions and presets

    public static let timestepConvention = TimestepConvention.oneMinusSigma
    public static func velocity(_ c: Lumina2Configuration) -> VelocityConvention { .negated }
    /// `Lumina2Pipeline`'s default guidance scale (no CFG renormalisation or truncation).
    public static let guidanceScale: Float? = 4
    /// v1 (the script's active coefficients) first, then v2.
    public static var presets: [TeaCachePreset] { [.lumina2V1, .lumina2V2] }
    /// Measured on the default model (28 steps, CFG: 56 calls, seed 0): the v1 preset computes 45, 26 and
    /// 21 calls, calibrated coefficients 10, 8 and 6 (0.1 skipped only 2 preset calls).
    public static let demoThresholds = [0.3, 0.5, 0.8]

    // MARK: Benchmark shape

    public static let benchmarkFileName = "lumina2-bench.json"

    /// `Benchmarks/configs/lumina2-bench.json`: 512 wide (8 heads × 64, 8 key/value heads), 2 noise + 2
    /// context refiner blocks, 4 joint blocks; a 16×64×64 latent with 2×2 patches = 1024 image tokens,
    /// 128 caption tokens, batch 1.
    public static var benchmarkDefault: BenchmarkShape<Lumina2Configuration> {
        var c = Lumina2Configuration()
        c.sampleSize = 64
        c.patchSize = 2
        c.inChannels = 16
        c.outChannelsSetting = nil
        c.hiddenSize = 512
        c.numLayers = 4
        c.numRefinerLayers = 2
        c.numAttentionHeads = 8
        c.numKVHeads = 8
        c.multipleOf = 256
        c.ffnDimMultiplier = nil
        c.normEps = 1e-5
        c.scalingFactor = 1
        c.axesDimRope = [16, 24, 24]
        c.axesLens = [300, 512, 512]
        c.capFeatDim = 512
        return BenchmarkShape(configuration: c, inputs: BenchmarkInputs(
            ["batch": 1, "latent_height": 64, "latent_width": 64, "text_tokens": 128]))
    }

    /// `batch`, `latent_height`, `latent_width`, `text_tokens`: the cond caption uses every token, the
    /// `.uncond` branch another caption with half of them (a shorter negative prompt, so the two joint
    /// sequences differ in length as in the pipeline).
    public static func randomInputs(_ c: Lumina2Configuration, sizes: BenchmarkInputs, seed: UInt64) throws -> SamplingInputs<Lumina2Input> {
        let z = try LuminaInputChecks.benchmarkSizes(sizes, patch: c.patchSize, channels: c.inChannels, captionWidth: c.capFeatDim)
        let (b, h, w, l) = (z.batch, z.height, z.width, z.textTokens)
        let cond = try Lumina2Transformer.randomInputs(configuration: c, batch: b, latentHeight: h, latentWidth: w,
                                                       textTokens: l, seed: seed)
        let uncond = try Lumina2Transformer.randomInputs(configuration: c, batch: b, latentHeight: h, latentWidth: w,
                                                         textTokens: l, validTokens: max(1, l / 2), seed: seed &+ 0x5EED)
        return SamplingInputs(cond: cond, uncond: uncond, batch: b)
    }

    public static func cost(_ c: Lumina2Configuration, sizes: BenchmarkInputs) throws -> ForwardCost {
        let z = try LuminaInputChecks.benchmarkSizes(sizes, patch: c.patchSize, channels: c.inChannels, captionWidth: c.capFeatDim)
        return ForwardCost(
            summary: "Lumina2 \(c.hiddenSize)-wide, \(c.numRefinerLayers)+\(c.numRefinerLayers) refiner + \(c.numLayers) joint blocks, "
                + "\(z.imageTokens) image + \(z.textTokens) text tokens, batch \(z.batch)",
            flops: c.forwardFLOPs(batch: z.batch, imageTokens: z.imageTokens, textTokens: z.textTokens),
            activationBytes: c.activationBytesEstimate(batch: z.batch, imageTokens: z.imageTokens, textTokens: z.textTokens))
    }

    // MARK: Fixtures

    public static func forwardInput(_ a: FixtureArguments, configuration: Lumina2Configuration) throws -> Lumina2Input {
        Lumina2Input(hiddenStates: try a.tensor("hidden_states"), timestep: try a.tensor("timestep"),
                     encoderHiddenStates: try a.tensor("encoder_hidden_states"),
                     encoderAttentionMask: try a.tensor("encoder_attention_mask"))
    }

    public static func samplingInput(latent: Tensor, timestep: Float, conditioning a: FixtureArguments,
                                     configuration: Lumina2Configuration) throws -> Lumina2Input {
        Lumina2Input(hiddenStates: latent, timestep: try a.timestep(timestep, batchOf: latent),
                     encoderHiddenStates: try a.tensor("encoder_hidden_states"),
                     encoderAttentionMask: try a.tensor("encoder_attention_mask"))
    }

    /// One residual: the joint sequence.
    public static var residualNames: [String] { ["teacache.residual"] }

    /// `lumina2` records: the reference's shared counter (`TeaCacheSchedule/lumina2Reference`);
    /// `standard` records: the standard counter per entry.
    public static func teaCacheConfiguration(record: SamplingRecord, steps: Int) throws -> TeaCacheConfiguration {
        let state = record.teacacheState
        if let period = state["counter_period"], period.integer != steps {
            throw VerifyError.unsupported("record \(record.name): counter period \(period) differs from \(steps) steps")
        }
        switch record.counterKind {
        case "lumina2":
            guard state["keyed_by"]?.string == "max_seq_len" else {
                throw VerifyError.unsupported("record \(record.name): lumina2 records are keyed by max_seq_len, got \(state)")
            }
            return try .faithful(coefficients: record.coefficients, threshold: record.threshold, schedule: .lumina2Reference)
        case "standard":
            return try .faithful(coefficients: record.coefficients, threshold: record.threshold, schedule: .standard)
        default:
            throw VerifyError.unsupported("record \(record.name): counter kind \(record.counterKind ?? "none")")
        }
    }

    /// `lumina2` records key the cache by `max_seq_len` (``Lumina2TeaCacheKeying/sequenceLength``).
    public static func model(_ model: Lumina2Transformer, for record: SamplingRecord) throws -> Lumina2Transformer {
        model.withTeaCacheKeying(record.counterKind == "lumina2" ? .sequenceLength : .branch)
    }

    /// The call's `cache_key` (its `max_seq_len`), or its CFG branch when the record has none.
    public static func recordedCacheKey(_ call: SamplingRecord.Call) -> BranchKey {
        call.cacheKey.map { BranchKey($0) } ?? BranchKey(call.cfgBranch)
    }
}
