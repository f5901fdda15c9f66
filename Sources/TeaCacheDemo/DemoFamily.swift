import DiTHarness
import DiTModels
import Foundation
import TeaCache
import Tensors

/// A registered model family (`DiTFamilies`) as the demo and the calibration use it: its preset,
/// thresholds and a ``DemoWorkload`` built from a ``ModelSource``.
public struct DemoFamily: Sendable {
    /// The family.
    public let family: any DiTFamilyHarness.Type
    /// The `--model` name as given: the family's name or an alias.
    public let name: String
    /// The TeaCache preset an alias selects (`tangoflux`), else nil.
    private let aliasPreset: TeaCachePreset?

    /// The family registered under `name` (`--model`), or the family an alias belongs to: one of its
    /// fixture names (`tangoflux`) or the name of one of its presets (`wan2.1_t2v_14b`), which then
    /// becomes ``builtInPreset``.
    /// - Throws: ``DemoError/unknownModel(_:available:)`` listing ``modelNames``.
    public init(named name: String) throws(DemoError) {
        if let f = DiTFamilies.harnessed.first(where: { $0.name == name }) {
            (family, self.name, aliasPreset) = (f, name, nil)
            return
        }
        for f in DiTFamilies.harnessed where f.fixtureNames.contains(name) || f.presets.contains(where: { $0.name == name }) {
            (family, self.name, aliasPreset) = (f, name, f.presets.first { $0.name == name })
            return
        }
        throw .unknownModel(name, available: Self.modelNames)
    }

    /// Every `--model` name: each family's name, then its other fixture names (`tangoflux`). Any preset
    /// name of a family is accepted too (`teacache presets` lists them).
    public static var modelNames: [String] {
        var seen = Set<String>(), out: [String] = []
        for f in DiTFamilies.harnessed { for n in [f.name] + f.fixtureNames where seen.insert(n).inserted { out.append(n) } }
        return out
    }

    /// One line describing the family.
    public var summary: String { family.summary }
    /// The reference coefficients the demo compares with.
    public var builtInPreset: TeaCachePreset { aliasPreset ?? family.defaultPreset }
    /// Default thresholds of the demo (applied to every coefficient set).
    public var defaultThresholds: [Double] { family.demoThresholds }
    /// A description of the tensor TeaCache compares (written into calibrated presets).
    public var modulatedInputDescription: String { builtInPreset.modulatedInput }

    /// Builds the model and the sampling run described by `source`.
    public func makeWorkload(_ source: ModelSource) throws(DemoError) -> any DemoWorkload {
        try source.validate()
        do { return try Self.workload(family, source) } catch { throw DemoError.wrap(error) }
    }

    /// The workload of family `F`: the `--config` file's (or the embedded benchmark shape's)
    /// configuration and input sizes, stored or seeded random weights (tapered for the step count), the
    /// family's sampling conventions and seeded random inputs.
    static func workload<F: DiTFamilyHarness>(_: F.Type, _ source: ModelSource) throws -> any DemoWorkload {
        let configuration: F.Configuration
        let sizes: BenchmarkInputs
        if let data = try source.configData() {
            do {
                let (className, body) = try ModelConfigFile.parse(data)
                configuration = try F.Configuration.parse(body, className: className)
                sizes = try ForwardBenchmark.inputs(of: data) ?? F.benchmarkDefault.inputs
            } catch { throw DemoError.wrap(error, context: source.configPath ?? "--config") }
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
        } catch { throw DemoError.wrap(error) }
        let model: F.Model
        do {
            if let w = source.weightsPath {
                model = try F.load(configuration, weightsAt: URL(fileURLWithPath: w), precision: source.precision)
            } else {
                // The bytes the activations leave, for the weights at the chosen precision.
                model = try F.random(configuration, seed: source.seed, steps: source.steps, precision: source.precision,
                                     memoryBudget: MemoryBudget(bytes: Double(parameterBudget) * 4))
            }
        } catch { throw DemoError.wrap(error) }
        let sampler: FlowMatchEulerSampler
        do {
            sampler = try FlowMatchEulerSampler(steps: source.steps, timestepConvention: F.timestepConvention,
                                                velocity: F.velocity(configuration), guidanceScale: F.guidanceScale)
        } catch { throw DemoError.teaCache(error) }
        let guidance = F.guidanceScale.map { ", CFG \(String(format: "%g", $0))" } ?? ""
        let summary = cost.summary + guidance + ", "
            + (source.weightsPath.map { "weights \($0)" }
               ?? "random weights (seed \(source.seed), taper for \(source.steps) steps)")
            + (source.precision == .float32 ? "" : ", \(source.precision) weights")
        return SampledWorkload(model: model, sampler: sampler, inputSeed: source.seed &+ 1, summary: summary) { seed in
            try F.randomInputs(configuration, sizes: sizes, seed: seed)
        }
    }
}
