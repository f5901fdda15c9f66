import Foundation
import TeaCache
import Tensors

/// What the verification and benchmark harness (the `DiTHarness` module: `teacache verify`, `bench`,
/// `demo`, `calibrate`) needs of a family beyond running it: the demo's thresholds, the benchmark shape and
/// its cost, and how the family reads fixture folders (FORMAT.md).
///
/// Every built-in family conforms, in its `<Family>Family.swift` under `// MARK: Harness`. A family
/// registered from outside the package needs only ``DiTFamily`` to be loaded and sampled; it conforms to
/// this protocol as well to be verified against fixtures and benchmarked.
///
/// Requirements, by role:
/// - **demo**: ``demoThresholds``;
/// - **benchmark and demo shape**: ``benchmarkFileName``, ``benchmarkDefault``,
///   ``randomInputs(_:sizes:seed:)``, ``cost(_:sizes:)``;
/// - **fixtures** (FORMAT.md): ``fixtureNames``, ``forwardInput(_:configuration:)``,
///   and overridable defaults
///   ``residualNames``, ``forwardResults(model:input:)``, ``teaCacheConfiguration(record:steps:)``,
///   ``model(_:for:)``, ``recordedCacheKey(_:)``, ``fixtureName(configuration:)``.
public protocol DiTFamilyHarness: DiTFamily {
    /// Thresholds that show a useful range of skip rates on the demo's default model.
    static var demoThresholds: [Double] { get }
    /// The fixture family names (`sampling.json`'s `family`) this family verifies; default `[name]`.
    static var fixtureNames: [String] { get }

    // MARK: Benchmark and demo shape

    /// The file name of the family's benchmark shape in `Benchmarks/configs/` (e.g. `flux-bench.json`).
    static var benchmarkFileName: String { get }
    /// The configuration and input sizes of that file: the demo's embedded default model.
    static var benchmarkDefault: BenchmarkShape<Configuration> { get }
    /// Seeded random inputs of a benchmark/demo `inputs` table: the initial latent and how each call's
    /// input is built (a different conditioning for the `.uncond` branch).
    /// - Throws: ``ModelLoadError`` for a missing or invalid size (bounded by ``SizeLimits``).
    static func randomInputs(_ configuration: Configuration, sizes: BenchmarkInputs, seed: UInt64) throws -> SamplingInputs<Model.Input>
    /// The analytic cost of one forward at `sizes` (FLOPs, largest activation set) and a one-line
    /// description of the shape.
    static func cost(_ configuration: Configuration, sizes: BenchmarkInputs) throws -> ForwardCost

    // MARK: Fixtures

    /// The fixture family name of a folder whose files do not state one (nil: not this family's);
    /// default the first of ``fixtureNames``.
    static func fixtureName(configuration: Configuration) -> String?
    /// The input of the forward check (`input.*` tensors and forward.json's `non_tensor_args`).
    static func forwardInput(_ arguments: FixtureArguments, configuration: Configuration) throws -> Model.Input
    /// The forward.safetensors name of each cached stream's residual, in stream order; default
    /// `["teacache.residual", "teacache.residual_encoder"]`.
    static var residualNames: [String] { get }
    /// Tensors to compare with forward.safetensors, by name; default: `output`, `teacache.modulated_input`
    /// and one residual per cached stream (``residualNames``).
    static func forwardResults(model: Model, input: Model.Input) throws -> [String: Tensor]
    /// The TeaCache configuration reproducing a record's counter rule; default: the standard counter
    /// (first and last step forced).
    static func teaCacheConfiguration(record: SamplingRecord, steps: Int) throws -> TeaCacheConfiguration
    /// The model to wrap with TeaCache for a record (a family whose records select another modulated
    /// input returns a differently configured model); default `model`.
    static func model(_ model: Model, for record: SamplingRecord) throws -> Model
    /// The cache entry a recorded call used, as the `BranchKey` the model's
    /// `DiffusionTransformer/cacheKey(for:branch:)` gives it; default the call's CFG branch.
    static func recordedCacheKey(_ call: SamplingRecord.Call) -> BranchKey
}

