import Foundation
import Tensors

/// A built model and the number of parameters it took.
public struct LoadedModel<Model>: Sendable where Model: Sendable {
    /// The model.
    public var model: Model
    /// Scalars taken from the weights (4 bytes each in float32).
    public var parameterCount: Int
}

extension DiTFamily {
    /// Builds the model from the weights at `url`: a safetensors file, a sharded checkpoint's index
    /// JSON, or a diffusers `transformer/` folder (see ``WeightsLocation``).
    ///
    /// Tensor shapes are checked against the stored headers before any tensor data is read.
    /// - Throws: `unsupportedConfig` for an invalid configuration; ``ModelLoadError/weightsNotFound(path:reason:)``
    ///   or ``ModelLoadError/invalidWeights(path:error:)`` for unusable files; one
    ///   ``ModelLoadError/weightMismatch(missing:unexpected:misshaped:)`` listing every missing,
    ///   unexpected and mis-shaped tensor.
    public static func load(_ configuration: Configuration, weightsAt url: URL) throws(ModelLoadError) -> Model {
        try configuration.validate()
        return try build(configuration, WeightLoader(safetensorsAt: url)).model
    }

    /// Builds the model from a diffusers state dict (every tensor by parameter name).
    /// - Throws: as ``load(_:weightsAt:)``.
    public static func load(_ configuration: Configuration, tensors: [String: Tensor]) throws(ModelLoadError) -> Model {
        try configuration.validate()
        return try build(configuration, WeightLoader(tensors: tensors)).model
    }

    /// A model with seeded random weights (FORMAT.md §6 scheme) for demos and benchmarks, its timestep
    /// embedding tapered for a `steps`-step run (``randomWeightAdjustment(_:steps:)``).
    /// - Throws: `unsupportedConfig` for an invalid configuration or `steps < 1`;
    ///   ``ModelLoadError/memoryBudgetExceeded(what:bytes:budget:)`` when the model would have more than
    ///   `parameterBudget` parameters.
    public static func random(
        _ configuration: Configuration, seed: UInt64, steps: Int,
        parameterBudget: Int = SizeLimits.maximumRandomParameters
    ) throws(ModelLoadError) -> Model {
        try randomCounting(configuration, seed: seed, steps: steps, parameterBudget: parameterBudget).model
    }

    /// ``random(_:seed:steps:parameterBudget:)`` with the parameter count.
    public static func randomCounting(
        _ configuration: Configuration, seed: UInt64, steps: Int,
        parameterBudget: Int = SizeLimits.maximumRandomParameters
    ) throws(ModelLoadError) -> LoadedModel<Model> {
        guard steps > 0 else {
            throw .unsupportedConfig(field: "steps", value: "\(steps)", reason: "the taper period must be positive")
        }
        try configuration.validate()
        let loader = WeightLoader(randomSeed: seed, adjust: randomWeightAdjustment(configuration, steps: steps),
                                  parameterBudget: parameterBudget)
        return try build(configuration, loader)
    }

    /// Runs ``makeModel(_:weights:)`` and finishes the load: the only way a model is built from a loader.
    static func build(_ configuration: Configuration, _ loader: WeightLoader) throws(ModelLoadError) -> LoadedModel<Model> {
        loader.apply(weightRules)
        let model: Model
        do {
            model = try makeModel(configuration, weights: loader.root)
        } catch {
            // A placeholder for a missing or mis-shaped tensor can make construction fail; the weights
            // are then the cause to report.
            if loader.hasProblems { try loader.finish() }
            throw error
        }
        try loader.finish()
        return LoadedModel(model: model, parameterCount: loader.parameterCount)
    }
}
