import Benchmark
import DiTHarness
import DiTModels
import Foundation
import TeaCache
import TeaCacheDemo
import Tensors

/// Model-level benchmarks: one forward of every family at its benchmark shape
/// (`Benchmarks/configs/*-bench.json`, random weights) in float32, bfloat16 and int8 weights (the
/// products' route is this CPU's: `WeightProducts.describe`), and, at the FLUX shape, the TeaCache
/// decision overhead — what a skipped call costs beyond `prepare` and the output head (modulated input,
/// relative L1 distance, policy decision, residual add). Divide the two p50s for the overhead as a
/// fraction of one forward. `teacache bench forward --config …` gives the same forward with the phase
/// profile and PyTorch's figure beside it (README, Speed).
let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration.metrics = [.wallClock, .mallocCountTotal]
    let configs = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("configs")
    let configURL = configs.appendingPathComponent("flux-bench.json")
    let benchShapes = (try! FileManager.default.contentsOfDirectory(atPath: configs.path))
        .filter { $0.hasSuffix("-bench.json") }.sorted()

    // One forward per family and weight precision; each model is built when its benchmark runs (not
    // all 39 at start-up), outside the measured region.
    for file in benchShapes {
        let name = String(file.dropLast("-bench.json".count))
        for precision in [WeightPrecision.float32, .bfloat16, .int8] {
            Benchmark("\(name) forward, \(precision) weights",
                      configuration: .init(maxDuration: .seconds(10), maxIterations: 12)) { benchmark in
                let forward = try ForwardBenchmark.make(url: configs.appendingPathComponent(file), seed: 0, precision: precision)
                try forward.run()  // warm-up: buffer pool, oneDNN primitives
                benchmark.startMeasurement()
                for _ in benchmark.scaledIterations { try forward.run() }
                benchmark.stopMeasurement()
            }
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