extension DiTFamilyHarness {
    public static var fixtureNames: [String] { [name] }
    public static func fixtureName(configuration: Configuration) -> String? { fixtureNames.first }
    public static var residualNames: [String] { ["teacache.residual", "teacache.residual_encoder"] }
    public static func model(_ model: Model, for record: SamplingRecord) throws -> Model { model }
    public static func recordedCacheKey(_ call: SamplingRecord.Call) -> BranchKey { BranchKey(call.cfgBranch) }

    /// `output` (the full forward), `teacache.modulated_input`, and one residual per cached stream,
    /// named by ``residualNames``.
    public static func forwardResults(model: Model, input: Model.Input) throws -> [String: Tensor] {
        var state = try model.prepare(input)
        var results = ["teacache.modulated_input": try model.modulatedInput(state)]
        let before = state.streams
        try model.runBlocks(&state)
        let names = residualNames
        for (i, (after, b)) in zip(state.streams, before).enumerated() where i < names.count {
            results[names[i]] = try after - b
        }
        results["output"] = try model.outputHead(state)
        return results
    }

    /// The standard counter (FORMAT.md §4): one counter per call with period N, first and last step forced.
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
}

/// A benchmark shape: a family's configuration and the integer sizes of a benchmark file's `inputs`
/// table (`Benchmarks/configs/*.json`: `{"class", "config", "inputs"}`).
public struct BenchmarkShape<Configuration: DiTConfiguration>: Sendable {
    /// The model configuration.
    public var configuration: Configuration
    /// The input sizes (batch, latent extents, token counts; their names are the family's).
    public var inputs: BenchmarkInputs

    /// A shape.
    public init(configuration: Configuration, inputs: BenchmarkInputs) {
        self.configuration = configuration
        self.inputs = inputs
    }
}

/// The integer `inputs` table of a benchmark file.
public struct BenchmarkInputs: Sendable, Equatable, Decodable {
    /// Every size by name.
    public var values: [String: Int]

    /// A table.
    public init(_ values: [String: Int]) { self.values = values }

    /// Decodes a JSON object of integers.
    public init(from decoder: any Decoder) throws {
        values = try decoder.singleValueContainer().decode([String: Int].self)
    }

    /// The size `name` in `1 ... SizeLimits.maximumExtent`, or a `malformedConfig` error saying it is
    /// missing or out of range.
    public func positive(_ name: String) throws(ModelLoadError) -> Int {
        guard let v = values[name] else { throw .malformedConfig(reason: "benchmark inputs need \"\(name)\"") }
        try SizeLimits.checkInput(name, v)
        return v
    }

    /// The size `name` when present (checked like ``positive(_:)``), else `fallback`.
    public func positive(_ name: String, default fallback: Int) throws(ModelLoadError) -> Int {
        values[name] == nil ? fallback : try positive(name)
    }
}

/// The analytic cost of one forward at a benchmark shape.
public struct ForwardCost: Sendable {
    /// The shape in words (e.g. "FLUX 512-wide, 2 double + 4 single blocks, 1024 image + 128 text tokens, batch 1").
    public var summary: String
    /// Matmul and attention floating-point operations (2 per multiply-add).
    public var flops: Double
    /// Estimated bytes of the largest set of activations alive at once.
    public var activationBytes: Int

    /// A cost.
    public init(summary: String, flops: Double, activationBytes: Int) {
        self.summary = summary
        self.flops = flops
        self.activationBytes = activationBytes
    }
}

/// The inputs of one sampling run: the initial latent and how a call's input is built from the
/// current latent, the timestep value and the branch.
public struct SamplingInputs<Input> {
    /// The initial latent (noise).
    public var latent: Tensor
    /// The model input of one call.
    public var makeInput: (_ latent: Tensor, _ timestep: Float, _ branch: BranchKey) throws -> Input

    /// Inputs from their parts.
    public init(latent: Tensor, makeInput: @escaping (Tensor, Float, BranchKey) throws -> Input) {
        self.latent = latent
        self.makeInput = makeInput
    }
}
