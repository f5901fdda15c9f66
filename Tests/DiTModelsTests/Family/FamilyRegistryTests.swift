import Foundation
import Testing
import TestSupport
import TeaCache
import Tensors
import DiTHarness
@testable import DiTModels

/// The registry (``DiTFamilies``): lookups by class and name, every family's benchmark file, and a
/// family defined outside the package registering the same way.
@Suite struct FamilyRegistryTests {
    static let benchmarkConfigs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Benchmarks/configs")

    @Test func lookupsByClassAndName() throws {
        #expect(try DiTFamilies.family(forClass: "FluxTransformer2DModel") == FluxFamily.self)
        #expect(try DiTFamilies.family(forClass: "WanTransformer3DModel") == WanFamily.self)
        #expect(try DiTFamilies.family(named: "wan21") == WanFamily.self)
        #expect { try DiTFamilies.family(forClass: "SD3Transformer2DModel") } throws: { e in
            guard case let ModelLoadError.wrongClass(expected, got) = e else { return false }
            return got == "SD3Transformer2DModel" && expected.contains("FluxTransformer2DModel")
        }
        #expect(throws: ModelLoadError.self) { try DiTFamilies.family(named: "sd3") }
        let names = DiTFamilies.builtIn.map { $0.name }
        #expect(Set(names).count == names.count, "family names must be unique")
        let classes = DiTFamilies.builtIn.flatMap { $0.classNames }
        #expect(Set(classes).count == classes.count, "a class belongs to one family")
    }

    /// Each family's embedded benchmark shape (the demo's default) is its `Benchmarks/configs` file.
    @Test(arguments: DiTFamilies.builtIn.map { $0.name })
    func benchmarkFileIsTheEmbeddedDefault(_ name: String) throws {
        try Self.check(DiTFamilies.harness(named: name))
    }

    static func check<F: DiTFamilyHarness>(_: F.Type) throws {
        let url = benchmarkConfigs.appendingPathComponent(F.benchmarkFileName)
        let data = try Data(contentsOf: url)
        let (cls, body) = try ModelConfigFile.parse(data)
        #expect(F.classNames.contains(cls), "\(F.benchmarkFileName): class \(cls)")
        #expect(try F.Configuration.parse(body, className: cls) == F.benchmarkDefault.configuration, "\(F.name) config")
        #expect(try ForwardBenchmark.inputs(of: data) == F.benchmarkDefault.inputs, "\(F.name) inputs")
        let cost = try F.cost(F.benchmarkDefault.configuration, sizes: F.benchmarkDefault.inputs)
        #expect(cost.flops > 1e9 && cost.activationBytes > 0 && !cost.summary.isEmpty)
    }

    @Test func aFamilyFromOutsideThePackageRegisters() throws {
        DiTFamilies.register(ScaleFamily.self)
        DiTFamilies.register(ScaleFamily.self)
        #expect(DiTFamilies.all.filter { $0 == ScaleFamily.self }.count == 1)
        #expect(try DiTFamilies.family(forClass: "ScaleTestTransformer") == ScaleFamily.self)
        let json = #"{"class": "ScaleTestTransformer", "config": {"width": 3}, "inputs": {"batch": 2, "tokens": 5}}"#
        let bench = try ForwardBenchmark.make(data: Data(json.utf8))
        #expect(bench.summary == "scale 3-wide, 5 tokens, batch 2")
        #expect(bench.weightBytes == 4 * (3 * 3 + 3 + 3 * 3))
        try bench.run()
    }

    /// A family with only the model half (``DiTFamily``) loads and samples; the harness names what it
    /// lacks instead of failing later.
    @Test func aModelOnlyFamilyIsNamedByTheHarness() throws {
        DiTFamilies.register(BareScaleFamily.self)
        #expect(try DiTFamilies.family(forClass: "BareScaleTestTransformer") == BareScaleFamily.self)
        #expect(!DiTFamilies.harnessed.contains { $0 == BareScaleFamily.self })
        #expect(throws: HarnessError.noHarness(family: "bare-scale-test")) { try DiTFamilies.harness(named: "bare-scale-test") }
        let model = try BareScaleFamily.random(BareScaleConfiguration(width: 3), seed: 2, steps: 4)
        let x = randomTensor([1, 2, 3], seed: 3)
        let out = try model.forward(ScaleInput(latent: x, timestep: 500))
        // y = W₂·(W₁x + b): the output head returns the block's output (the time factor only feeds
        // the modulated input).
        let reference = try linear(try model.projIn(x), weight: model.block)
        #expect(relL2(out, reference) < 1e-6)
    }

    /// The loader is finished by the family's loading functions: a missing tensor is an error listing it,
    /// never a model with a placeholder.
    @Test func aMissingTensorIsNeverUsedSilently() throws {
        let c = ScaleConfiguration(width: 3)
        let model = try ScaleFamily.random(c, seed: 1, steps: 4)
        var weights: [String: Tensor] = ["proj_in.weight": model.projIn.weight.float32Tensor(), "proj_in.bias": try #require(model.projIn.bias),
                                         "blocks.0.weight": model.block]
        #expect(try ScaleFamily.load(c, tensors: weights).block == model.block)
        weights["blocks.0.weight"] = nil
        weights["stray"] = try Tensor(zeros: [1])
        #expect { try ScaleFamily.load(c, tensors: weights) } throws: { e in
            guard case let ModelLoadError.weightMismatch(missing, unexpected, misshaped) = e else { return false }
            return missing == ["blocks.0.weight"] && unexpected == ["stray"] && misshaped.isEmpty
        }
    }
}

