import DiTModels
import Foundation
import Tensors

/// One model forward prepared for timing: a randomly initialised model with inputs of a benchmark
/// shape, plus the analytic cost figures the `teacache bench forward` report needs.
///
/// Built from a benchmark file (`Benchmarks/configs/*.json`): `{"class", "config", "inputs"}` where
/// `config` is a diffusers configuration and `inputs` holds integer sizes (batch, latent sizes, text
/// tokens) whose meaning is the family's. The family is the registry's for the class (`DiTFamilies`).
public struct ForwardBenchmark {
    /// A description of the benchmark shape (e.g. "FLUX 512-wide, 2+4 blocks, 1024+128 tokens, B=1").
    public let summary: String
    /// Matmul and attention floating-point operations of one forward (2 per multiply-add).
    public let flops: Double
    /// Bytes of the model parameters in the benchmark's precision.
    public let weightBytes: Int
    /// The weight precision.
    public var precision: WeightPrecision = .float32
    /// Estimated bytes of the largest set of activations alive at once during the forward.
    public let activationBytes: Int
    /// Runs one forward.
    public let run: () throws -> Void

    /// A benchmark from its parts.
    public init(summary: String, flops: Double, weightBytes: Int, activationBytes: Int, run: @escaping () throws -> Void) {
        self.summary = summary
        self.flops = flops
        self.weightBytes = weightBytes
        self.activationBytes = activationBytes
        self.run = run
    }

    /// The sigma of the benchmark forward's timestep (mid-schedule).
    public static let sigma: Float = 0.5

    /// Reads a benchmark file and builds the benchmark for its model class.
    ///
    /// - Throws: `ModelLoadError` for an unreadable or malformed file, an unknown class, or an invalid
    ///   configuration or input size.
    public static func make(data: Data, seed: UInt64 = 0, precision: WeightPrecision = .float32,
                            memoryBudget: MemoryBudget = .wholeModelDefault) throws -> ForwardBenchmark {
        let (className, config) = try ModelConfigFile.parse(data)
        let family = try DiTFamilies.harness(forClass: className)
        return try make(family, className: className, config: config, inputs: inputs(of: data), seed: seed,
                        precision: precision, memoryBudget: memoryBudget)
    }

    /// Reads the benchmark file at `url` (see `make(data:seed:precision:memoryBudget:)`).
    public static func make(url: URL, seed: UInt64 = 0, precision: WeightPrecision = .float32,
                            memoryBudget: MemoryBudget = .wholeModelDefault) throws -> ForwardBenchmark {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw ModelLoadError.unreadableFile(path: url.path, reason: error.localizedDescription)
        }
        return try make(data: data, seed: seed, precision: precision, memoryBudget: memoryBudget)
    }

    /// The benchmark of family `F` at a configuration and input sizes.
    ///
    /// The weights at `precision` (counted from the configuration) plus the forward's analytic
    /// activation estimate are checked against `memoryBudget` before the model or any input is
    /// allocated; a refusal names the precisions that would fit.
    public static func make<F: DiTFamilyHarness>(
        _: F.Type, configuration: F.Configuration, inputs: BenchmarkInputs, seed: UInt64 = 0,
        precision: WeightPrecision = .float32, memoryBudget: MemoryBudget = .wholeModelDefault
    ) throws -> ForwardBenchmark {
        try configuration.validate()
        // Activations from the sizes alone, before anything is allocated (a refusal names inputs that
        // fit); then the weights at `precision`, counted from the configuration.
        let (cost, _) = try RunBudget.check(F.self, configuration: configuration, inputs: inputs, budget: memoryBudget)
        let footprint = try F.weightFootprint(configuration, precision: precision)
        let activations = Double(cost.activationBytes)
        if footprint.bytes + activations > memoryBudget.bytes {
            let fitting = WeightPrecision.fitting(parameters: footprint.parameters, otherBytes: activations,
                                                  budget: memoryBudget).map(\.rawValue)
            let hint = fitting.isEmpty ? "no weight precision fits: use smaller inputs or a larger --memory-budget"
                : "--precision \(fitting.joined(separator: " or ")) would fit"
            throw ModelLoadError.memoryBudgetExceeded(
                what: "a forward of \(cost.summary) with \(precision) weights (\(footprint.parameters) parameters) and its activations (\(hint))",
                bytes: footprint.bytes + activations, budget: memoryBudget.bytes)
        }
        let loaded = try F.randomCounting(configuration, seed: seed, steps: 28, precision: precision,
                                          parameterBudget: Int.max)
        let x = try F.randomInputs(configuration, sizes: inputs, seed: seed &+ 1)
        let input = try x.makeInput(x.latent, F.timestepConvention.timestep(sigma: sigma), .cond)
        let model = loaded.model
        // The float32 draws of random weights were freed after conversion; give that memory back so the
        // forwards' peak RSS measures the model and its activations, not the allocator's leftovers.
        MemoryBudget.releaseFreedMemory()
        var benchmark = ForwardBenchmark(summary: cost.summary, flops: cost.flops, weightBytes: Int(loaded.weightBytes),
                                         activationBytes: cost.activationBytes, run: { _ = try model.forward(input) })
        benchmark.precision = precision
        return benchmark
    }

    private static func make<F: DiTFamilyHarness>(
        _: F.Type, className: String, config: Data, inputs: BenchmarkInputs?, seed: UInt64, precision: WeightPrecision,
        memoryBudget: MemoryBudget
    ) throws -> ForwardBenchmark {
        let configuration = try F.Configuration.parse(config, className: className)
        return try make(F.self, configuration: configuration, inputs: inputs ?? F.benchmarkDefault.inputs, seed: seed,
                        precision: precision, memoryBudget: memoryBudget)
    }

    /// What a forward of a benchmark file would hold, counted from the configuration alone (nothing is
    /// allocated): parameters, weight bytes at `precision`, and the forward's activation estimate.
    public struct Plan: Sendable {
        /// Parameters of the model.
        public var parameters: Int
        /// Bytes of the weights at the plan's precision.
        public var weightBytes: Double
        /// Estimated bytes of the largest activation set of one forward.
        public var activationBytes: Double
    }

    /// The ``Plan`` of the benchmark file `data` at `precision`.
    /// - Throws: `ModelLoadError` for a malformed file, an unknown class or an invalid configuration.
    public static func plan(data: Data, precision: WeightPrecision) throws -> Plan {
        let (className, config) = try ModelConfigFile.parse(data)
        let family = try DiTFamilies.harness(forClass: className)
        return try plan(family, className: className, config: config, inputs: inputs(of: data), precision: precision)
    }

    private static func plan<F: DiTFamilyHarness>(_: F.Type, className: String, config: Data, inputs: BenchmarkInputs?,
                                           precision: WeightPrecision) throws -> Plan {
        let configuration = try F.Configuration.parse(config, className: className)
        let cost = try F.cost(configuration, sizes: inputs ?? F.benchmarkDefault.inputs)
        let footprint = try F.weightFootprint(configuration, precision: precision)
        return Plan(parameters: footprint.parameters, weightBytes: footprint.bytes, activationBytes: Double(cost.activationBytes))
    }

    /// The `inputs` table of a benchmark file, or nil when the file has none (a plain diffusers config).
    public static func inputs(of data: Data) throws(ModelLoadError) -> BenchmarkInputs? {
        struct File: Decodable { var inputs: BenchmarkInputs? }
        return try ModelConfigFile.decode(File.self, from: data).inputs
    }
}
