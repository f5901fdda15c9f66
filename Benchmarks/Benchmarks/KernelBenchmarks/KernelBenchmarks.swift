import Benchmark
import Tensors

/// Kernel benchmarks: sgemm, attention at a DiT shape, and the norms used by every block.
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
