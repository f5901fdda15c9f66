import ArgumentParser
import Foundation
import Logging
import Tensors

/// `teacache bench kernels`: sgemm at 1024³ and attention at a DiT shape, side by side.
struct BenchKernelsCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kernels",
        abstract: "sgemm GFLOP/s at 1024³ and attention (8 heads × 1152 tokens × 64) as a share of it."
    )

    @Option(help: "Threads for BLAS and element-wise loops (default: all cores).")
    var threads: Int?

    @Option(help: "Timed repetitions per measurement (median reported).")
    var repeats: Int = 7

    @OptionGroup var logging: LoggingOptions

    func validate() throws {
        try ThreadsOption.validate(threads)
        if repeats < 1 { throw ValidationError("--repeats \(repeats): must be at least 1; give the number of timed repetitions") }
    }

    func run() throws {
        if let threads { Parallelism.threadCount = threads }
        logging.logger("bench.kernels").info("timing kernels", metadata: ["repeats": "\(repeats)"])
        print("threads \(Parallelism.threadCount)")
        for line in BLASKernel.reportLines { print(line) }
        let sgemm = try KernelBenchmarks.sgemmGFLOPS(repeats: repeats)
        print(String(format: "sgemm 1024x1024x1024 %.1f GFLOP/s", sgemm))
        let att = try KernelBenchmarks.attentionGFLOPS(repeats: repeats)
        print(String(format: "attention 8x1152x64 %.1f GFLOP/s %.0f%% of sgemm", att, 100 * att / sgemm))
        if WeightProducts.path(for: .bfloat16) == .oneDNNBFloat16 {
            let att16 = try KernelBenchmarks.attentionGFLOPS(repeats: repeats, precision: .bfloat16)
            print(String(format: "attention 8x1152x64, bf16 products (bf16/int8 models) %.1f GFLOP/s %.0f%% of sgemm",
                         att16, 100 * att16 / sgemm))
        } else {
            print("attention with bf16 products: not on this CPU (\(WeightProducts.describe(.bfloat16)))")
        }
        for precision in WeightPrecision.allCases {
            print("\(precision) weights: \(WeightProducts.describe(precision))")
            // A DiT block's products (Wan2.1-1.3B, 1280 tokens): projection, feed-forward up and down.
            for (n, k) in [(1536, 1536), (8960, 1536), (1536, 8960)] {
                let rate = try KernelBenchmarks.linearGFLOPS(m: 1280, n: n, k: k, precision: precision, repeats: repeats)
                print(String(format: "  linear 1280x%d->%d %.1f GFLOP/s %.0f%% of sgemm", k, n, rate, 100 * rate / sgemm))
            }
        }
    }
}
