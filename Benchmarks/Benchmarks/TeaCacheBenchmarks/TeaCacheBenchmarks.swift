import Benchmark
import DiTHarness
import DiTModels
import Foundation
import TeaCache
import TeaCacheDemo
import Tensors

/// Model-level benchmarks at the FLUX benchmark shape (Benchmarks/configs/flux-bench.json, random
/// weights): one full forward, and the TeaCache decision overhead — what a skipped call costs beyond
/// `prepare` and the output head (modulated input, relative L1 distance, policy decision, residual add).
/// Divide the two p50s for the overhead as a fraction of one forward.
let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration.metrics = [.wallClock, .mallocCountTotal]
    let configURL = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("configs/flux-bench.json")

    // One forward per weight precision (the products' route is this CPU's: WeightProducts.describe).
    for precision in WeightPrecision.allCases {
        let forward = try! ForwardBenchmark.make(url: configURL, seed: 0, precision: precision)
        Benchmark("FLUX forward, \(precision) weights (\(forward.summary))",
                  configuration: .init(maxDuration: .seconds(10), maxIterations: 12)) { benchmark in
            for _ in benchmark.scaledIterations { try forward.run() }
        }
    }

    let configuration = try! FluxConfiguration.parse(Data(contentsOf: configURL))
    let model = try! FluxFamily.random(configuration, seed: 0, steps: 28)
    var current = try! FluxFamily.randomInputs(configuration: configuration, batch: 1, latentHeight: 64,
                                               latentWidth: 64, textTokens: 128, seed: 1)
    var previous = current
    current.timestep = try! Tensor(shape: [1], repeating: 1 - 1 / 28)
    previous.timestep = try! Tensor(shape: [1], repeating: 1)
    let probe = try! DecisionOverheadProbe(model: model, current: current, previous: previous,
                                           configuration: .faithful(.flux, threshold: 0.3), steps: 28)
    Benchmark("TeaCache decision overhead (FLUX bench shape)",
              configuration: .init(maxDuration: .seconds(3), maxIterations: 2000)) { benchmark in
        for _ in benchmark.scaledIterations { blackHole(try probe.skippedCallExtra()) }
    }
    let state = try! model.prepare(current)
    Benchmark("FLUX prepare + output head (run by skipped calls too)",
              configuration: .init(maxDuration: .seconds(3), maxIterations: 2000)) { benchmark in
        for _ in benchmark.scaledIterations {
            blackHole(try model.prepare(current))
            blackHole(try model.outputHead(state))
        }
    }
}
