import Foundation
import TeaCache
import Tensors

/// How `teacache verify` drives one model family on a fixture folder (FORMAT.md).
///
/// Everything generic — reading the folder, comparing `output`/`teacache.*`, the sigma schedule, the
/// uncached and cached Euler loops (``FlowMatchEulerSampler``, ``CachedTransformer``), per-call
/// decisions and final latents, the report — lives in ``FixtureVerifier``. A family supplies only
/// what differs, so a new family is one conformance plus one entry in ``FixtureFamilies/all``:
///
/// ```swift
/// public enum WanFixture: FixtureFamily {
///     public typealias Model = WanTransformer               // conforms to DiffusionTransformer
///     public static let familyNames = ["wan21"]
///     public static let classNames = ["WanTransformer3DModel"]
///     public static func loadModel(className: String, config: Data, weights: WeightLoader) throws -> WanTransformer {
///         try WanTransformer(configuration: WanConfiguration.parse(config, className: className), loader: weights)
///     }
///     public static func forwardInput(_ a: FixtureArguments) throws -> WanInputs { … a.tensor("hidden_states") … }
///     public static func samplingInput(latent: Tensor, timestep: Float, conditioning a: FixtureArguments) throws -> WanInputs { … }
///     // Wan stores a second modulated input and has its own counter rules:
///     public static func forwardResults(model: WanTransformer, input: WanInputs) throws -> [String: Tensor] { … }
///     public static func teaCacheConfiguration(record: SamplingRecord, steps: Int) throws -> TeaCacheConfiguration { … }
/// }
/// ```
///
/// Required: ``familyNames``, ``classNames``, ``loadModel(className:config:weights:)``,
/// ``forwardInput(_:)`` (tensors are `input.<arg>` of forward.safetensors with the prefix removed) and
/// ``samplingInput(latent:timestep:conditioning:)`` (tensors are `cond.<arg>` / `uncond.<arg>`).
/// Defaults that may be overridden: ``familyName(className:config:)`` (naming folders without a
/// `family` field), ``forwardResults(model:input:)`` (`output`, `teacache.modulated_input`, and one
/// residual per cached stream: `teacache.residual`, `teacache.residual_encoder`),
/// ``teaCacheConfiguration(record:steps:)`` (the standard counter: first and last step forced) and
/// ``velocity(_:)`` (`v = sign · output` over all channels). Never hard-code fixture values (shapes,
/// seeds, thresholds): read them from the arguments and records.
public protocol FixtureFamily: SendableMetatype {
    /// The model type; its forward is split for TeaCache.
    associatedtype Model: DiffusionTransformer

    /// The fixture family names this conformance handles (`sampling.json`'s `family`).
    static var familyNames: [String] { get }
    /// The diffusers classes it loads.
    static var classNames: [String] { get }

    /// The family of a folder that does not state one, from its config (nil when not this family's).
    static func familyName(className: String, config: Data) -> String?

    /// Builds the model from the unwrapped configuration and a loader over model.safetensors.
    static func loadModel(className: String, config: Data, weights: WeightLoader) throws -> Model

    /// The input of the forward check (`input.*` tensors and forward.json's `non_tensor_args`).
    static func forwardInput(_ arguments: FixtureArguments) throws -> Model.Input

    /// The input of one sampling call: the current latent, the timestep value (every batch element gets
    /// it) and the branch's conditioning (`cond.*` / `uncond.*` and sampling.json's `non_tensor_args`).
    static func samplingInput(latent: Tensor, timestep: Float, conditioning: FixtureArguments) throws -> Model.Input

    /// Tensors to compare with forward.safetensors, by name (`output`, `teacache.modulated_input`,
    /// `teacache.residual`, ...). Every reference tensor named `output` or `teacache.*` must be produced.
    static func forwardResults(model: Model, input: Model.Input) throws -> [String: Tensor]

