import ArgumentParser
import Foundation
import Logging
import Tensors

/// `teacache bench kernels`: sgemm at 1024³ and attention at a DiT shape, side by side.
struct BenchKernelsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kernels",
        abstract: "sgemm GFLOP/s at 1024³, and attention and linear shapes as a share of it."
    )

    @Option(help: "Threads for BLAS and element-wise loops (default: all cores).")
    var threads: Int?

    @Option(help: "Timed repetitions per measurement (median reported).")
    var repeats: Int = 7

    @Option(name: .customLong("linear"), parsing: .singleValue,
            help: "A linear shape to time per weight storage, ROWSxINxOUT (repeatable; default: 1280x1536x1536, 1280x1536x8960, 1280x8960x1536, a Wan2.1-1.3B block's products).")
    var linearShapes: [String] = []

    @Option(name: .customLong("attention"), parsing: .singleValue,
            help: "An attention shape to time, BATCHxQUERIESxKEYSxHEADSxHEADDIM (repeatable; default: 1x1152x1152x8x64).")
    var attentionShapes: [String] = []

    @OptionGroup var vectorPaths: VectorPathOptions

    @OptionGroup var logging: LoggingOptions

    /// `ROWSxINxOUT` as (m, k, n), or nil when it is not three positive integers.
    static func parseShape(_ text: String) -> (m: Int, k: Int, n: Int)? {
        let parts = text.lowercased().split(separator: "x").compactMap { Int($0) }
        guard parts.count == 3, parts.allSatisfy({ $0 > 0 && $0 <= 1 << 16 }) else { return nil }
        return (parts[0], parts[1], parts[2])
    }

    /// `BATCHxQUERIESxKEYSxHEADSxHEADDIM`, or nil when it is not five positive integers.
    static func parseAttentionShape(_ text: String) -> KernelBenchmarks.AttentionShape? {
        let parts = text.lowercased().split(separator: "x").compactMap { Int($0) }
        guard parts.count == 5, parts.allSatisfy({ $0 > 0 && $0 <= 1 << 16 }) else { return nil }
        return .init(batch: parts[0], queries: parts[1], keys: parts[2], heads: parts[3], headDim: parts[4])
    }

    func validate() throws {
        try ThreadsOption.validate(threads)
        if repeats < 1 { throw ValidationError("--repeats \(repeats): must be at least 1; give the number of timed repetitions") }
        for shape in linearShapes where Self.parseShape(shape) == nil {
            throw ValidationError("--linear \(shape): give ROWSxINxOUT, three integers from 1 to 65536 (e.g. 1024x512x2048)")
        }
        for shape in attentionShapes where Self.parseAttentionShape(shape) == nil {
            throw ValidationError("--attention \(shape): give BATCHxQUERIESxKEYSxHEADSxHEADDIM, five integers from 1 to 65536 (e.g. 4x256x256x8x64)")
        }
    }

    func run() throws {
        try vectorPaths.apply()
        if let threads { Parallelism.threadCount = threads }
        logging.logger("bench.kernels").info("timing kernels", metadata: ["repeats": "\(repeats)"])
        print("threads \(Parallelism.threadCount)")
        for line in BLASKernel.reportLines { print(line) }
        print(vectorPaths.reportLine)
        let sgemm = try KernelBenchmarks.sgemmGFLOPS(repeats: repeats)
        print(String(format: "sgemm 1024x1024x1024 %.1f GFLOP/s", sgemm))
        let bf16Attention = WeightProducts.path(for: .bfloat16) == .oneDNNBFloat16
        let attentionShapes = self.attentionShapes.isEmpty ? [KernelBenchmarks.AttentionShape.default]
            : self.attentionShapes.compactMap(Self.parseAttentionShape)
        for shape in attentionShapes {
            let att = try KernelBenchmarks.attentionGFLOPS(shape, repeats: repeats)
            print("attention \(shape.name) " + String(format: "%.1f GFLOP/s %.0f%% of sgemm", att, 100 * att / sgemm))
            if bf16Attention {
                let att16 = try KernelBenchmarks.attentionGFLOPS(shape, repeats: repeats, precision: .bfloat16)
                print("attention \(shape.name), bf16 products (bf16/int8 models) "
                      + String(format: "%.1f GFLOP/s %.0f%% of sgemm", att16, 100 * att16 / sgemm))
            }
        }
        if !bf16Attention {
            print("attention with bf16 products: not on this CPU (\(WeightProducts.describe(.bfloat16)))")
        }
        for precision in WeightPrecision.allCases {
            print("\(precision) weights: \(WeightProducts.describe(precision))")
            // By default a DiT block's products (Wan2.1-1.3B, 1280 tokens): projection, feed-forward up and down.
            let shapes = linearShapes.isEmpty ? [(1280, 1536, 1536), (1280, 1536, 8960), (1280, 8960, 1536)]
                : linearShapes.compactMap(Self.parseShape)
            for (m, k, n) in shapes {
                let rate = try KernelBenchmarks.linearGFLOPS(m: m, n: n, k: k, precision: precision, repeats: repeats)
                print(String(format: "  linear %dx%d->%d %.1f GFLOP/s %.0f%% of sgemm", m, k, n, rate, 100 * rate / sgemm))
            }
        }
    }
}
