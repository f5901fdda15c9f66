import DiTModels
import Foundation
import TeaCache
import Tensors

/// Where a demo or calibration model comes from: the family, an optional configuration file, optional
/// weights, the seed of the random weights and inputs, and the step count (which sets the timestep
/// taper of random weights).
public struct ModelSource: Sendable, Equatable {
    /// The family name (`flux`, ...): see ``DemoFamily`` and `DiTFamilies`.
    public var family: String
    /// A benchmark-style (`{"class", "config", "inputs"}`) or plain diffusers config JSON; nil uses the
    /// family's embedded default.
    public var configPath: String?
    /// A safetensors file with the model's weights; nil draws seeded random weights.
    public var weightsPath: String?
    /// Seed of the random weights; the inputs use `seed + 1` (and following seeds when calibrating).
    public var seed: UInt64
    /// Sampling steps (also the taper period of random weights, FORMAT.md §6: u = 1000 / steps).
    public var steps: Int
    /// The memory the model's forward and random weights may plan to use; larger shapes are a typed error.
    public var memoryBudget: MemoryBudget = .machineDefault
    /// The storage of the model's weight matrices (`WeightPrecision`; float32 by default).
    public var precision: WeightPrecision = .float32

    /// A source.
    public init(family: String = "flux", configPath: String? = nil, weightsPath: String? = nil,
                seed: UInt64 = 0, steps: Int = 28) {
        self.family = family
        self.configPath = configPath
        self.weightsPath = weightsPath
        self.seed = seed
        self.steps = steps
    }

    /// Checks the step count and that the named files exist.
    public func validate() throws(DemoError) {
        guard steps >= 1, steps <= FlowMatchEulerSampler.maximumSteps else {
            throw .invalidOption("--steps \(steps): must be from 1 to \(FlowMatchEulerSampler.maximumSteps); give the number of sampling steps")
        }
        if let configPath {
            try PathChecks.inputFile(configPath, flag: "--config", what: "a config JSON file (diffusers config.json or a benchmark file)")
        }
        if let weightsPath {
            try PathChecks.inputPath(weightsPath, flag: "--weights",
                                     what: "a .safetensors file, a sharded checkpoint's index JSON or a diffusers transformer folder")
        }
    }

    /// The configuration bytes (the file's, or nil when none was given).
    func configData() throws(DemoError) -> Data? {
        guard let configPath else { return nil }
        do { return try Data(contentsOf: URL(fileURLWithPath: configPath)) } catch {
            throw .io("--config \(configPath): \(FileProblem.describe(URL(fileURLWithPath: configPath))); give a readable config JSON file")
        }
    }
}
