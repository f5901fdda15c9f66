import ArgumentParser
import DiTHarness
import DiTModels
import Foundation
import Logging
import TeaCacheDemo
import Tensors

/// `teacache bench forward --config PATH`: times one model forward at a benchmark shape (random weights)
/// and reports it against the product rate at the weights' precision (sgemm for float32) measured in the same run.
struct BenchForwardCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "forward",
        abstract: "Median forward time, effective GFLOP/s and its share of the product rate at its precision, phases, threads and peak memory.",
        discussion: "PATH is a benchmark file such as Benchmarks/configs/flux-bench.json: "
            + "{\"class\", \"config\" (a diffusers config), \"inputs\" (batch and latent/text sizes)}."
    )

    @Option(help: "Benchmark file ({\"class\", \"config\", \"inputs\"}).")
    var config: String

    @Option(help: "Threads for BLAS and element-wise loops (default: all cores).")
    var threads: Int?

    @Option(help: "Timed forwards (the median is reported), after one warm-up.")
    var repeats: Int = 5

    @Option(help: "Seed of the random weights and inputs.")
    var seed: UInt64 = 0

    @Option(parsing: .unconditional, help: "Memory budget in GB for the random weights and the forward's activations together (default: three quarters of this machine's memory).")
    var memoryBudget: Double?

    @OptionGroup var precision: PrecisionOptions

    @OptionGroup var vectorPaths: VectorPathOptions

    @OptionGroup var logging: LoggingOptions

    func validate() throws {
        try ThreadsOption.validate(threads)
        if repeats < 1 { throw ValidationError("--repeats \(repeats): must be at least 1; give the number of timed forwards") }
        try MemoryBudgetOption.validate(memoryBudget)
    }

    func run() throws {
        try vectorPaths.apply()
        if let threads { Parallelism.threadCount = threads }
        let log = logging.logger("bench.forward")
        let start = Date()
        // The process's own footprint (runtime, libraries, BLAS buffers) before the model exists.
        _ = try matmul(Tensor(zeros: [64, 64]), Tensor(zeros: [64, 64]))
        let startRSS = KernelBenchmarks.currentRSSBytes()
        let problem = FileProblem.describe(URL(fileURLWithPath: config))
        if problem != "unreadable" {   // missing, a directory, or not readable
            CLIErrors.exit(Self.configError(ModelLoadError.unreadableFile(path: config, reason: problem), path: config), log: log)
        }
        let bench: ForwardBenchmark
        do { bench = try ForwardBenchmark.make(url: URL(fileURLWithPath: config), seed: seed,
                                                    precision: precision.precision, memoryBudget: memoryBudget.map(MemoryBudget.init(gigabytes:)) ?? .wholeModelDefault) } catch {
            CLIErrors.exit(BenchForwardCommand.configError(error, path: config), log: log)
        }
        log.info("random-weight model built", metadata: ["config": "\(config)", "elapsed": "\(secondsSince(start))"])
        print(bench.summary)
        print("threads \(Parallelism.threadCount)")
        for line in BLASKernel.reportLines { print(line) }
        print(vectorPaths.reportLine)
        print(precision.reportLine)
        // Measure the peak of the forwards, not of the random initialisation before them.
        let peakReset = KernelBenchmarks.resetPeakRSS()
        let before = KernelBenchmarks.currentRSSBytes()
        // Forwards and the product probe (at the weights' precision: sgemm for float32) alternate, so both
        // medians see the same machine load.
        let probe = try KernelBenchmarks.ProductProbe(precision: precision.precision)
        var forwardTimes: [Double] = [], productRates: [Double] = []
        do {
            try bench.run()
            for _ in 0..<repeats {
                forwardTimes.append(try KernelBenchmarks.timeSeconds { try bench.run() })
                productRates.append(try probe.gflops())
            }
        } catch {
            // Inputs the model refuses at run time (found by scripts/fuzz.sh) are reported like the others.
            FileHandle.standardError.write(Data("error: \(config): \(error)\n".utf8))
            throw ExitCode.failure
        }
        let peak = KernelBenchmarks.peakRSSBytes()
        // One more forward with the phase profiler on (after the peak was read: it allocates nothing new).
        PhaseProfiler.start()
        let profiledSeconds: Double
        do { profiledSeconds = try KernelBenchmarks.timeSeconds { try bench.run() } } catch {
            FileHandle.standardError.write(Data("error: \(config): \(error)\n".utf8))
            throw ExitCode.failure
        }
        let profile = PhaseProfiler.stop()
        let seconds = KernelBenchmarks.median(forwardTimes)
        let rate = bench.flops / seconds / 1e9
        let productRate = KernelBenchmarks.median(productRates)
        print(String(format: "forward median %.1f ms (%d runs, interleaved with the %@)", seconds * 1000, repeats, probe.name))
        print(String(format: "forward %.1f GFLOP -> %.1f GFLOP/s", bench.flops / 1e9, rate))
        print(String(format: "%@ %.1f GFLOP/s; forward at %.0f%% of it", probe.name, productRate, 100 * rate / productRate))
        print(Self.phaseLine(profile, total: profiledSeconds))
        let mb = { (b: Int) in Double(b) / 1_048_576 }
        let budget = bench.weightBytes + bench.activationBytes
        if let before { print(String(format: "RSS before the forwards %.1f MB", mb(before))) }
        if let peak {
            print(String(format: "peak RSS %@%.1f MB vs weights %.1f MB + largest activations %.1f MB = %.1f MB (%.2fx)",
                         peakReset ? "of the forwards " : "(including initialisation) ", mb(peak), mb(bench.weightBytes), mb(bench.activationBytes), mb(budget),
                         Double(peak) / Double(max(budget, 1))))
            if let startRSS {
                print(String(format: "peak RSS above the process's start-up RSS (%.1f MB): %.1f MB (%.2fx weights + largest activations)",
                             mb(startRSS), mb(peak - startRSS), Double(peak - startRSS) / Double(max(budget, 1))))
            }
        } else {
            print(String(format: "peak RSS unavailable; weights %.1f MB + largest activations %.1f MB",
                         mb(bench.weightBytes), mb(bench.activationBytes)))
        }
    }
}

extension BenchForwardCommand {
    /// `phases of one more forward (T ms): products … ms (x%, n calls), attention …, copies …, other
    /// element-wise …` — the other part is the forward's time minus the measured phases.
    static func phaseLine(_ profile: PhaseProfile, total: Double) -> String {
        var parts: [String] = []
        var measured = 0.0
        for phase in PhaseProfile.Phase.allCases {
            let t = profile.seconds[phase] ?? 0
            measured += t
            parts.append(String(format: "%@ %.1f ms (%.1f%%, %d calls)", phase.description, t * 1000,
                                100 * t / max(total, 1e-12), profile.calls[phase] ?? 0))
        }
        let other = max(total - measured, 0)
        parts.append(String(format: "other element-wise %.1f ms (%.1f%%)", other * 1000, 100 * other / max(total, 1e-12)))
        return String(format: "phases of one more forward (%.1f ms): ", total * 1000) + parts.joined(separator: ", ")
    }

    /// The `--config` file's problem as a usage error when the file is missing or unreadable, else as
    /// the model error it is.
    static func configError(_ error: any Error, path: String) -> any Error {
        if case .unreadableFile(_, let reason)? = error as? ModelLoadError {
            return DemoError.invalidOption("--config \(path): \(reason); give a benchmark file such as Benchmarks/configs/flux-bench.json")
        }
        if let e = error as? ModelLoadError { return DemoError.wrap(e, context: "--config \(path)") }
        return DemoError.model("--config \(path): \(error)")
    }
}
