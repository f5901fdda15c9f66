import Foundation
import TeaCache
import Tensors

/// One model family — a diffusers transformer class (or a few sharing one implementation) — described
/// once, in its own folder: what an app needs to load and run it. Loading (``load(_:weightsAt:precision:)``,
/// ``load(from:precision:)``, ``random(_:seed:steps:precision:parameterBudget:memoryBudget:)``) and
/// sampling (``pipeline(from:precision:)``) are written once, in extensions, for every family.
///
/// A family is one conforming type plus one line in ``DiTFamilies/builtIn`` (or one
/// ``DiTFamilies/register(_:)`` call for a family defined outside the package). What the verification
/// and benchmark harness needs besides (fixture reading, benchmark shapes) is ``DiTFamilyHarness``. The
/// DocC article "Adding a model family" walks through the FLUX folder.
///
/// Requirements, by role:
/// - **identity**: ``name``, ``summary``, the ``Configuration`` type (whose `classNames` are the
///   registry keys);
/// - **building**: ``makeModel(_:weights:)`` takes every parameter from a ``WeightScope``; the
///   registry's loading functions finish the load (one typed error for every missing, unexpected and
///   mis-shaped tensor), so a family never handles a partially loaded model. ``weightRules`` declares
///   ignored and renamed stored tensors; ``randomWeightAdjustment(_:steps:)`` the timestep taper of
///   random weights;
/// - **sampling conventions**: ``timestepConvention``, ``velocity(_:)``, ``guidanceScale``, and how a
///   call's named arguments become the model input (``samplingInput(latent:timestep:conditioning:configuration:)``);
/// - **TeaCache**: ``presets`` (with provenance), ``defaultPreset``, ``magCachePresets``.
public protocol DiTFamily: SendableMetatype {
    /// The decoded `config.json`.
    associatedtype Configuration: DiTConfiguration
    /// The model, split for TeaCache, with the memory budget its `prepare` checks.
    associatedtype Model: DiffusionTransformer & MemoryBudgeted & Sendable

    // MARK: Identity

    /// The family's name: `--model` of the demo and calibration, and its registry name (`flux`, `wan21`).
    static var name: String { get }
    /// One line describing the family and its sampling conventions.
    static var summary: String { get }

    // MARK: Building

    /// How stored weights map onto parameters (ignored and renamed tensors); default ``WeightRules/none``.
    static var weightRules: WeightRules { get }
    /// Builds the model, taking every parameter from `weights` by its diffusers name.
    ///
    /// Called only by the loading functions (``load(_:weightsAt:precision:)``, ``load(_:tensors:precision:)``,
    /// ``random(_:seed:steps:precision:parameterBudget:memoryBudget:)``), with a validated configuration; they check the weights afterwards.
    static func makeModel(_ configuration: Configuration, weights: WeightScope) throws(ModelLoadError) -> Model
    /// What to change in randomly drawn weights for a `steps`-step run (the timestep taper of
    /// FORMAT.md §6); default none.
    static func randomWeightAdjustment(_ configuration: Configuration, steps: Int) -> WeightAdjustment?

    // MARK: Sampling conventions

    /// How the flow-matching sigma becomes the model's `timestep`.
    static var timestepConvention: TimestepConvention { get }
    /// How the output becomes the velocity; default `VelocityConvention/identity`.
    static func velocity(_ configuration: Configuration) -> VelocityConvention
    /// The classifier-free guidance scale of the demo's sampling loop (two calls per step), or nil
    /// (one call per step, the default).
    static var guidanceScale: Float? { get }

    /// The input of one sampling call: the current latent, the timestep value (every batch element gets
    /// it) and the branch's conditioning (`cond.*` / `uncond.*` and sampling.json's `non_tensor_args`); ``DiTPipeline`` builds every call
    /// of a sampling run with it.
    static func samplingInput(latent: Tensor, timestep: Float, conditioning: FixtureArguments,
                              configuration: Configuration) throws -> Model.Input

    // MARK: TeaCache

    /// The reference repository's presets for this family, with provenance.
    static var presets: [TeaCachePreset] { get }
    /// The preset the demo and calibration compare with; default the first of ``presets``.
    static var defaultPreset: TeaCachePreset { get }
    /// Published MagCache ratios for this family (default none: calibrate them with `teacache calibrate
    /// --policy magcache`).
    static var magCachePresets: [MagCachePreset] { get }
}

extension DiTFamily {
    public static var weightRules: WeightRules { .none }
    public static func randomWeightAdjustment(_ configuration: Configuration, steps: Int) -> WeightAdjustment? { nil }
    public static func velocity(_ configuration: Configuration) -> VelocityConvention { .identity }
    public static var guidanceScale: Float? { nil }
    public static var defaultPreset: TeaCachePreset { presets[0] }
    public static var magCachePresets: [MagCachePreset] { [] }
}

/// A model whose forward refuses inputs whose estimated activations exceed ``memoryBudget`` (with
/// `TensorError.memoryBudgetExceeded`, before computing anything), so that an input too large for the
/// machine is a typed error, not an out-of-memory kill.
public protocol MemoryBudgeted {
    /// The memory one forward may plan to use (default: `MemoryBudget/machineDefault`).
    var memoryBudget: MemoryBudget { get set }
}
