import Foundation
import TeaCache
import Tensors

// MARK: Model

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
}

/// The reference repository's Lumina-Image-2.0 presets (TeaCache4Lumina2, ali-vilab/TeaCache @ 7c10efc;
/// coefficients copied character for character from teacache-spec.md §2.2, v1 = `TeaCachePreset.luminaCoefficients`)
/// with its published thresholds and speedups (§2.1, §3).
extension TeaCachePreset {
    /// Lumina-Image-2.0, v1 coefficients (active in the script; = Lumina-Next). Default δ 0.3.
    public static let lumina2V1 = TeaCachePreset(
        reference: "lumina2_v1", luminaCoefficients, defaultThreshold: 0.3,
        speedups: [(0.2, 1.25), (0.3, 1.5625), (0.4, 2.0833), (0.5, 2.5)],
        modulatedInput: "layers[0].norm1(joint caption+image sequence, temb)[0]",
        provenance: "TeaCache4Lumina2/teacache_lumina2.py (v1)")

    /// Lumina-Image-2.0, v2 coefficients (Bayesian optimisation against LPIPS, PR #76). Default δ 0.3.
    public static let lumina2V2 = TeaCachePreset(
        reference: "lumina2_v2",
        [225.7042019806413, -608.8453716535591, 304.1869942338369, 124.21267720116742, -1.4089066892956552],
        defaultThreshold: 0.3, speedups: [(0.2, 1.5), (0.3, 1.6), (0.5, 1.8), (1.1, 2.1)],
        modulatedInput: "layers[0].norm1(joint caption+image sequence, temb)[0]",
        provenance: "TeaCache4Lumina2/teacache_lumina2.py (v2, commented alternative)")
}

// MARK: TeaCache adapter

/// How Lumina2's TeaCache entries are keyed (``Lumina2Transformer/teaCacheKeying``).
///
/// - ``branch`` (the default) keeps one entry per CFG branch, like every other family: with or without
///   CFG, and whatever the caption lengths, each branch has its own previous input, accumulator,
///   residual and step counter, and the standard schedule applies per branch.
/// - ``sequenceLength`` is TeaCache4Lumina2's own keying: one entry per joint sequence length
///   `max_seq_len`. Together with `TeaCacheSchedule/lumina2Reference` (its shared counter, advanced
///   only by calls of another length than the first call's) it reproduces the reference exactly —
///   including its quirk that without CFG, or with cond and uncond captions of equal length, the
///   counter never advances and nothing is ever skipped. ``Lumina2Family`` uses it for the fixtures.
public enum Lumina2TeaCacheKeying: String, Sendable, Codable, CaseIterable {
    /// One entry per CFG branch (the library's default).
    case branch
    /// One entry per joint sequence length (the reference's).
    case sequenceLength
}

extension TeaCacheSchedule {
    /// TeaCache4Lumina2's counter rule: the standard forced steps (first and last) read one counter
    /// shared by all entries, advanced after each call whose entry differs from the first one seen.
    /// Use it with ``Lumina2TeaCacheKeying/sequenceLength`` to reproduce the reference (faithful mode).
    public static let lumina2Reference = TeaCacheSchedule(sharedCounter: .advancedByOtherBranchesThanFirst)
}

/// Lumina2's TeaCache state: the padded joint caption + image sequence is the one cached stream.
extension Lumina2State: BatchSelectableState {
    /// `[joint sequence]` `[B, P, D]`. The state has exactly one stream: `CachedTransformer` only assigns
    /// arrays of the count and shapes it read.
    public var streams: [Tensor] {
        get { [joint] }
        set { joint = newValue.soleStream(of: "Lumina2") }
    }

    /// The batch size.
    public var batchSize: Int { joint.shape[0] }

    /// The state of the batch elements `indices`. The joint sequence keeps its padded length, and the
    /// key mask is kept (or made) whenever a selected sample is shorter than it, so a padded row is never
    /// attended to.
    public func selecting(batch indices: [Int]) throws -> Lumina2State {
        var s = self
        s.joint = try joint.gatheringRows(indices)
        s.temb = try temb.gatheringRows(indices)
        s.rope = try rope.selecting(indices)
        s.captionLengths = indices.map { captionLengths[$0] }
        s.rope.uniform = Set(s.captionLengths).count <= 1
        s.keyMask = try keyMask?.gatheringRows(indices)
        return s
    }
}

