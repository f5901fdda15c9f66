import Foundation
import Safetensors
import TeaCache
import Tensors

/// The arguments of a model call other than `hidden_states` and `timestep`, by diffusers argument name:
/// the text encoders' outputs (`encoder_hidden_states`, `pooled_projections`, …), position ids
/// (`img_ids`, `txt_ids`), `guidance`, masks, and non-tensor arguments (`num_frames`, …).
///
/// The same for every family: each family takes the names its diffusers `forward` takes (a missing one
/// is a typed error naming it). Optionally the file also holds the initial noise as `hidden_states`.
public struct DiTConditioning: Sendable {
    /// Tensor arguments by diffusers name (tuple elements as `<arg>.0`, `<arg>.1`).
    public var tensors: [String: Tensor]
    /// Non-tensor arguments by diffusers name (numbers, strings, lists, objects).
    public var options: [String: FixtureJSONValue]
    /// Where the arguments come from (named in error messages).
    public var source: String

    /// Arguments from tensors and non-tensor values.
    public init(tensors: [String: Tensor], options: [String: FixtureJSONValue] = [:], source: String = "conditioning") {
        self.tensors = tensors
        self.options = options
        self.source = source
    }

    /// Every tensor of the safetensors file at `url` whose name starts with `prefix` (the prefix removed),
    /// e.g. a file written by your text-encoder step, or a fixture's `sampling.safetensors` with
    /// `prefix: "cond."`.
    /// - Throws: ``ModelLoadError/unreadableFile(path:reason:)`` or
    ///   ``ModelLoadError/invalidWeights(path:error:)`` for a missing or malformed file;
    ///   ``ModelLoadError/malformedConfig(reason:)`` when no tensor has the prefix.
    public init(contentsOf url: URL, prefix: String = "", options: [String: FixtureJSONValue] = [:]) throws(ModelLoadError) {
        let file: SafetensorsFile
        do { file = try SafetensorsFile(contentsOf: url) } catch {
            if case .fileUnreadable = error {
                throw .unreadableFile(path: url.path, reason: FileProblem.describe(url))
            }
            throw .invalidWeights(path: url.path, error: error)
        }
        var tensors: [String: Tensor] = [:]
        for name in file.names where name.hasPrefix(prefix) {
            do { tensors[String(name.dropFirst(prefix.count))] = try file.tensor(named: name) } catch {
                throw .invalidWeights(path: url.path, error: error)
            }
        }
        guard !tensors.isEmpty else {
            throw .malformedConfig(reason: "\(url.path) has no tensor" + (prefix.isEmpty ? "" : " named \(prefix)*"))
        }
        self.init(tensors: tensors, options: options, source: url.path)
    }

    /// The tensor argument `name`.
    /// - Throws: ``DiTSamplingError/missingArgument(name:source:)``.
    public func tensor(_ name: String) throws(DiTSamplingError) -> Tensor {
        guard let t = tensors[name] else { throw .missingArgument(name: name, source: source) }
        return t
    }

    var fixtureArguments: FixtureArguments { FixtureArguments(tensors: tensors, nonTensor: options, source: source) }
}

/// Why a sampling call of a ``DiTPipeline`` could not run. Every case says what to change.
public enum DiTSamplingError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The conditioning lacks an argument the family's forward needs.
    case missingArgument(name: String, source: String)
    /// No initial latent: neither `noise:` nor a `hidden_states` tensor in the conditioning.
    case missingNoise(source: String)
    /// The request is inconsistent (CFG without a negative conditioning, a non-finite scale, …).
    case invalidRequest(String)

    public var description: String {
        switch self {
        case let .missingArgument(name, source):
            return "\(source) has no argument \"\(name)\"; add it under its diffusers name"
        case let .missingNoise(source):
            return "no initial latent: pass noise: or store it as \"hidden_states\" in \(source)"
        case let .invalidRequest(reason):
            return reason
        }
    }
}

/// The final latent of a sampling run and the cache decisions that produced it.
public struct DiTSamplingResult: Sendable {
    /// The final latent (decode it with the pipeline's VAE).
    public var latent: Tensor
    /// Every cache decision (nil for an uncached run).
    public var trace: CacheTrace?
}

