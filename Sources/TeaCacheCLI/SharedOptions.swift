import Foundation
import ArgumentParser
import Tensors

/// Validation of the `--threads` option shared by every subcommand that has it.
enum ThreadsOption {
    /// Throws a `ValidationError` unless `threads` is nil or in `1 ... Parallelism.maximumThreadCount`.
    static func validate(_ threads: Int?) throws {
        guard let threads else { return }
        guard threads >= 1, threads <= Parallelism.maximumThreadCount else {
            throw ValidationError("--threads \(threads): must be between 1 and \(Parallelism.maximumThreadCount); leave it out to use every core")
        }
    }
}

/// Validation of the `--memory-budget` option (gigabytes).
enum MemoryBudgetOption {
    /// Throws a `ValidationError` unless `gigabytes` is nil or a finite positive number.
    static func validate(_ gigabytes: Double?) throws {
        guard let gigabytes else { return }
        guard gigabytes.isFinite, gigabytes > 0 else {
            throw ValidationError("--memory-budget \(String(format: "%g", gigabytes)): must be a positive number of gigabytes; leave it out for half of this machine's memory")
        }
    }
}

extension WeightPrecision: ExpressibleByArgument {
    /// Parses `float32`, `bfloat16`, `float16`, `int8` and their short forms (`f32`, `bf16`, `f16`, `i8`).
    public init?(argument: String) { self.init(name: argument) }

    public static var allValueStrings: [String] { allCases.map(\.rawValue) }
}

/// The `--precision` option shared by demo, bench, verify and calibrate.
struct PrecisionOptions: ParsableArguments {
    @Option(help: "Storage of the weight matrices: float32 (default), bfloat16, float16 or int8 (weight-only, per-row groups of 64).")
    var precision: WeightPrecision = .float32

    /// One line saying how the products run with this precision on this CPU, and why.
    var reportLine: String { "products: " + WeightProducts.describe(precision) }
}

/// `--avx2-only`: run every kernel as on a CPU with AVX2+FMA and no AVX-512 (``VectorPaths/limitToAVX2()``).
struct VectorPathOptions: ParsableArguments {
    @Flag(name: .customLong("avx2-only"),
          help: "Take only the paths an AVX2+FMA CPU without AVX-512 has (C kernels, attention, oneDNN capped at AVX2), to measure such a CPU's route here.")
    var avx2Only = false

    /// Applies the flag; call it before any kernel runs. Throws when oneDNN had already fixed its
    /// instruction set (a measurement would then not be AVX2-only).
    func apply() throws {
        guard avx2Only else { return }
        guard VectorPaths.limitToAVX2() else {
            throw ValidationError("--avx2-only: oneDNN had already chosen its instruction set; the flag must take effect before the first product")
        }
    }

    /// One line naming the vector paths the kernels take.
    var reportLine: String { "vector paths: " + VectorPaths.description }
}