/// Lumina2 as a TeaCache ``DiffusionTransformer`` (TeaCache4Lumina2): `prepare` runs the embeddings and
/// both refiners and builds the joint sequence (on every call, skipped or not), the modulated input is
/// `layers[0].norm1(joint, temb)[0]`, `runBlocks` runs `layers` (the cached residual is the joint
/// sequence's change, padding included), `outputHead` takes the image rows through `norm_out`.
extension Lumina2Transformer: DiffusionTransformer {
    public typealias Input = Lumina2Input
    public typealias State = Lumina2State

    /// This model with another TeaCache keying.
    public func withTeaCacheKeying(_ keying: Lumina2TeaCacheKeying) -> Lumina2Transformer {
        var m = self
        m.teaCacheKeying = keying
        return m
    }

    /// The branch (``Lumina2TeaCacheKeying/branch``), or `max_seq_len` (``Lumina2TeaCacheKeying/sequenceLength``).
    public func cacheKey(for state: Lumina2State, branch: BranchKey) throws -> BranchKey {
        switch teaCacheKeying {
        case .branch: return branch
        case .sequenceLength: return BranchKey(state.maxSequenceLength)
        }
    }
}

/// Lumina2 block by block (First-Block Cache): `layers` (``Lumina2Transformer/runBlock(_:_:)``, the loop
/// body of ``Lumina2Transformer/runBlocks(_:)``; the refiners run in `prepare`), nothing after them
/// (`norm_out` lies outside the cached span, as diffusers' hooks see it).
extension Lumina2Transformer: BlockwiseDiffusionTransformer {
    /// `num_layers`.
    public func blockCount(_ state: Lumina2State) -> Int { depth }
}

extension Lumina2Transformer: MemoryBudgeted {}

// MARK: Harness

extension Lumina2Family {
    /// Measured on the default model (28 steps, CFG: 56 calls, seed 0): the v1 preset computes 45, 26 and
    /// 21 calls, calibrated coefficients 10, 8 and 6 (0.1 skipped only 2 preset calls).
    public static let demoThresholds = [0.3, 0.5, 0.8]

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
        let cond = try randomInputs(configuration: c, batch: b, latentHeight: h, latentWidth: w, textTokens: l, seed: seed)
        let uncond = try randomInputs(configuration: c, batch: b, latentHeight: h, latentWidth: w, textTokens: l,
                                      validTokens: max(1, l / 2), seed: seed &+ 0x5EED)
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

    /// Random inputs of a Lumina2 pipeline shape: a latent `[B, in_channels, H, W]`, `textTokens` caption
    /// features of which the first `validTokens` (default all) are unmasked, and timestep 0.5.
    ///
    /// - Throws: `malformedConfig` for sizes outside ``SizeLimits`` or not divisible by `patch_size`.
    public static func randomInputs(
        configuration c: Lumina2Configuration, batch b: Int, latentHeight h: Int, latentWidth w: Int,
        textTokens l: Int, validTokens: Int? = nil, seed: UInt64
    ) throws(ModelLoadError) -> Lumina2Input {
        _ = try LuminaInputChecks.benchmarkSizes(batch: b, height: h, width: w, textTokens: l, patch: c.patchSize,
                                                 channels: c.inChannels, captionWidth: c.capFeatDim)
        let valid = min(validTokens ?? l, l)
        var g = SeededGenerator(seed: seed)
        do {
            let mask = (0..<(b * l)).map { Float($0 % l < valid ? 1 : 0) }
            return Lumina2Input(hiddenStates: try .randomNormal(shape: [b, c.inChannels, h, w], using: &g),
                                timestep: try Tensor(shape: [b], repeating: 0.5),
                                encoderHiddenStates: try .randomNormal(shape: [b, l, c.capFeatDim], using: &g),
                                encoderAttentionMask: try Tensor(shape: [b, l], scalars: mask))
        } catch {
            throw .tensor(error)
        }
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
