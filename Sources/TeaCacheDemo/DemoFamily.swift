import DiTModels
import Foundation
import TeaCache
import Tensors

/// A registered model family (``DiTFamilies``) as the demo and the calibration use it: its preset,
/// thresholds and a ``DemoWorkload`` built from a ``ModelSource``.
public struct DemoFamily: Sendable {
    /// The family.
    public let family: any DiTFamily.Type

    /// The family registered under `name` (`--model`).
    /// - Throws: ``DemoError/unknownModel(_:available:)``.
    public init(named name: String) throws(DemoError) {
        guard let f = DiTFamilies.all.first(where: { $0.name == name }) else {
            throw .unknownModel(name, available: DiTFamilies.names)
        }
        family = f
    }

    /// The `--model` name.
    public var name: String { family.name }
    /// One line describing the family.
    public var summary: String { family.summary }
    /// The reference coefficients the demo compares with.
    public var builtInPreset: TeaCachePreset { family.defaultPreset }
    /// Default thresholds of the demo (applied to every coefficient set).
    public var defaultThresholds: [Double] { family.demoThresholds }
    /// A description of the tensor TeaCache compares (written into calibrated presets).
    public var modulatedInputDescription: String { family.defaultPreset.modulatedInput }

    /// Builds the model and the sampling run described by `source`.
    public func makeWorkload(_ source: ModelSource) throws(DemoError) -> any DemoWorkload {
        try source.validate()
        do { return try Self.workload(family, source) } catch { throw DemoError.wrap(error) }
    }

    /// The workload of family `F`: the `--config` file's (or the embedded benchmark shape's)
    /// configuration and input sizes, stored or seeded random weights (tapered for the step count), the
    /// family's sampling conventions and seeded random inputs.
    static func workload<F: DiTFamily>(_: F.Type, _ source: ModelSource) throws -> any DemoWorkload {
        let configuration: F.Configuration
        let sizes: BenchmarkInputs
        if let data = try source.configData() {
            do {
                let (className, body) = try ModelConfigFile.parse(data)
                configuration = try F.Configuration.parse(body, className: className)
                sizes = try ForwardBenchmark.inputs(of: data) ?? F.benchmarkDefault.inputs
            } catch { throw DemoError.model("\(source.configPath ?? "--config"): \(error)") }
        } else {
            (configuration, sizes) = (F.benchmarkDefault.configuration, F.benchmarkDefault.inputs)
        }
        // What the run will allocate, from the sizes alone, before the model or any input exists: a
        // forward's activations plus as much again for what a sampling run keeps beside it (cached
        // residuals, previous modulated inputs, both CFG outputs); random weights get what is left.
        let cost: ForwardCost
        let parameterBudget: Int
        do {
            (cost, parameterBudget) = try RunBudget.check(F.self, configuration: configuration, inputs: sizes,
                                                          budget: source.memoryBudget, activationSets: 2)
        } catch { throw DemoError.model("\(error)") }
        let model: F.Model
        do {
            if let w = source.weightsPath {
                model = try F.load(configuration, weightsAt: URL(fileURLWithPath: w))
            } else {
                model = try F.random(configuration, seed: source.seed, steps: source.steps, parameterBudget: parameterBudget)
            }
        } catch { throw DemoError.model("\(error)") }
        let sampler: FlowMatchEulerSampler
        do {
            sampler = try FlowMatchEulerSampler(steps: source.steps, timestepConvention: F.timestepConvention,
                                                velocity: F.velocity(configuration), guidanceScale: F.guidanceScale)
        } catch { throw DemoError.teaCache(error) }
        let guidance = F.guidanceScale.map { ", CFG \(String(format: "%g", $0))" } ?? ""
        let summary = cost.summary + guidance + ", "
            + (source.weightsPath.map { "weights \($0)" }
               ?? "random weights (seed \(source.seed), taper for \(source.steps) steps)")
        return SampledWorkload(model: model, sampler: sampler, inputSeed: source.seed &+ 1, summary: summary) { seed in
            try F.randomInputs(configuration, sizes: sizes, seed: seed)
        }
    }
}
