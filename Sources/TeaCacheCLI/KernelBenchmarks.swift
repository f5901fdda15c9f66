import Foundation
import Tensors

/// Timing helpers and the kernel measurements shared by the `bench` subcommands.
enum KernelBenchmarks {
    /// Seconds taken by `body`, as the median of `repeats` runs after `warmup` runs.
    static func medianSeconds(repeats: Int, warmup: Int = 1, _ body: () throws -> Void) rethrows -> Double {
        for _ in 0..<warmup { try body() }
        var times: [Double] = []
        for _ in 0..<max(repeats, 1) {
            let start = DispatchTime.now().uptimeNanoseconds
            try body()
            times.append(Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        }
        times.sort()
        return times[times.count / 2]
    }

    /// Wall seconds of one call of `body`.
    static func timeSeconds(_ body: () throws -> Void) rethrows -> Double {
        let start = DispatchTime.now().uptimeNanoseconds
        try body()
        return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    }

    /// The median of a non-empty list.
    static func median(_ values: [Double]) -> Double {
        let s = values.sorted()
        return s.isEmpty ? .nan : s[s.count / 2]
    }

    /// An n×n×n product kept ready so its rate can be sampled between other measurements: sgemm for
    /// float32, else `linear` with an n × n weight stored in `precision` on n rows (the route that
    /// precision's products take here, e.g. oneDNN bf16).
    struct ProductProbe {
        let x: Tensor, n: Int
        let weight: WeightMatrix
        init(n: Int = 1024, precision: WeightPrecision = .float32) throws {
            var g = SeededGenerator(seed: 1)
            x = try Tensor.randomUniform(shape: [n, n], using: &g)
            weight = try WeightMatrix.make(try Tensor.randomUniform(shape: [n, n], using: &g), precision: precision)
            self.n = n
            try product()
        }
        /// What the probe runs: sgemm `x · W` for float32 weights, else `linear(x, W)`.
        private func product() throws {
            if case .float32(let w) = weight.storage { _ = try matmul(x, w) } else { _ = try linear(x, weight: weight) }
        }
        /// GFLOP/s of the faster of two products (2n³ flops each).
        func gflops() throws -> Double {
            let t = min(try timeSeconds { try product() }, try timeSeconds { try product() })
            return 2 * Double(n * n * n) / t / 1e9
        }
        /// How the report names the probe, e.g. "sgemm 1024x1024x1024" or "bfloat16-weight product 1024x1024x1024".
        var name: String {
            let shape = "\(n)x\(n)x\(n)"
            return weight.precision == .float32 ? "sgemm \(shape)" : "\(weight.precision)-weight product \(shape)"
        }
    }

    /// sgemm rate in GFLOP/s for an n×n×n product (2n³ flops), after `warmUpSeconds` of the same product:
    /// the first ≈ 0.1–0.2 s of a process ran at about half the rate here (Dispatch's worker threads start
    /// on demand), which a two-product warm-up did not cover.
    static func sgemmGFLOPS(n: Int = 1024, repeats: Int = 7, warmUpSeconds: Double = 0.5) throws -> Double {
        var g = SeededGenerator(seed: 1)
        let a = try Tensor.randomUniform(shape: [n, n], using: &g)
        let b = try Tensor.randomUniform(shape: [n, n], using: &g)
        let start = DispatchTime.now().uptimeNanoseconds
        while Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 < warmUpSeconds { _ = try matmul(a, b) }
        let t = try medianSeconds(repeats: repeats, warmup: 0) { _ = try matmul(a, b) }
        return 2 * Double(n * n * n) / t / 1e9
    }

    /// The sizes of one timed attention call: `batch` sequences of `queries` and `keys` tokens, `heads`
    /// heads of `headDim`.
    struct AttentionShape: Equatable {
        var batch: Int, queries: Int, keys: Int, heads: Int, headDim: Int
        /// 8 heads of 64 over 1152 tokens (1024 image + 128 text), one sequence.
        static let `default` = AttentionShape(batch: 1, queries: 1152, keys: 1152, heads: 8, headDim: 64)
        /// How reports name it, `BATCHxQUERIESxKEYSxHEADSxHEADDIM`.
        var name: String { "\(batch)x\(queries)x\(keys)x\(heads)x\(headDim)" }
        /// QKᵀ and PV: 4·B·H·Sq·Sk·Dh flops (the softmax not counted).
        var flops: Double { 4 * Double(batch) * Double(heads) * Double(queries) * Double(keys) * Double(headDim) }
    }

    /// Attention rate in GFLOP/s (``AttentionShape/flops``). `precision` is the weights' (bf16 operands for
    /// bfloat16 where the CPU has bf16 products).
    static func attentionGFLOPS(_ shape: AttentionShape = .default, repeats: Int = 5,
                                precision: WeightPrecision = .float32) throws -> Double {
        var g = SeededGenerator(seed: 2)
        let width = shape.heads * shape.headDim
        let q = try Tensor.randomUniform(shape: [shape.batch, shape.queries, width], using: &g)
        let k = try Tensor.randomUniform(shape: [shape.batch, shape.keys, width], using: &g)
        let v = try Tensor.randomUniform(shape: [shape.batch, shape.keys, width], using: &g)
        let t = try medianSeconds(repeats: repeats, warmup: 2) {
            _ = try attention(query: q, key: k, value: v, heads: shape.heads, precision: precision)
        }
        return shape.flops / t / 1e9
    }

    /// Rate in GFLOP/s (2·m·n·k flops) of `linear` with `m` rows of activations and an `n × k` weight
    /// stored in `precision` (a DiT feed-forward up-projection by default: 1280 tokens, 1536 → 8960).
    static func linearGFLOPS(m: Int = 1280, n: Int = 8960, k: Int = 1536, precision: WeightPrecision,
                             repeats: Int = 5) throws -> Double {
        var g = SeededGenerator(seed: 3)
        let x = try Tensor.randomUniform(shape: [m, k], using: &g)
        let w = try WeightMatrix.make(try Tensor.randomUniform(shape: [n, k], using: &g), precision: precision)
        let t = try medianSeconds(repeats: repeats, warmup: 2) { _ = try linear(x, weight: w) }
        return 2 * Double(m) * Double(n) * Double(k) / t / 1e9
    }

    /// Peak resident set size of this process in bytes (VmHWM), or nil where /proc is unavailable.
    static func peakRSSBytes() -> Int? { statusBytes("VmHWM") }
}
