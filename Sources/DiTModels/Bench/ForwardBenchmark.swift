import Foundation
import Tensors

/// One model forward prepared for timing: a randomly initialised model with inputs of a benchmark
/// shape, plus the analytic cost figures the `teacache bench forward` report needs.
///
/// Built from a benchmark file (`Benchmarks/configs/*.json`): `{"class", "config", "inputs"}` where
/// `config` is a diffusers configuration and `inputs` holds integer sizes (batch, latent sizes, text
/// tokens) whose meaning is family specific. Each family adds one case to ``make(data:seed:)``.
public struct ForwardBenchmark {
    /// A description of the benchmark shape (e.g. "FLUX 512-wide, 2+4 blocks, 1024+128 tokens, B=1").
    public let summary: String
    /// Matmul and attention floating-point operations of one forward (2 per multiply-add).
    public let flops: Double
    /// Bytes of the model parameters (float32).
    public let weightBytes: Int
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

    /// Reads a benchmark file and builds the benchmark for its model class.
    ///
    /// - Throws: ``ModelLoadError`` for an unreadable or malformed file, an unknown class, or an invalid
    ///   configuration or input size.
    public static func make(data: Data, seed: UInt64 = 0) throws(ModelLoadError) -> ForwardBenchmark {
        let (className, config) = try ModelConfigFile.parse(data)
        let inputs = try benchmarkInputs(data)
        switch className {
        case FluxConfiguration.className:
            return try FluxTransformer.benchmark(configuration: FluxConfiguration.parse(config, className: className),
                                                 inputs: inputs, seed: seed)
        case WanConfiguration.className:
            return try WanTransformer.benchmark(configuration: WanConfiguration.parse(config, className: className),
                                                inputs: inputs, seed: seed)
        default:
            throw .wrongClass(expected: [FluxConfiguration.className, WanConfiguration.className], got: className)
        }
    }

    /// Reads the benchmark file at `url` (see ``make(data:seed:)``).
    public static func make(url: URL, seed: UInt64 = 0) throws(ModelLoadError) -> ForwardBenchmark {
        let data: Data
        do { data = try Data(contentsOf: url) } catch {
            throw .unreadableFile(path: url.path, reason: error.localizedDescription)
        }
        return try make(data: data, seed: seed)
    }

    private static func benchmarkInputs(_ data: Data) throws(ModelLoadError) -> BenchmarkInputs {
        struct File: Decodable { var inputs: [String: Int] }
        return BenchmarkInputs(values: try ModelConfigFile.decode(File.self, from: data).inputs)
    }
}

/// The integer `inputs` table of a benchmark file.
public struct BenchmarkInputs: Sendable {
    /// Every size by name.
    public var values: [String: Int]

    /// The positive size `name`, or a `malformedConfig` error saying it is missing or invalid.
    public func positive(_ name: String) throws(ModelLoadError) -> Int {
        guard let v = values[name] else { throw .malformedConfig(reason: "benchmark inputs need \"\(name)\"") }
        guard v > 0 else { throw .malformedConfig(reason: "benchmark input \(name) = \(v) must be positive") }
        return v
    }
}