    /// The TeaCache configuration reproducing a record's counter rules.
    static func teaCacheConfiguration(record: SamplingRecord, steps: Int) throws -> TeaCacheConfiguration

    /// The model to wrap with TeaCache for a record: `model` itself unless the record selects another
    /// modulated input (Wan2.1's `use_ret_steps` compares `timestep_proj` instead of `temb`).
    static func model(_ model: Model, for record: SamplingRecord) throws -> Model

    /// The velocity convention of the loop.
    static func velocity(_ description: SamplingDescription.Velocity) throws -> VelocityConvention
}

extension FixtureFamily {
    /// The first family name when the class is one of ``classNames``.
    public static func familyName(className: String, config: Data) -> String? {
        classNames.contains(className) ? familyNames.first : nil
    }

    /// `output` (the full forward), `teacache.modulated_input`, and one residual per cached stream:
    /// `teacache.residual` for stream 0 and `teacache.residual_encoder` for stream 1.
    public static func forwardResults(model: Model, input: Model.Input) throws -> [String: Tensor] {
        var state = try model.prepare(input)
        var results = ["teacache.modulated_input": try model.modulatedInput(state)]
        let before = state.streams
        try model.runBlocks(&state)
        let names = ["teacache.residual", "teacache.residual_encoder"]
        for (i, (after, b)) in zip(state.streams, before).enumerated() where i < names.count {
            results[names[i]] = try after - b
        }
        results["output"] = try model.outputHead(state)
        return results
    }

    /// The standard counter (FORMAT.md §4): first and last step forced, one counter per call.
    public static func teaCacheConfiguration(record: SamplingRecord, steps: Int) throws -> TeaCacheConfiguration {
        guard record.counterKind == "standard" else {
            throw VerifyError.unsupported("record \(record.name): counter kind \(record.counterKind ?? "none") "
                                          + "needs a family-specific teaCacheConfiguration")
        }
        if let period = record.teacacheState["counter_period"], period.integer != steps {
            throw VerifyError.unsupported("record \(record.name): counter period \(period) differs from \(steps) steps")
        }
        return try .faithful(coefficients: record.coefficients, threshold: record.threshold, schedule: .standard)
    }

    /// The loaded model, unchanged.
    public static func model(_ model: Model, for record: SamplingRecord) throws -> Model { model }

    /// `v = sign · output` over all channels.
    public static func velocity(_ description: SamplingDescription.Velocity) throws -> VelocityConvention {
        guard description.channels == "all" else {
            throw VerifyError.unsupported("velocity channels \"\(description.channels)\" need a family-specific velocity")
        }
        return VelocityConvention(sign: description.sign, channels: .all)
    }
}

/// The registry of fixture families known to `teacache verify`.
public enum FixtureFamilies {
    /// Every conformance, in lookup order.
    public static let all: [any FixtureFamily.Type] = [FluxFixture.self, WanFixture.self]

    /// The family handling `folder` and its family name: the name stated by forward.json/sampling.json
    /// when present (its class must match), else the first family that recognises config.json.
    public static func resolve(_ folder: FixtureFolder) throws(VerifyError) -> (family: any FixtureFamily.Type, name: String) {
        if let stated = try folder.statedFamily() {
            var known: [String] = []
            for f in all {
                let names = f.familyNames
                known += names
                guard names.contains(stated) else { continue }
                let classes = f.classNames
                guard classes.contains(folder.className) else {
                    throw .malformedFixture(
                        file: "config.json",
                        reason: "class \(folder.className) is not a \(stated) class (\(classes.joined(separator: ", ")))")
                }
                return (f, stated)
            }
            throw .unknownFamily("\"\(stated)\" (known: \(known.joined(separator: ", ")))")
        }
        for f in all {
            if let name = f.familyName(className: folder.className, config: folder.config) { return (f, name) }
        }
        throw .unknownFamily("no family handles class \(folder.className)")
    }
}