// MARK: - A family defined by a "user" of the package

struct ScaleConfiguration: DiTConfiguration {
    static let classNames = ["ScaleTestTransformer"]
    var width = 4
    func validate() throws(ModelLoadError) {
        guard width > 0, width <= 64 else { throw .unsupportedConfig(field: "width", value: "\(width)", reason: "1...64") }
    }
}

struct ScaleInput { var latent: Tensor; var timestep: Float }

struct ScaleState: TransformerState {
    var streams: [Tensor]
    var timestep: Float
}

/// `y = W₂·(W₁x + b)·(1 − t/1000)` with one "block" `W₂`.
struct ScaleModel: DiffusionTransformer, MemoryBudgeted, Sendable {
    let projIn: Linear
    let block: Tensor
    var memoryBudget = MemoryBudget.machineDefault

    func prepare(_ input: ScaleInput) throws -> ScaleState {
        try memoryBudget.check("scale forward", bytes: Double(4 * input.latent.count))
        return ScaleState(streams: [try projIn(input.latent)], timestep: input.timestep)
    }
    func modulatedInput(_ s: ScaleState) throws -> Tensor { s.streams[0] * (1 - s.timestep / 1000) }
    func runBlocks(_ s: inout ScaleState) throws { s.streams[0] = try linear(s.streams[0], weight: block) }
    func outputHead(_ s: ScaleState) throws -> Tensor { s.streams[0] }
}

enum ScaleFamily: DiTFamilyHarness {
    typealias Configuration = ScaleConfiguration
    typealias Model = ScaleModel
    static let name = "scale-test"
    static let summary = "a test family"
    static func makeModel(_ c: ScaleConfiguration, weights w: WeightScope) throws(ModelLoadError) -> ScaleModel {
        ScaleModel(projIn: Linear(w["proj_in"], in: c.width, out: c.width), block: w["blocks"][0].tensor("weight", shape: [c.width, c.width]))
    }
    static let timestepConvention = TimestepConvention.sigmaTimes1000
    static var presets: [TeaCachePreset] { [.flux] }
    static let demoThresholds = [0.1]
    static let benchmarkFileName = "scale-bench.json"
    static var benchmarkDefault: BenchmarkShape<ScaleConfiguration> {
        BenchmarkShape(configuration: ScaleConfiguration(), inputs: BenchmarkInputs(["batch": 1, "tokens": 2]))
    }
    static func randomInputs(_ c: ScaleConfiguration, sizes: BenchmarkInputs, seed: UInt64) throws -> SamplingInputs<ScaleInput> {
        var g = SeededGenerator(seed: seed)
        let latent = try Tensor.randomNormal(shape: [sizes.positive("batch"), sizes.positive("tokens"), c.width], using: &g)
        return SamplingInputs(latent: latent) { x, t, _ in ScaleInput(latent: x, timestep: t) }
    }
    static func cost(_ c: ScaleConfiguration, sizes: BenchmarkInputs) throws -> ForwardCost {
        let b = try sizes.positive("batch"), s = try sizes.positive("tokens")
        return ForwardCost(summary: "scale \(c.width)-wide, \(s) tokens, batch \(b)",
                           flops: Double(4 * b * s * c.width * c.width), activationBytes: 8 * b * s * c.width)
    }
    static func forwardInput(_ a: FixtureArguments, configuration: ScaleConfiguration) throws -> ScaleInput {
        ScaleInput(latent: try a.tensor("hidden_states"), timestep: try a.tensor("timestep").scalars[0])
    }
    static func samplingInput(latent: Tensor, timestep: Float, conditioning: FixtureArguments,
                              configuration: ScaleConfiguration) throws -> ScaleInput {
        ScaleInput(latent: latent, timestep: timestep)
    }
}

/// ``ScaleFamily``'s model under another class name, with the model half of the protocol only.
struct BareScaleConfiguration: DiTConfiguration {
    static let classNames = ["BareScaleTestTransformer"]
    var width = 4
    func validate() throws(ModelLoadError) { try ScaleConfiguration(width: width).validate() }
}

enum BareScaleFamily: DiTFamily {
    typealias Configuration = BareScaleConfiguration
    typealias Model = ScaleModel
    static let name = "bare-scale-test"
    static let summary = "a test family without the harness half"
    static func makeModel(_ c: BareScaleConfiguration, weights w: WeightScope) throws(ModelLoadError) -> ScaleModel {
        try ScaleFamily.makeModel(ScaleConfiguration(width: c.width), weights: w)
    }
    static let timestepConvention = TimestepConvention.sigmaTimes1000
    static var presets: [TeaCachePreset] { [.flux] }
    static func samplingInput(latent: Tensor, timestep: Float, conditioning: FixtureArguments,
                              configuration: BareScaleConfiguration) throws -> ScaleInput {
        ScaleInput(latent: latent, timestep: timestep)
    }
}
