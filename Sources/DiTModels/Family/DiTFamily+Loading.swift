import Foundation
import Safetensors
import Tensors

/// A built model and the number of parameters it took.
public struct LoadedModel<Model>: Sendable where Model: Sendable {
    /// The model.
    public var model: Model
    /// Scalars taken from the weights.
    public var parameterCount: Int
    /// Bytes the weights take in the precision they were loaded in (matrices at that precision, other
    /// parameters float32).
    public var weightBytes: Double
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
    ///
    /// `precision` is how the weight matrices are held (`WeightPrecision`): a bf16 (f16) checkpoint read
    /// as `.bfloat16` (`.float16`), or an int8 file written by ``convertWeights(_:weightsAt:precision:to:)``
    /// (`teacache quantize`) read as `.int8`, is used in place from the memory-mapped file; other combinations are converted tensor by
    /// tensor (int8: quantised at load), never the whole checkpoint at once.
    public static func load(_ configuration: Configuration, weightsAt url: URL,
                            precision: WeightPrecision = .float32) throws(ModelLoadError) -> Model {
        try configuration.validate()
        return try build(configuration, WeightLoader(safetensorsAt: url, precision: precision).notRecording()).model
    }

    /// Builds the model from a diffusers state dict (every tensor by parameter name), its weight matrices
    /// in `precision`.
    /// - Throws: as ``load(_:weightsAt:precision:)``.
    public static func load(_ configuration: Configuration, tensors: [String: Tensor],
                            precision: WeightPrecision = .float32) throws(ModelLoadError) -> Model {
        try configuration.validate()
        return try build(configuration, WeightLoader(tensors: tensors, precision: precision).notRecording()).model
    }

    /// What a model of `configuration` holds, counted without allocating anything: its parameters and
    /// their bytes with the weight matrices in `precision`.
    /// - Throws: `unsupportedConfig` for an invalid configuration.
    public static func weightFootprint(_ configuration: Configuration,
                                       precision: WeightPrecision = .float32) throws(ModelLoadError) -> (parameters: Int, bytes: Double) {
        try configuration.validate()
        let counter = WeightLoader(countingIn: precision)
        counter.apply(weightRules)
        // Built on placeholders only to count what it asks for; such a model is never used, so an
        // error its construction may raise on placeholders is of no interest.
        _ = try? makeModel(configuration, weights: counter.root)
        return (counter.parameterCount, counter.weightBytes)
    }

    /// A model with seeded random weights (FORMAT.md §6 scheme) for demos and benchmarks, its timestep
    /// embedding tapered for a `steps`-step run (``randomWeightAdjustment(_:steps:)``).
    /// - Throws: `unsupportedConfig` for an invalid configuration or `steps < 1`;
    ///   ``ModelLoadError/memoryBudgetExceeded(what:bytes:budget:)`` when the model would have more than
    ///   `parameterBudget` parameters.
    public static func random(
        _ configuration: Configuration, seed: UInt64, steps: Int, precision: WeightPrecision = .float32,
        parameterBudget: Int = SizeLimits.maximumRandomParameters, memoryBudget: MemoryBudget = .unlimited
    ) throws(ModelLoadError) -> Model {
        try randomCounting(configuration, seed: seed, steps: steps, precision: precision,
                           parameterBudget: parameterBudget, memoryBudget: memoryBudget).model
    }

    /// ``random(_:seed:steps:precision:parameterBudget:memoryBudget:)`` with the parameter count.
    ///
    /// The weights' size is counted from the configuration first (``weightFootprint(_:precision:)``):
    /// more than `parameterBudget` parameters, or more bytes at `precision` than `memoryBudget`, is
    /// refused before anything is drawn (naming the precisions that would fit).
    public static func randomCounting(
        _ configuration: Configuration, seed: UInt64, steps: Int, precision: WeightPrecision = .float32,
        parameterBudget: Int = SizeLimits.maximumRandomParameters, memoryBudget: MemoryBudget = .unlimited
    ) throws(ModelLoadError) -> LoadedModel<Model> {
        guard steps > 0 else {
            throw .unsupportedConfig(field: "steps", value: "\(steps)", reason: "the taper period must be positive")
        }
        let footprint = try weightFootprint(configuration, precision: precision)
        guard footprint.parameters <= parameterBudget else {
            throw .memoryBudgetExceeded(what: "random weights of \(footprint.parameters) parameters (at most \(parameterBudget) are drawn)",
                                        bytes: footprint.bytes, budget: Double(parameterBudget) * precision.bytesPerWeight)
        }
        guard footprint.bytes <= memoryBudget.bytes else {
            let fitting = WeightPrecision.fitting(parameters: footprint.parameters, budget: memoryBudget).map(\.rawValue)
            let hint = fitting.isEmpty ? "no precision fits; raise the memory budget" : "\(fitting.joined(separator: " or ")) would fit"
            throw .memoryBudgetExceeded(what: "\(precision) weights of \(footprint.parameters) parameters (\(hint))",
                                        bytes: footprint.bytes, budget: memoryBudget.bytes)
        }
        let loader = WeightLoader(randomSeed: seed, adjust: randomWeightAdjustment(configuration, steps: steps),
                                  parameterBudget: parameterBudget, precision: precision)
        return try build(configuration, loader.notRecording())
    }

    /// Writes the weights at `url` again with their weight matrices stored in `precision` (int8:
    /// quantised, `Int8WeightFormat`; other parameters float32), under their diffusers names, so that
    /// ``load(_:weightsAt:precision:)`` with the same precision later uses them in place: a user
    /// quantises once. The weights are checked against `configuration` exactly as a load does; the file
    /// appears at `output` only when complete.
    /// - Throws: as ``load(_:weightsAt:precision:)``; ``ModelLoadError/invalidWeights(path:error:)`` when
    ///   `output` cannot be written.
    public static func convertWeights(_ configuration: Configuration, weightsAt url: URL, precision: WeightPrecision,
                                      to output: URL) throws(ModelLoadError) {
        try configuration.validate()
        let loader = try WeightLoader(safetensorsAt: url, precision: precision)
        _ = try build(configuration, loader)
        var writer = SafetensorsStreamWriter(metadata: ["format": "pt", "teacache.precision": precision.rawValue])
        do throws(SafetensorsError) {
            for (name, m) in loader.suppliedMatrices { try writer.add(m, named: name) }
            for (name, t) in loader.supplied where loader.suppliedMatrices[name] == nil { try writer.add(t, named: name) }
            try writer.write(to: output)
        } catch {
            throw .invalidWeights(path: output.path, error: error)
        }
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
        return LoadedModel(model: model, parameterCount: loader.parameterCount, weightBytes: loader.weightBytes)
    }
}