/// A diffusers transformer loaded from its folder, of any registered family, ready for cached sampling:
/// the family's timestep convention, velocity convention and CFG rule are applied for you.
///
/// ```swift
/// let model = try DiTFamilies.load(from: URL(fileURLWithPath: "FLUX.1-dev/transformer"))
/// let prompt = try DiTConditioning(contentsOf: URL(fileURLWithPath: "prompt.safetensors"))
/// let result = try model.sample(prompt, steps: 28, policy: .teaCache(try .faithful(model.defaultPreset, threshold: 0.4)))
/// ```
public struct DiTPipeline: Sendable {
    /// The family (its name, presets and conventions).
    public let family: any DiTFamily.Type
    /// The scalars the weights held (a float32 model takes 4 bytes each).
    public let parameterCount: Int
    private let runner: @Sendable (_ request: Request) throws -> DiTSamplingResult

    struct Request {
        var conditioning: DiTConditioning, negative: DiTConditioning?, noise: Tensor?
        var steps: Int, policy: CachePolicy?, guidanceScale: Float?
        var progress: ((FlowMatchEulerSampler.Progress) -> FlowMatchEulerSampler.Control)?
    }

    /// A pipeline around a model of family `F` built elsewhere (e.g. with ``DiTFamily/load(_:weightsAt:precision:)``).
    public init<F: DiTFamily>(_ family: F.Type, configuration: F.Configuration, model: F.Model, parameterCount: Int = 0) {
        self.family = family
        self.parameterCount = parameterCount
        self.runner = { request in try Self.run(F.self, configuration, model, request) }
    }

    /// The family's default TeaCache preset (coefficients and schedule).
    public var defaultPreset: TeaCachePreset { family.defaultPreset }
    /// The family's TeaCache presets.
    public var presets: [TeaCachePreset] { family.presets }
    /// The family's published MagCache ratios (may be empty).
    public var magCachePresets: [MagCachePreset] { family.magCachePresets }

    /// Runs a flow-matching Euler loop of `steps` steps, each model call through `policy` (nil: uncached).
    ///
    /// - Parameters:
    ///   - conditioning: the call arguments by diffusers name (see ``DiTConditioning``).
    ///   - noise: the initial latent; nil takes `conditioning`'s `hidden_states`.
    ///   - negative: the unconditional branch's arguments; with it every step calls the model twice
    ///     (classifier-free guidance).
    ///   - guidanceScale: the guidance scale with `negative` (default the family's, else 1).
    ///   - steps: sampling steps.
    ///   - policy: the cache policy of every call; nil runs every call uncached (no trace).
    ///   - progress: called after every step; return `.cancel` to stop.
    /// - Throws: ``DiTSamplingError`` for a missing argument or latent, `CacheError` for an invalid
    ///   policy or step count, and the model's typed errors (`TensorError`, ``ModelLoadError``) for
    ///   arguments of the wrong shape. Never traps on bad input.
    public func sample(
        _ conditioning: DiTConditioning, noise: Tensor? = nil, negative: DiTConditioning? = nil,
        guidanceScale: Float? = nil, steps: Int, policy: CachePolicy? = nil,
        progress: ((FlowMatchEulerSampler.Progress) -> FlowMatchEulerSampler.Control)? = nil
    ) throws -> DiTSamplingResult {
        try runner(Request(conditioning: conditioning, negative: negative, noise: noise, steps: steps, policy: policy,
                           guidanceScale: guidanceScale, progress: progress))
    }

    private static func run<F: DiTFamily>(
        _: F.Type, _ configuration: F.Configuration, _ model: F.Model, _ r: Request
    ) throws -> DiTSamplingResult {
        guard let initial = r.noise ?? r.conditioning.tensors["hidden_states"] else {
            throw DiTSamplingError.missingNoise(source: r.conditioning.source)
        }
        if r.guidanceScale != nil, r.negative == nil {
            throw DiTSamplingError.invalidRequest("guidanceScale needs negative: (the unconditional branch's arguments)")
        }
        let scale = r.negative == nil ? nil : (r.guidanceScale ?? F.guidanceScale ?? 1)
        let sampler = try FlowMatchEulerSampler(steps: r.steps, timestepConvention: F.timestepConvention,
                                                velocity: F.velocity(configuration), guidanceScale: scale)
        let cond = r.conditioning.fixtureArguments, uncond = (r.negative ?? r.conditioning).fixtureArguments
        func input(_ latent: Tensor, _ t: Float, _ branch: BranchKey) throws -> F.Model.Input {
            do {
                return try F.samplingInput(latent: latent, timestep: t, conditioning: branch == .uncond ? uncond : cond,
                                           configuration: configuration)
            } catch let VerifyError.missingTensor(name, file) {
                throw DiTSamplingError.missingArgument(name: name, source: file)
            }
        }
        guard let policy = r.policy else {
            let latent = try sampler.sample(from: initial, model: { latent, t, branch, _ in
                try model.forward(input(latent, t, branch))
            }, progress: r.progress)
            return DiTSamplingResult(latent: latent, trace: nil)
        }
        let cached = CachedTransformer(model: model, policy: policy)
        try cached.beginRun(steps: sampler.steps)
        let latent = try sampler.sample(from: initial, model: { latent, t, branch, _ in
            try cached(input(latent, t, branch), branch: branch)
        }, progress: r.progress)
        return DiTSamplingResult(latent: latent, trace: cached.endRun())
    }
}

