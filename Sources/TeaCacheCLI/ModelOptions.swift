import ArgumentParser
import DiTModels
import Logging
import TeaCacheDemo
import Tensors

/// The model options shared by `demo` and `calibrate`.
struct ModelOptions: ParsableArguments {
    @Option(help: "Model: \(DemoFamily.modelNames.joined(separator: ", ")), or a preset name of one (`teacache presets`).")
    var model: String = "flux"

    @Option(help: "Benchmark-style ({\"class\", \"config\", \"inputs\"}) or diffusers config JSON (default: the embedded benchmark shape).")
    var config: String?

    @Option(help: ArgumentHelp(
        "Weights: a .safetensors file, a sharded checkpoint's index .json, or a diffusers transformer folder (default: seeded random weights with the timestep taper).",
        discussion: "A folder must hold diffusion_pytorch_model.safetensors.index.json (and its shards), "
            + "diffusion_pytorch_model.safetensors, or exactly one .safetensors file.",
        valueName: "path"))
    var weights: String?

    @Option(help: "Sampling steps.")
    var steps: Int = 28

    @Option(help: "Threads for BLAS and element-wise loops (default: all cores).")
    var threads: Int?

    @Option(help: "Seed of the random weights (inputs use seed + 1, ...).")
    var seed: UInt64 = 0

    @Option(parsing: .unconditional, help: "Memory budget in GB for a forward's activations and random weights; larger shapes are refused (default: half of this machine's memory).")
    var memoryBudget: Double?

    @OptionGroup var precision: PrecisionOptions

    /// The model source.
    var source: ModelSource {
        var s = ModelSource(family: model, configPath: config, weightsPath: weights, seed: seed, steps: steps)
        if let memoryBudget { s.memoryBudget = MemoryBudget(gigabytes: memoryBudget) }
        s.precision = precision.precision
        return s
    }

    func validate() throws {
        try ThreadsOption.validate(threads)
        if steps < 1 { throw ValidationError("--steps \(steps): must be at least 1; give the number of sampling steps (default 28)") }
        try MemoryBudgetOption.validate(memoryBudget)
    }

    /// Logs where the model comes from and how it runs (info level).
    func logSource(_ log: Logger) {
        log.info("model", metadata: [
            "family": "\(model)", "config": "\(config ?? "embedded default")",
            "weights": "\(weights ?? "seeded random (seed \(seed))")", "steps": "\(steps)",
            "threads": "\(Parallelism.threadCount)", "products": "\(WeightProducts.describe(precision.precision))",
        ])
    }

    /// Applies `--threads`.
    func applyThreads() {
        if let threads { Parallelism.threadCount = threads }
    }
}
