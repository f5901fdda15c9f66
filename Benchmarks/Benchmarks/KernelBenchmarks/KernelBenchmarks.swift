import Benchmark
import Tensors

/// Kernel benchmarks: sgemm, attention at a DiT shape (float32 and bf16 operands) and over a few frames, and
/// the norms used by every block.
let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration.maxDuration = .seconds(3)
    Benchmark.defaultConfiguration.metrics = [.wallClock, .throughput, .mallocCountTotal]
    var g = SeededGenerator(seed: 1)

    let n = 1024
    let a = try! Tensor.randomUniform(shape: [n, n], using: &g)
    let b = try! Tensor.randomUniform(shape: [n, n], using: &g)
    Benchmark("sgemm 1024x1024x1024") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(try matmul(a, b)) }
    }

    let shape = [1, 1152, 8 * 64]
    let q = try! Tensor.randomUniform(shape: shape, using: &g)
    let k = try! Tensor.randomUniform(shape: shape, using: &g)
    let v = try! Tensor.randomUniform(shape: shape, using: &g)
    Benchmark("attention 8 heads x 1152 tokens x 64") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(try attention(query: q, key: k, value: v, heads: 8)) }
    }
    // bf16 operands (a bf16 model's attention; float32 where the CPU has no AVX512_BF16).
    Benchmark("attention 8 heads x 1152 tokens x 64, bf16 model") { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try attention(query: q, key: k, value: v, heads: 8, precision: .bfloat16))
        }
    }
    // Temporal attention over 4 frames at 1024 positions: the few-keys path.
    let temporal = [1024, 4, 8 * 64]
    let tq = try! Tensor.randomUniform(shape: temporal, using: &g)
    let tk = try! Tensor.randomUniform(shape: temporal, using: &g)
    let tv = try! Tensor.randomUniform(shape: temporal, using: &g)
    Benchmark("attention 1024 x (8 heads x 4 frames x 64)") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(try attention(query: tq, key: tk, value: tv, heads: 8)) }
    }

    let x = try! Tensor.randomUniform(shape: [1, 1152, 512], using: &g)
    let w = try! Tensor.randomUniform(shape: [512], using: &g)
    Benchmark("layerNorm 1152x512") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(try layerNorm(x, weight: w, bias: w, eps: 1e-6)) }
    }
    Benchmark("rmsNorm 1152x512") { benchmark in
        for _ in benchmark.scaledIterations { blackHole(try rmsNorm(x, weight: w, eps: 1e-6)) }
    }
    Benchmark("gelu tanh 1152x2048") { benchmark in
        let h = try! Tensor.randomUniform(shape: [1152, 2048], in: -3...3, using: &g)
        benchmark.startMeasurement()
        for _ in benchmark.scaledIterations { blackHole(gelu(h, approximation: .tanh)) }
    }
}