extension DiTFamily {
    /// Loads a diffusers `transformer/` folder: its `config.json` (plain diffusers form with
    /// `_class_name`, or the fixtures' `{"class", "config"}` form) and its weights (see
    /// ``WeightsLocation``).
    /// - Throws: ``ModelLoadError`` for a missing folder or file, a config of another class, an invalid
    ///   configuration, or weights that do not match it (one error listing every mismatch).
    ///
    /// `precision` is how the weight matrices are held (see ``load(_:weightsAt:precision:)``).
    public static func load(from folder: URL, precision: WeightPrecision = .float32) throws(ModelLoadError) -> Model {
        try loadCounting(from: folder, precision: precision).model
    }

    /// ``load(from:precision:)`` wrapped in a ``DiTPipeline`` (family conventions applied when sampling).
    public static func pipeline(from folder: URL, precision: WeightPrecision = .float32) throws(ModelLoadError) -> DiTPipeline {
        let (configuration, loaded) = try loadCountingWithConfiguration(from: folder, precision: precision)
        return DiTPipeline(Self.self, configuration: configuration, model: loaded.model, parameterCount: loaded.parameterCount)
    }

    static func loadCounting(from folder: URL, precision: WeightPrecision = .float32) throws(ModelLoadError) -> LoadedModel<Model> {
        try loadCountingWithConfiguration(from: folder, precision: precision).1
    }

    /// The one place a folder becomes a model: configuration, then weights in `precision`.
    static func loadCountingWithConfiguration(from folder: URL, precision: WeightPrecision = .float32)
        throws(ModelLoadError) -> (Configuration, LoadedModel<Model>) {
        let configURL = try DiTFamilies.configFile(in: folder)
        let configuration = try Configuration.load(configURL)
        return (configuration, try build(configuration, WeightLoader(safetensorsAt: folder, precision: precision).notRecording()))
    }
}

extension DiTFamilies {
    /// Loads a diffusers `transformer/` folder of any registered family, chosen by its `config.json`'s
    /// `_class_name` (see ``DiTFamily/load(from:precision:)``), its weight matrices held in `precision`.
    /// - Throws: ``ModelLoadError``: `unreadableFile` for a missing folder or `config.json`,
    ///   `wrongClass` listing every known class, and the load errors of the family.
    public static func load(from folder: URL, precision: WeightPrecision = .float32) throws(ModelLoadError) -> DiTPipeline {
        let url = try configFile(in: folder)
        let data: Data
        do { data = try Data(contentsOf: url) } catch { throw .unreadableFile(path: url.path, reason: FileProblem.describe(url)) }
        let (className, _) = try ModelConfigFile.parse(data)
        return try family(forClass: className).pipeline(from: folder, precision: precision)
    }

    /// `folder/config.json`, or a typed error saying what is there instead.
    static func configFile(in folder: URL) throws(ModelLoadError) -> URL {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder.path, isDirectory: &isDirectory) else {
            throw .unreadableFile(path: folder.path, reason: "not found; give a diffusers transformer folder (config.json + weights)")
        }
        guard isDirectory.boolValue else {
            throw .unreadableFile(path: folder.path, reason: "not a folder; give the folder holding config.json and the weights")
        }
        let url = folder.appendingPathComponent("config.json")
        guard FileManager.default.fileExists(atPath: url.path) else {
            throw .unreadableFile(path: url.path, reason: "not found; a diffusers transformer folder holds config.json beside its weights")
        }
        return url
    }
}
